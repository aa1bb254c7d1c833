"""`scanlabel sample`: write a synthetic, deterministic sample archive and its manifest."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory for images/ and manifest.parquet")
    p.add_argument("--count", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from core.sample_archive import write_sample_archive

    path = write_sample_archive(args.out, args.count, seed=args.seed)
    print(f"[sample] {args.count} images, manifest: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel sample", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
