"""`python -m jobs.bench label|train|train-parity|trust`: benchmarks that print figures and ratios (not timed tests)."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main
from jobs.demo import DEMO_BACKBONE, DEMO_IMAGE_SIZE, FULL_RECIPE


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", required=True)
    label = sub.add_parser("label", help="decode, model, end-to-end labeling throughput and the CPU limit")
    label.add_argument("--images", type=int, default=None, help="default 2000 PNGs, or 120 DICOM files")
    label.add_argument(
        "--format",
        choices=["png", "dicom"],
        default="png",
        help="png: 1024² PNGs, the job against its CPU limit, the naive loop and the Ray Data docs pattern; "
        "dicom: JPEG 2000 CR files where decode dominates, with 1 and 2 decode CPUs",
    )
    label.add_argument("--dicom-size", type=int, default=2048, help="rows of the generated DICOM files")
    label.add_argument("--backbone", default="efficientnet_b0")
    label.add_argument("--image-size", type=int, default=224)
    label.add_argument("--source-size", type=int, default=1024, help="side of the generated PNGs")
    label.add_argument("--batch-size", type=int, default=32)
    label.add_argument("--out", default="bench_out/label")
    label.add_argument("--memory", action="store_true", help="also peak RSS at 10k vs 50k images")
    label.add_argument("--noop-rows", type=int, default=0, help="time a no-op rerun over a manifest this big")
    label.add_argument(
        "--steady-repeats", type=int, default=3, help="warm half/whole run pairs for the steady state (median)"
    )
    train = sub.add_parser("train", help="single-process loop vs Ray Train with 1 and 2 workers")
    train.add_argument("--images", type=int, default=1200)
    train.add_argument("--backbone", default="mobilenet_v3_small")
    train.add_argument("--image-size", type=int, default=96)
    train.add_argument("--epochs", type=int, default=8, help="at least 3; the median is over epochs 2..N")
    train.add_argument("--out", default="bench_out/train")
    parity = sub.add_parser(
        "train-parity", help="the demo recipe with 1 and with 2 Ray Train workers: per-epoch val macro-F1 side by side"
    )
    parity.add_argument("--images", type=int, default=1400)
    parity.add_argument("--backbone", default="mobilenet_v3_small")
    parity.add_argument("--image-size", type=int, default=96)
    parity.add_argument("--epochs", type=int, default=14)
    parity.add_argument("--lr", type=float, default=2e-3, help="base LR for a global batch of 64 (the demo's)")
    parity.add_argument("--out", default="bench_out/train_parity")
    trust = sub.add_parser(
        "trust", help="the demo's trust figures over several trainings, a larger held-out archive and RG1/RG3"
    )
    trust.add_argument("--train-count", type=int, default=FULL_RECIPE.phantoms, help="training phantoms (the demo's)")
    trust.add_argument("--train-other", type=int, default=FULL_RECIPE.other, help="non-radiographs (the demo's)")
    trust.add_argument("--holdout-count", type=int, default=1000, help="phantoms of the extra seed-2 archive; 0: none")
    trust.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds, one training each")
    trust.add_argument("--backbone", default=DEMO_BACKBONE)
    trust.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE)
    trust.add_argument("--epochs", type=int, default=FULL_RECIPE.epochs)
    trust.add_argument("--out", default="bench_out/trust")


def run(args: argparse.Namespace) -> int:
    if args.bench == "label":
        from cluster.bench_label import run_bench

        if args.images is None:
            args.images = 120 if args.format == "dicom" else 2000
        return run_bench(args)
    if args.bench == "trust":
        from cluster.bench_trust import run_trust

        return run_trust(args)
    if args.bench == "train-parity":
        from cluster.bench_train import run_parity

        return run_parity(args)
    from cluster.bench_train import run_bench

    return run_bench(args)


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel bench", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
