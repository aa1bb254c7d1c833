"""``python -m jobs.bench faults``: the crash schedule of tests/crash_schedule.py at length, and its figures.

The schedule SIGKILLs a real labeling driver at a seeded series of named points of its commit path and reruns it at
once after each kill (docs/faults.md); this module sets up its inputs, runs the long schedule and prints the
figures BENCHMARKS.md, "Faults" records.  The test suite runs a few points of the same schedule.
"""

from __future__ import annotations

import os

from tests.crash_schedule import ScheduleResult, Trial, crash_schedule, run_schedule


def figures(result: ScheduleResult, seed: int, load: str) -> str:
    """The schedule's figures as a Markdown table (what BENCHMARKS.md, "Faults" records)."""
    by_point: dict[str, list[Trial]] = {}
    for t in result.trials:
        by_point.setdefault(t.spec, []).append(t)
    lines = [
        f"Crash schedule, seed {seed}: {len(result.trials)} trials over {len(by_point)} kill points, "
        f"{result.kills} killed, "
        f"{result.seconds:.0f} s in all (load: {load}, shared machine)",
        "",
        "| kill point | trials | killed | mean s/trial |",
        "|---|---|---|---|",
    ]
    for spec, ts in sorted(by_point.items()):
        mean = sum(t.seconds for t in ts) / len(ts)
        lines.append(f"| `{spec}` | {len(ts)} | {sum(t.killed for t in ts)} | {mean:.1f} |")
    lines += [
        "",
        f"After the last clean run: {result.final_rows} rows for {result.images} images, "
        f"{result.duplicates} duplicates, rows lost {result.rows_lost}, orphan temporaries "
        f"{len(result.orphan_temporaries)}, {result.run_summaries} run summaries all readable, lease "
        f"{result.lease_state}.",
    ]
    return "\n".join(lines)


def register(sub) -> None:
    """``faults`` of ``python -m jobs.bench``: the long crash schedule and its figures."""
    p = sub.add_parser("faults", help="the labeling driver SIGKILLed at a seeded schedule of points, rerun each time")
    p.add_argument("--seed", type=int, default=26)
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--out", default="bench_out/faults")
    p.set_defaults(bench_run=run_faults)


def run_faults(args) -> int:
    """Set up a sample archive, an untrained bundle and a local Ray, then run the schedule and print its figures."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from cluster.runtime import start_local_ray

    root = os.path.abspath(args.out)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    manifest, bundle = _inputs(root, args.images)
    import ray

    start_local_ray(num_cpus=4)
    try:
        address = ray.get_runtime_context().gcs_address
        uris = pq.read_table(manifest).column("uri").to_pylist()
        small = os.path.join(root, "manifest.parquet")
        ids = [f"img-{i:04d}" for i in range(args.images)]
        pq.write_table(pa.table({"uri": [uris[i % len(uris)] for i in range(args.images)], "image_id": ids}), small)
        result = run_schedule(
            crash_schedule(args.seed, args.trials),
            small,
            bundle,
            os.path.join(root, "labels"),
            address,
            root,
            args.images,
        )
    finally:
        ray.shutdown()
    load = open("/proc/loadavg").read().split()[:3]
    print(figures(result, args.seed, "load average " + " ".join(load)))
    return 0 if result.rows_lost == 0 and result.duplicates == 0 and not result.orphan_temporaries else 1


def _inputs(root: str, images: int) -> tuple[str, str]:
    """A small real archive and an untrained but real bundle (the test suite's, at 64 px)."""
    import keras

    from core.model.backbones import build_classifier
    from core.model.bundle import save_bundle
    from core.model.preprocess import PreprocessConfig
    from core.synthetic.phantoms import CLASSES
    from core.synthetic.sample_archive import write_sample_archive

    manifest = write_sample_archive(os.path.join(root, "archive"), min(images, 40), seed=3)
    keras.utils.set_random_seed(0)
    model, _ = build_classifier("mobilenet_v3_small", list(CLASSES), None, 64)
    bundle = os.path.join(root, "model")
    save_bundle(bundle, model, list(CLASSES), PreprocessConfig(image_size=64), {"backbone": "mobilenet_v3_small"})
    return str(manifest), bundle
