"""`scanlabel sample`: write a synthetic, deterministic sample archive and its manifest."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory for images/ and manifest.parquet")
    p.add_argument("--count", type=int, required=True, help="number of body-part (phantom radiograph) images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--side-scale",
        type=float,
        default=1.0,
        help="phantom height and width, times the default 256-448 px (drawing costs about its square)",
    )
    other = p.add_mutually_exclusive_group()
    other.add_argument(
        "--other-count",
        type=int,
        default=None,
        metavar="N",
        help="also write N non-radiograph images labelled 'other' (photos, documents, screenshots, ultrasound, ...)",
    )
    other.add_argument(
        "--other-fraction",
        type=float,
        default=None,
        metavar="F",
        help="instead of --other-count: make 'other' images this share (0 <= F < 1) of the whole archive",
    )


def run(args: argparse.Namespace) -> int:
    from core.synthetic.sample_archive import write_sample_archive

    path = write_sample_archive(
        args.out,
        args.count,
        seed=args.seed,
        other_count=args.other_count,
        other_fraction=args.other_fraction,
        side_scale=args.side_scale,
    )
    import pyarrow.parquet as pq

    from core.io import schema
    labels = pq.read_table(path, columns=[schema.LABEL]).column(schema.LABEL).to_pylist()
    n_other = sum(label == schema.OTHER_LABEL for label in labels)
    print(f"[sample] {len(labels) - n_other} body-part images, {n_other} other images, manifest: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel sample", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
