"""`scanlabel evaluate`: metrics, confusion matrix and an HTML report of a labels dataset vs ground truth."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", required=True, help="labels dataset directory written by `scanlabel label`")
    p.add_argument("--manifest", required=True, help="manifest with ground-truth `label`")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--model-id", default=None, help="which model's labels (default: the latest)")


def run(args: argparse.Namespace) -> int:
    from core.evaluation import evaluate, headline

    metrics = evaluate(args.labels, args.manifest, args.out, args.model_id)
    print(f"[evaluate] {headline(metrics)}")
    print(f"[evaluate] report: {args.out}/report.html")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel evaluate", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
