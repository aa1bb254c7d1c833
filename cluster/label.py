"""The labeling job on Ray Data: manifest → CPU decode tasks → model-actor pool → atomic Parquet parts.

Streaming end to end: only blocks in flight are in memory.  Decode scales with CPU tasks; each model actor
loads the bundle once, pins one GPU when the cluster has them, and runs fixed-shape batches.  The driver
commits results as whole part files, so a killed run loses at most the uncommitted tail, which the next run
(resume is the default) picks up again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import ray

from cluster.runtime import cluster_gpus, limit_tf_threads
from core import labels_store, schema, storage
from core.bundle import load_bundle
from core.dataset import read_manifest
from core.labeling import BatchClassifier, decode_batch


@dataclass
class LabelOptions:
    manifest: str
    model: str
    out: str
    batch_size: int = 32
    resume: bool = True
    relabel: bool = False
    retry_errors: bool = False
    model_actors: int | None = None
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    decode_cpus: float = 1.0
    rows_per_file: int = 10_000
    blocks: int | None = None


@dataclass
class LabelSummary:
    model_id: str
    manifest_rows: int
    todo: int
    done: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    already_ok: int = 0
    carried_errors: int = 0
    per_label: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_s: float = 0.0
    compacted: int = 0
    files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"[label] model_id={self.model_id} manifest={self.manifest_rows} to_do={self.todo} "
            f"done={self.done} ok={self.ok} failed={self.failed} skipped={self.skipped} "
            f"already_labelled={self.already_ok} kept_permanent_errors={self.carried_errors}",
            f"[label] per label: {json.dumps(dict(sorted(self.per_label.items())))}",
            f"[label] errors by code: {json.dumps(dict(sorted(self.errors.items())))}",
            f"[label] {self.images_per_s:.1f} images/s over {self.seconds:.1f} s",
        ]


class _ModelActor:
    """Ray actor: loads the bundle once and classifies decoded batches."""

    def __init__(self, bundle_path: str, batch_size: int, threads: int) -> None:
        limit_tf_threads(threads)
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        self.classifier = BatchClassifier(load_bundle(bundle_path), batch_size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.classifier.label_batch(batch)


def _decode(batch: dict[str, Any], cfg) -> dict[str, Any]:
    return decode_batch(batch, cfg)


def run_label(opts: LabelOptions, log=print) -> LabelSummary:
    t_start = time.perf_counter()
    bundle = load_bundle(opts.model)
    table = read_manifest(opts.manifest, columns=None)
    table = schema.validate_manifest(table)
    manifest = table.select([schema.URI, schema.IMAGE_ID])

    compacted = labels_store.compact(opts.out) if storage.exists(opts.out) else 0
    existing = labels_store.existing_keys(opts.out)
    resume = opts.resume and not opts.relabel
    plan = labels_store.plan(manifest, existing, bundle.model_id, relabel=not resume, retry_errors=opts.retry_errors)
    summary = LabelSummary(bundle.model_id, table.num_rows, plan.todo.num_rows, already_ok=plan.already_ok)
    summary.carried_errors = plan.permanent_errors
    summary.compacted = compacted
    if plan.todo.num_rows == 0:
        summary.seconds = time.perf_counter() - t_start
        log(f"[label] 0 to do: all {table.num_rows} manifest rows already labelled by {bundle.model_id}")
        return summary
    log(
        f"[label] {plan.todo.num_rows} to do of {table.num_rows} (model_id={bundle.model_id}, "
        f"already ok={plan.already_ok}, retrying={plan.retry})"
    )

    gpus = cluster_gpus()
    gpus_per_actor = opts.gpus_per_actor if opts.gpus_per_actor is not None else (1 if gpus else 0)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if opts.model_actors:
        n_actors = opts.model_actors
    elif gpus_per_actor:
        n_actors = max(1, int(gpus // gpus_per_actor))
    else:
        n_actors = max(1, cpus // 2)
    bs = opts.batch_size
    n_blocks = opts.blocks or max(1, min(4096, -(-plan.todo.num_rows // (bs * 4))))
    rows_per_block = -(-plan.todo.num_rows // n_blocks)
    slices = [plan.todo.slice(i, rows_per_block) for i in range(0, plan.todo.num_rows, rows_per_block)]
    ds = ray.data.from_arrow(slices)
    ds = ds.map_batches(
        _decode,
        fn_kwargs={"cfg": bundle.preprocess},
        batch_size=bs,
        batch_format="numpy",
        num_cpus=opts.decode_cpus,
    )
    ds = ds.map_batches(
        _ModelActor,
        fn_constructor_kwargs={
            "bundle_path": opts.model,
            "batch_size": bs,
            "threads": max(1, int(opts.cpus_per_actor)),
        },
        batch_size=bs,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_gpus=gpus_per_actor,
        num_cpus=opts.cpus_per_actor,
    )
    writer = labels_store.PartWriter(opts.out, uuid.uuid4().hex[:12], opts.rows_per_file)
    per_label: Counter = Counter()
    errs: Counter = Counter()
    t0 = time.perf_counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        batch = schema.labels_table(batch.to_pydict())
        writer.add(batch)
        status = batch.column("status").to_pylist()
        summary.done += batch.num_rows
        summary.ok += status.count(schema.STATUS_OK)
        summary.failed += status.count(schema.STATUS_ERROR)
        summary.skipped += status.count(schema.STATUS_SKIPPED)
        per_label.update(x for x in batch.column(schema.LABEL).to_pylist() if x)
        errs.update(x for x in batch.column("error").to_pylist() if x)
    writer.flush()
    summary.compacted += labels_store.compact(opts.out)
    summary.seconds = time.perf_counter() - t_start
    summary.images_per_s = summary.done / max(time.perf_counter() - t0, 1e-9)
    summary.per_label, summary.errors, summary.files = dict(per_label), dict(errs), writer.files
    _write_run_summary(opts.out, writer.run_id, summary)
    for line in summary.lines():
        log(line)
    return summary


def _write_run_summary(out: str, run_id: str, summary: LabelSummary) -> None:
    """Per-run summaries live under ``_runs/`` (ignored by Parquet dataset readers)."""
    data = json.dumps({"run_id": run_id, "finished_at": time.time(), **asdict(summary)}, indent=2).encode()
    storage.write_bytes_atomic(storage.join(out, "_runs", f"{run_id}.json"), data)
