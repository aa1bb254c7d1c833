"""`scanlabel manifest`: build a Parquet manifest from the NIH ChestX-ray14 table or by listing a tree of images.

scanlabel manifest --nih-csv Data_Entry_2017.csv --images-root ROOT --out FILE [--check-exists]
scanlabel manifest --root DIR|URI --out FILE [--label-from-parent]
scanlabel manifest --root DIR|URI --out FILE --label-from-header [--header-map FILE] [--modalities CR,DX] [--threads N]
scanlabel manifest --dicomweb URL --out FILE [--modalities CR,DX] [--study-date FROM-TO | --since-manifest PREV]
  (DICOMweb credentials: SCANLABEL_DICOMWEB_USER/_PASSWORD, _TOKEN or _CREDENTIALS_FILE; see docs/dicomweb.md)
"""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--nih-csv", help="NIH ChestX-ray14 Data_Entry_2017.csv (local, s3:// or gs://)")
    source.add_argument("--root", help="folder or s3:// / gs:// prefix to list recursively for images")
    source.add_argument("--dicomweb", metavar="URL", help="a DICOMweb server's root (e.g. https://pacs/dicom-web)")
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
    p.add_argument(
        "--label-from-header",
        action="store_true",
        help="with --root: label = the body part each DICOM header names (read without pixels; weak labels, "
        "docs/weak-labels.md); PNG/JPEG rows and headers that name none get a null label",
    )
    p.add_argument(
        "--header-map",
        metavar="FILE",
        help="with --label-from-header: JSON object TERM -> class or null (docs/dicom.md)",
    )
    p.add_argument(
        "--threads", type=int, default=8, help="with --label-from-header: headers read in parallel (default 8)"
    )
    web = p.add_argument_group("with --dicomweb")
    web.add_argument(
        "--modalities",
        metavar="CR,DX",
        help="only series of these modalities (with --label-from-header: label only these, default CR,DX,RG; "
        "'*' for all)",
    )
    web.add_argument(
        "--study-date", metavar="FROM-TO", help="only studies in this DICOM date range, YYYYMMDD-YYYYMMDD"
    )
    web.add_argument(
        "--since-manifest",
        metavar="PREV",
        help="nightly mode: list only instances that arrived since PREV (an earlier --dicomweb manifest) was listed",
    )
    web.add_argument(
        "--incremental-method",
        choices=("auto", "orthanc_changes", "study_date"),
        default="auto",
        help="auto (default): Orthanc's change log when the server is Orthanc, else study-date windows",
    )
    web.add_argument("--overlap-days", type=int, default=2, help="study-date window overlap (default 2 days)")
    web.add_argument("--ca-bundle", metavar="PEM", help="CAs to trust for an https server (default: the system's)")


def run_dicomweb(args: argparse.Namespace) -> int:
    from core.io import dicomweb
    from core.io.dicomweb_listing import build_dicomweb_manifest
    from core.io.manifests import read_manifest, write_manifest
    from core.readers.scope import normalize_modalities

    previous = read_manifest(args.since_manifest) if args.since_manifest else None
    modalities = normalize_modalities(args.modalities) if args.modalities else ()
    built = build_dicomweb_manifest(
        args.dicomweb,
        dicomweb.HttpOptions(ca_bundle=args.ca_bundle),
        modalities=tuple(modalities or ()),
        study_date=args.study_date,
        since_manifest=previous,
        method=args.incremental_method,
        overlap_days=args.overlap_days,
    )
    listing = built.listing
    for note in listing.notes:
        print(f"[manifest] {note}")
    if built.table.num_rows:
        write_manifest(built.table, args.out)
    else:  # a quiet night: still written, so the next night starts from this cursor
        from core.io.manifests import write_empty_manifest

        write_empty_manifest(built.table, args.out)
    new = " new" if previous is not None else ""
    print(f"[manifest] {built.table.num_rows}{new} instance(s) ({built.listed} listed, method {listing.method})")
    print(f"[manifest] written: {args.out}")
    return 0


def run_label_from_header(args: argparse.Namespace) -> int:
    """--root --label-from-header: a tree listing labelled from each DICOM's header, with its counts."""
    from core.io.manifests import write_manifest
    from core.readers.header import build_header_manifest
    from core.readers.header_map import load_header_map
    from core.readers.scope import DEFAULT_MODALITIES, normalize_modalities

    if not args.root or args.label_from_parent:
        raise ValueError("--label-from-header goes with --root (and not with --label-from-parent)")
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    mapping = load_header_map(args.header_map)  # a bad map fails here, before any file is read
    modalities = normalize_modalities(args.modalities) if args.modalities else DEFAULT_MODALITIES
    build = build_header_manifest(args.root, mapping, modalities, threads=args.threads)
    write_manifest(build.table, args.out)
    n = build.table.num_rows
    print(f"[manifest] {n} rows (of {build.source_rows} files): {n - build.unlabeled} labelled from the header, "
          f"{build.unlabeled} with a null label (not trained on)")
    print("[manifest] formats: " + ", ".join(f"{k} {v}" for k, v in sorted(build.formats.items())))
    if build.labels:
        print("[manifest] labels: " + ", ".join(f"{k} {v}" for k, v in sorted(build.labels.items())))
        print("[manifest] label sources: " + ", ".join(f"{k} {v}" for k, v in sorted(build.sources.items())))
    if build.errors:
        print("[manifest] header errors: " + ", ".join(f"{k} {v}" for k, v in sorted(build.errors.items())))
    if build.skipped:
        print("[manifest] skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(build.skipped.items())))
    print(f"[manifest] written: {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    from core.io.manifests import build_nih_manifest, build_tree_manifest, write_manifest

    if args.dicomweb:
        if args.label_from_header or args.header_map:
            raise ValueError("--label-from-header and --header-map go with --root")
        return run_dicomweb(args)
    if args.label_from_header:
        return run_label_from_header(args)
    if args.header_map:
        raise ValueError("--header-map goes with --label-from-header")
    if args.modalities or args.study_date or args.since_manifest or args.ca_bundle:
        raise ValueError("--modalities, --study-date, --since-manifest and --ca-bundle apply to --dicomweb only")
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
