"""`scanlabel demo`: the whole product end to end on an embedded local Ray, offline.

Writes a synthetic training archive and a held-out archive from a different seed (both with generated
non-radiographs labelled ``other``), trains with Ray Train (``--weights none``: no download), labels the
held-out archive with the Ray labeling job, evaluates, and prints where everything is, with the three figures
that say whether the labels can be trusted: abstention on held-out phantoms, accuracy on the rows it accepted,
and calibration error, each beside its target.

Sized so that those figures mean something, and measured so the wait is known: before any work the first line
says how long each phase will take on this machine (a few training steps of the very model are timed first:
``core.training.estimate``); the run ends with where its outputs are and the one command that opens the report.
``--quick`` trains on a sixth of the images to see the product run; its figures fall short of the targets.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from jobs.common import run_main

DEMO_BACKBONE = "compact_resnet"
DEMO_IMAGE_SIZE = 88


class Recipe(NamedTuple):
    phantoms: int  # training phantoms
    other: int  # generated non-radiographs in the training archive
    epochs: int


# compact_resnet at 88 px from scratch with the one-cycle schedule (core.training.from_scratch_recipe; BENCHMARKS.md,
# "Demo time" and "Trust figures of the demo's recipe"): the full recipe is what met abstention <= 2 %, accepted
# accuracy >= 0.99, ECE <= 0.05, non-radiographs >= 95 % and RG1/RG3 within 10 minutes on 2 cores (9 epochs at 96 px
# met them too, 80 px did not); the quick one falls short of them: a model trained from scratch needs images.
FULL_RECIPE = Recipe(phantoms=8400, other=1260, epochs=9)
QUICK_RECIPE = Recipe(phantoms=1400, other=210, epochs=16)
TRAINING_FIXED_PASSES = 1
PROBE_STEPS = 10  # timed steps of the up-front estimate; 4 read 9-19 % off the epochs' rate, either way
LABEL_SETUP_S = 15.0  # starting the labeling job's Ray Data pipeline and its model actor, measured on 2 cores


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="directory for all demo outputs")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"train on {QUICK_RECIPE.phantoms:,} phantoms for {QUICK_RECIPE.epochs} epochs instead of "
        f"{FULL_RECIPE.phantoms:,} for {FULL_RECIPE.epochs}: the product end to end, trust figures below target",
    )
    p.add_argument("--train-count", type=int, default=None, help=f"training phantoms (default {FULL_RECIPE.phantoms})")
    p.add_argument("--holdout-count", type=int, default=400)
    p.add_argument(
        "--train-other",
        type=int,
        default=None,
        help="generated non-radiographs in the training archive (default: 15%% of --train-count)",
    )
    p.add_argument("--holdout-other", type=int, default=60, help="generated non-radiographs in the held-out archive")
    p.add_argument("--epochs", type=int, default=None, help=f"default {FULL_RECIPE.epochs}")
    p.add_argument(
        "--side-scale",
        type=float,
        default=1.0,
        help="phantom height and width in both archives, times 256-448 px (trust figures: measured at 1)",
    )
    p.add_argument("--backbone", default=DEMO_BACKBONE)
    p.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE)


def run(args: argparse.Namespace) -> int:
    from cluster.label import LabelOptions, run_label
    from cluster.runtime import ensure_ray
    from cluster.train import train
    from core.training import from_scratch_recipe
    from core.trust.evaluation import evaluate

    recipe = QUICK_RECIPE if args.quick else FULL_RECIPE
    if args.train_other is None:  # the recipe's share of non-radiographs (15 %) of however many phantoms
        phantoms = recipe.phantoms if args.train_count is None else args.train_count
        args.train_other = round(phantoms * recipe.other / recipe.phantoms)
    args.train_count = recipe.phantoms if args.train_count is None else args.train_count
    args.epochs = recipe.epochs if args.epochs is None else args.epochs
    t0 = time.perf_counter()
    out = os.path.abspath(args.out)
    per_image = archive_seconds_per_image(args)  # before anything else starts: this is a timing
    with ThreadPoolExecutor(1) as pool:
        # Ray starts (~7 s, mostly its processes' start-up) while the estimate imports TensorFlow and traces its
        # step on one core; the estimate's timed steps wait for it (Ray in the main thread: it installs signal
        # handlers).
        ray_up = threading.Event()
        planned = pool.submit(estimate, args, per_image, ray_up.wait)
        try:
            ensure_ray()
        finally:
            ray_up.set()
        plan = planned.result()
    print(f"[demo] {plan}", flush=True)
    train_manifest = _write_archive(args, out, "train")
    print(f"[demo] training archive written ({time.perf_counter() - t0:.0f} s)", flush=True)

    bundle = os.path.join(out, "model")
    cfg = from_scratch_recipe(str(train_manifest), bundle, args.backbone, args.image_size, args.epochs)
    with ThreadPoolExecutor(1) as pool:
        # The held-out archive is written while Ray Train starts its controller and worker (processes starting up,
        # cores partly idle); it is not read before labeling.
        holdout = pool.submit(_write_archive, args, out, "holdout")
        result = train(cfg, workers=1, storage_path=os.path.join(out, "ray_train"))
        holdout_manifest = holdout.result()
    if result.error:
        print(f"scanlabel: demo training failed: {result.error}", file=sys.stderr)
        return 1
    print(f"[demo] trained ({time.perf_counter() - t0:.0f} s)", flush=True)

    labels = os.path.join(out, "labels")
    run_label(LabelOptions(manifest=str(holdout_manifest), model=bundle, out=labels, relabel=True))
    report = os.path.join(out, "report")
    metrics = evaluate(labels, str(holdout_manifest), report, model=bundle)
    elapsed = time.perf_counter() - t0
    print()
    print("=" * 72)
    print(f"scanlabel demo finished in {elapsed / 60:.1f} min")
    print(f"  model bundle      {bundle}")
    print(f"  labels (Parquet)  {labels}")
    print(f"  report            {os.path.join(report, 'report.html')}")
    print(f"  held-out images   {metrics['n']}  (seed 1, never seen in training)")
    print(f"  held-out accuracy {metrics['accuracy']:.3f}")
    print(f"  held-out macro-F1 {metrics['macro_f1']:.3f}")
    # Trust figures (core/trust/metrics.py): over held-out phantoms labelled ok, and the `other` rows.
    print(f"  abstention on held-out phantoms     {_figure(metrics['abstention_rate'], '.1%')}  (target <= 2%)")
    print(f"  accuracy on accepted phantoms       {_figure(metrics['accuracy_accepted'], '.3f')}  (target >= 0.99)")
    print(
        f"  ECE after calibration (15 bins)     {_figure(metrics['ece_after'], '.3f')}  "
        f"(target <= 0.05; before: {_figure(metrics['ece_before'], '.3f')})"
    )
    print(
        f"  non-radiographs given no body part  {_figure(metrics['other_without_body_part'], '.1%')}  "
        f"(target >= 95%; of {metrics['n_other']}: abstained, or skipped as out of scope)"
    )
    print("=" * 72)
    print(f"outputs in {out}; open the report with:")
    print(f"  python -m webbrowser file://{os.path.join(report, 'report.html')}")
    return 0


def _write_archive(args: argparse.Namespace, out: str, which: str) -> str:
    """The training archive (seed 0) or the held-out one (seed 1, never seen in training): its manifest."""
    from core.synthetic.sample_archive import write_sample_archive

    if which == "train":
        count, seed, other = args.train_count, 0, args.train_other
    else:
        count, seed, other = args.holdout_count, 1, args.holdout_other
    path = os.path.join(out, f"{which}_archive")
    return str(write_sample_archive(path, count, seed=seed, other_count=other, side_scale=args.side_scale))


class Plan(NamedTuple):
    """The demo's phases in seconds, from rates measured on this machine just before the run."""

    archives_s: float
    train_s: float
    label_s: float
    train_images: int
    rate: float

    def __str__(self) -> str:
        from core.progress import format_duration

        total = self.archives_s + self.train_s + self.label_s
        return (
            f"expect about {format_duration(total)} on this machine: "
            f"training archive ~{format_duration(self.archives_s)}, "
            f"training ~{format_duration(self.train_s)} ({self.train_images:,} image passes at {self.rate:.0f} "
            f"images/s, timed just now), labeling and report ~{format_duration(self.label_s)}"
        )


