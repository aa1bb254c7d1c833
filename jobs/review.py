"""`scanlabel review`: worst-first review queue (review.html, review.csv); --apply makes corrections training data.

  scanlabel review --labels DIR [--manifest FILE] --out DIR          write review.csv and review.html
  scanlabel review --apply review.csv --out corrections.parquet      filled-in corrected_label -> manifest
      [--base-manifest TRAIN.parquet] [--model BUNDLE]                merged over the last training manifest
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--labels", help="labels dataset directory written by `scanlabel label`: build the queue")
    mode.add_argument("--apply", metavar="REVIEW_CSV", help="a filled-in review.csv: write its corrections")
    p.add_argument(
        "--out",
        required=True,
        help="with --labels: directory for review.csv and review.html; with --apply: the manifest (.parquet)",
    )
    p.add_argument("--manifest", default=None, help="with --labels: queue only these rows, compare with its label")
    p.add_argument("--model-id", default=None, help="with --labels: which model's labels (default: the latest)")
    p.add_argument("--limit", type=int, default=500, help="with --labels: rows in the queue (0 = all ok rows)")
    p.add_argument(
        "--base-manifest",
        default=None,
        help="with --apply: the earlier training manifest; corrections replace its rows (by image_id) or are "
        "appended, so the output trains on both",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="BUNDLE",
        help="with --apply: accept the classes of this bundle (default: the project's body parts) plus 'other'",
    )


def run(args: argparse.Namespace) -> int:
    if args.labels is not None:
        if args.base_manifest or args.model:
            raise ValueError("--base-manifest and --model go with --apply, not --labels")
        from core.trust.review import write_review

        result = write_review(args.labels, args.out, args.manifest, args.model_id, args.limit or None)
        print(f"[review] {result['rows']} image(s) queued, worst first: {json.dumps(result['reasons'])}")
        print(f"[review] look: {result['html']}")
        print(f"[review] correct: fill in corrected_label in {result['csv']}, then")
        print(f"[review]   scanlabel review --apply {result['csv']} --out corrections.parquet [--base-manifest TRAIN]")
        return 0
    if args.manifest or args.model_id:
        raise ValueError("--manifest and --model-id go with --labels, not --apply")
    from core.trust.review import apply_corrections

    result = apply_corrections(args.apply, args.out, args.base_manifest, args.model)
    print(
        f"[review] {result['corrections']} correction(s) {json.dumps(result['per_label'])}: {result['replaced']} "
        f"replaced, {result['added']} added; {result['rows']} row(s) written to {result['out']}"
    )
    print(f"[review] next: scanlabel train --manifest {result['out']} --out NEW_BUNDLE ...")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel review", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
