"""`scanlabel evaluate`: metrics, calibration, abstention and an HTML report of a labels dataset vs ground truth."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", required=True, help="labels dataset directory written by `scanlabel label`")
    p.add_argument("--manifest", required=True, help="manifest with ground-truth `label`")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--model-id", default=None, help="which model's labels (default: the latest)")
    p.add_argument(
        "--model",
        default=None,
        metavar="BUNDLE",
        help="the bundle that wrote the labels: its class order and calibration temperature give ECE before "
        "calibration (without it ece_before is null)",
    )


def run(args: argparse.Namespace) -> int:
    from core.trust.evaluation import evaluate, headline

    metrics = evaluate(args.labels, args.manifest, args.out, args.model_id, model=args.model)
    print(f"[evaluate] {headline(metrics)}")
    print(f"[evaluate] report: {args.out}/report.html (metrics.json, reliability.png beside it)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel evaluate", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
