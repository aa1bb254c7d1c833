"""`python -m jobs.bench label|train`: throughput benchmarks that print figures and ratios (not timed tests)."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", required=True)
    label = sub.add_parser("label", help="decode, model, end-to-end labeling throughput and the CPU limit")
    label.add_argument("--images", type=int, default=2000)
    label.add_argument("--backbone", default="efficientnet_b0")
    label.add_argument("--image-size", type=int, default=224)
    label.add_argument("--source-size", type=int, default=1024, help="side of the generated PNGs")
    label.add_argument("--batch-size", type=int, default=32)
    label.add_argument("--out", default="bench_out/label")
    label.add_argument("--memory", action="store_true", help="also peak RSS at 10k vs 50k images")
    label.add_argument("--noop-rows", type=int, default=0, help="time a no-op rerun over a manifest this big")
    train = sub.add_parser("train", help="single-process loop vs Ray Train with 1 and 2 workers")
    train.add_argument("--images", type=int, default=600)
    train.add_argument("--backbone", default="mobilenet_v3_small")
    train.add_argument("--image-size", type=int, default=96)
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--out", default="bench_out/train")


def run(args: argparse.Namespace) -> int:
    if args.bench == "label":
        from cluster.bench_label import run_bench

        return run_bench(args)
    from cluster.bench_train import run_bench

    return run_bench(args)


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel bench", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
