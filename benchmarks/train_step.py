"""``python -m jobs.bench train-step``: one from-scratch training step per backbone and variant, in one process.

What the training's speed on CPU cores comes from, measured where it can be compared: for each backbone, the
trainer's step (:func:`core.training.estimate.measure_step_rate`: forward, loss, gradients, AdamW, BatchNorm
updates) at batch 32 with BatchNorm on TensorFlow's fused kernel (what ``scanlabel train`` runs), with Keras' own
BatchNorm call, under ``mixed_bfloat16``, and compiled with XLA.  Rounds are interleaved (every variant once per
round, ``--rounds`` rounds, the median kept), so a neighbour's load falls on all variants alike; the ratios to
the fused step are what to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics

VARIANTS = ("fused", "keras_bn", "bfloat16", "xla")


def _rate(backbone: str, size: int, variant: str, steps: int) -> float:
    from core.io.schema import BODY_PARTS
    from core.training.estimate import measure_step_rate

    return measure_step_rate(
        backbone,
        size,
        len(BODY_PARTS) + 1,
        steps=steps,
        fused=variant != "keras_bn",
        xla=variant == "xla",
        policy="mixed_bfloat16" if variant == "bfloat16" else "float32",
    ).images_per_s


def run_train_step(args: argparse.Namespace) -> int:
    print(f"[bench train-step] load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    names = [f"{v} img/s" for v in args.variants] + [f"{v} / {args.variants[0]}" for v in args.variants[1:]]
    print(f"| backbone | px | {' | '.join(names)} |")
    print("| --- | ---: |" + " ---: |" * (2 * len(args.variants) - 1))
    for backbone in args.backbones:
        rates: dict[str, list[float]] = {v: [] for v in args.variants}
        for _ in range(args.rounds):
            for v in args.variants:
                rates[v].append(_rate(backbone, args.image_size, v, args.steps))
        med = {v: statistics.median(r) for v, r in rates.items()}
        base = med[args.variants[0]]
        cells = [f"{med[v]:.0f}" for v in args.variants] + [f"{med[v] / base:.2f}" for v in args.variants[1:]]
        print(f"| {backbone} | {args.image_size} | {' | '.join(cells)} |", flush=True)
    print(f"[bench train-step] load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def register(sub) -> None:
    """``train-step`` of ``python -m jobs.bench``."""
    p = sub.add_parser("train-step", help="one training step per backbone: fused BatchNorm vs Keras', bfloat16, XLA")
    p.add_argument("--backbones", nargs="+", default=["compact_resnet", "mobilenet_v3_small"])
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--steps", type=int, default=8, help="timed steps per measurement, after one traced step")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.set_defaults(bench_run=run_train_step)