def archive_seconds_per_image(args: argparse.Namespace) -> float:
    """Seconds one core takes to draw and write an archive image, from a 20-image archive written just now."""
    import tempfile

    from core.synthetic.sample_archive import write_sample_archive

    with tempfile.TemporaryDirectory() as tmp:
        # One image first: the writer's first call imports its encoders and generators, a cost the archive's
        # worker processes pay once per process, not per image.
        write_sample_archive(os.path.join(tmp, "warm"), 1, seed=98, other_count=1, workers=1)
        t = time.perf_counter()
        write_sample_archive(tmp, 16, seed=99, other_count=4, workers=1, side_scale=args.side_scale)
        return (time.perf_counter() - t) / 20


def estimate(
    args: argparse.Namespace, per_image: float, before_timing: Callable[[], object] | None = None
) -> Plan:
    """Time a few training steps of the demo's model; scale them and the archive rate to the whole run.

    ``per_image`` is :func:`archive_seconds_per_image`; ``before_timing`` is waited for before the timed steps
    (:func:`core.training.estimate.measure_step_rate`)."""
    from core.io.schema import BODY_PARTS
    from core.synthetic.sample_archive import usable_cores
    from core.training import from_scratch_recipe
    from core.training.config import resolve_precision
    from core.training.estimate import measure_step_rate

    # The held-out archive is written while Ray Train starts (run()), so only the training archive is a phase.
    archives_s = (args.train_count + args.train_other) * per_image / max(1, min(usable_cores(), 4))
    recipe = from_scratch_recipe("", "", args.backbone, args.image_size, args.epochs)
    policy = resolve_precision(recipe, on_gpu=False)  # the demo trains on this machine's CPU cores
    probe = measure_step_rate(
        args.backbone,
        args.image_size,
        len(BODY_PARTS) + 1,
        steps=PROBE_STEPS,
        policy=policy,
        before_timing=before_timing,
    )
    rate = probe.images_per_s
    images_in_training = args.train_count + args.train_other
    train_images = images_in_training * args.epochs
    # Besides its epochs, a training starts its Ray Train worker, decodes every image once and traces its step, and
    # at the end validates, calibrates and writes the bundle: together about one more pass over the images at the
    # step rate on the 2-core machine (BENCHMARKS.md, "Demo time": 58 + 8 s beside 417 s of epochs).
    train_s = (train_images + TRAINING_FIXED_PASSES * images_in_training) / rate
    label_s = LABEL_SETUP_S + 3 * (args.holdout_count + args.holdout_other) / rate
    return Plan(archives_s, train_s, label_s, train_images, rate)


def _figure(value: float | None, fmt: str) -> str:
    """A metric, or n/a when it has no rows to be computed from (e.g. every row abstained in a tiny run)."""
    return "n/a" if value is None else format(value, fmt)


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel demo", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
