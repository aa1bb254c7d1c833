"""`scanlabel manifest`: build a Parquet manifest from the NIH ChestX-ray14 table or by listing a tree of images.

scanlabel manifest --nih-csv Data_Entry_2017.csv --images-root ROOT --out FILE [--check-exists]
scanlabel manifest --root DIR|URI --out FILE [--label-from-parent]
"""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--nih-csv", help="NIH ChestX-ray14 Data_Entry_2017.csv (local, s3:// or gs://)")
    source.add_argument("--root", help="folder or s3:// / gs:// prefix to list recursively for images")
    p.add_argument("--images-root", help="with --nih-csv: the folder holding the NIH PNGs (local, s3:// or gs://)")
    p.add_argument("--out", required=True, help="manifest Parquet file to write (local, s3:// or gs://)")
    p.add_argument(
        "--check-exists",
        action="store_true",
        help="with --nih-csv: list --images-root once and drop rows whose file is missing (slow on 112k objects)",
    )
    p.add_argument(
        "--label-from-parent", action="store_true", help="with --root: label = name of the file's parent folder"
    )


def run(args: argparse.Namespace) -> int:
    from core.io.manifests import build_nih_manifest, build_tree_manifest, write_manifest

    if args.nih_csv:
        if not args.images_root:
            raise ValueError("--nih-csv needs --images-root (the folder that holds the PNG files)")
        if args.label_from_parent:
            raise ValueError("--label-from-parent applies to --root; NIH rows are all labeled 'chest'")
        build = build_nih_manifest(args.nih_csv, args.images_root, check_exists=args.check_exists)
    else:
        if args.images_root or args.check_exists:
            raise ValueError("--images-root and --check-exists apply to --nih-csv only")
        build = build_tree_manifest(args.root, label_from_parent=args.label_from_parent)
    write_manifest(build.table, args.out)
    print(f"[manifest] {build.table.num_rows} rows (of {build.source_rows} {'rows' if args.nih_csv else 'files'})")
    if build.dropped_missing:
        print(
            f"[manifest] dropped {build.dropped_missing} row(s) whose image is missing, "
            f"e.g. {', '.join(build.missing_examples)}"
        )
    if build.skipped:
        print("[manifest] skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(build.skipped.items())))
    if build.unlabeled:
        print(f"[manifest] {build.unlabeled} file(s) directly under the root have no parent folder: label is null")
    print(f"[manifest] written: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel manifest", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
