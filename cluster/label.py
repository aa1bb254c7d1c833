"""The labeling job on Ray Data: manifest → CPU decode tasks → model-actor pool → atomic Parquet parts.

Streaming end to end: only the blocks in flight hold images.  Decode runs as plain CPU tasks (kept out of the
model actors: Ray Data would otherwise fuse them, serialising decode behind the model); each model actor loads
the bundle once, pins exactly one GPU when the cluster has GPUs, and runs fixed-shape batches.  The driver
commits results as whole part files, so a killed run loses at most its uncommitted tail, which the next run
(resume is the default) picks up again.  Nothing is done before the manifest and bundle are checked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from core import killpoints
from core.errors import ManifestError
from core.io import access, dicomweb, schema, storage
from core.io.manifests import read_manifest
from core.labeling import store as labels_store
from core.labeling.batches import BatchClassifier, decode_batch
from core.labeling.lease import DatasetLease
from core.labeling.options import LabelOptions
from core.model.bundle import load_bundle
from core.progress import ProgressTracker
from core.readers.header_map import load_header_map

log_ = logging.getLogger("scanlabel.label")


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
    header_disagreements: int = 0
    header_disagreement_examples: list[dict[str, str]] = field(default_factory=list)
    abstained: int = 0  # ok rows the model abstained on (label "other", abstain_reason set)
    abstain_reasons: dict[str, int] = field(default_factory=dict)
    run_id: str = ""
    started_at: float = 0.0
    drift: dict[str, Any] | None = None  # core.trust.drift.DriftResult.to_dict() of this run
    # Failed object-store requests this run retried and got past: the lease's (botocore's count).  pyarrow's S3
    # client retries part files and listings inside the AWS SDK, which reports no count (docs/faults.md).
    store_retries: dict[str, int] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)  # unreadable part files moved aside (--quarantine-bad-parts)

    @property
    def error_rate(self) -> float:
        return self.failed / self.done if self.done else 0.0

    def lines(self) -> list[str]:
        return [
            f"[label] model_id={self.model_id} manifest={self.manifest_rows} to_do={self.todo} "
            f"done={self.done} ok={self.ok} failed={self.failed} skipped={self.skipped} "
            f"already_labelled={self.already_ok} kept_permanent_errors={self.carried_errors}",
            f"[label] per label: {json.dumps(dict(sorted(self.per_label.items())))}",
            f"[label] errors by code: {json.dumps(dict(sorted(self.errors.items())))}",
            f"[label] DICOM header disagrees with the pixels for {self.header_disagreements} image(s)"
            + (f" (examples in _runs/{self.run_id}.json)" if self.header_disagreements and self.run_id else ""),
            f"[label] abstained {self.abstained} of {self.ok} ok: "
            f"{json.dumps(dict(sorted(self.abstain_reasons.items())))}",
            f"[label] {self.images_per_s:.1f} images/s over {self.seconds:.1f} s",
        ]


class ModelActor:
    """Ray actor: loads the bundle once, runs its labeling graph on its CPU share (or its GPU), classifies
    decoded batches.  A CPU actor with a LiteRT export (``--engine auto``) never imports TensorFlow: its
    start-up is the interpreter's, a fraction of a second."""

    def __init__(
        self,
        bundle_path: str,
        batch_size: int,
        threads: int,
        min_confidence: float | None = None,
        max_ood_score: float | None = None,
        engine: str = "auto",
    ) -> None:
        import ray

        from core.model.engines import resolve_engine

        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        node = ray.get_runtime_context().get_node_id()[:12]
        # Where the actor runs, said before the model loads: an actor that is placed but still loading when the
        # last batch is done (a busy machine) has still been given its own GPU.
        print(
            f"[label] model actor pid={os.getpid()} node={node} gpu_ids={','.join(gpu_ids) or '-'} "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES') or '-'}",
            flush=True,
        )
        bundle = load_bundle(bundle_path)
        engine = resolve_engine(engine, bundle.litert_path is not None, bool(gpu_ids))
        if engine == "keras":
            from cluster.runtime import limit_tf_threads

            limit_tf_threads(threads)  # before TF runs anything: its pools are fixed at first use
            if gpu_ids:
                _full_float32_on_gpu()  # labels as on the CPU, not TF32's
        self.classifier = BatchClassifier(
            bundle, batch_size, min_confidence, max_ood_score, engine=engine, threads=threads, gpu=bool(gpu_ids)
        )
        ready = f"[label] model actor pid={os.getpid()} ready: engine={self.classifier.engine} threads={threads}"
        print(ready, flush=True)

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        table = self.classifier.label_batch(batch)
        for name in [k for k in batch if k.startswith(KEEP_PREFIX)]:
            table = table.append_column(name[len(KEEP_PREFIX) :], pa.array(list(batch[name])))
        return table


KEEP_PREFIX = "keep__"


def _full_float32_on_gpu() -> None:
    """Turn TensorFloat-32 off in this actor: TF uses it for float32 convolutions and matmuls on Ampere and
    later GPUs by default, and on an H200 it moved efficientnet_b0's probabilities by up to 0.024 from the CPU's
    (BENCHMARKS.md, GPU capacity), where the labels are held to 1e-3."""
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)


def _decode(batch: dict[str, Any], cfg, keep: tuple[str, ...], threads: int, **checks) -> dict[str, Any]:
    import cv2

    # OpenCV starts one thread per core of the machine, whatever Ray granted the task (OMP_NUM_THREADS does not
    # reach its pthreads pool): on 2 cores a decode task took 7 % more CPU per image with its second thread,
    # competing with the model actor's threads, for the same wall time alone (docs/deploy.md: threads follow Ray's
    # grants).
    cv2.setNumThreads(threads)
    out = decode_batch(batch, cfg, **checks)
    for name in keep:  # only the manifest columns the user listed travel to the output
        out[KEEP_PREFIX + name] = batch[name]
    return out


@dataclass
class Prepared:
    """Everything checked and decided before any Ray work: a bad manifest or bundle never gets this far."""

    bundle: Any
    manifest: pa.Table
    plan: labels_store.Plan
    compacted: int
    header_map: dict[str, str]
    keep_schema: pa.Schema
    lease: DatasetLease | None = None  # held from before compaction to the end of the run
    quarantined: list[str] = field(default_factory=list)


def prepare(opts: LabelOptions, held: contextlib.ExitStack | None = None, log=print) -> Prepared:
    access.validate_roots(opts.allowed_roots)  # a mistyped root must fail the job, not every row
    mapping = load_header_map(opts.header_map)
    bundle = load_bundle(opts.model)
    _check_trust_overrides(opts, bundle)
    _check_engine(opts, bundle)
    table = schema.validate_manifest(read_manifest(opts.manifest))
    dicomweb.preflight(table.column(schema.URI), http_options(opts))  # wrong credentials: refused before any work
    missing = [c for c in opts.keep_columns if c not in table.column_names]
    if missing:
        raise ManifestError(f"--keep-columns {missing} are not in the manifest (it has {table.column_names})")
    keep_schema = pa.schema([table.schema.field(c) for c in opts.keep_columns])
    schema.labels_schema(keep_schema)  # refuses names that collide with label columns
    manifest = table.select([schema.URI, schema.IMAGE_ID, *opts.keep_columns])
    # One writer at a time (core/labeling/lease.py): taken before compaction and planning, so a run that waited plans
    # against what the previous holder committed; `held` releases it however the run ends.
    lease = held.enter_context(_take_lease(opts, log)) if held is not None else None
    compacted, quarantined = 0, []
    if storage.exists(opts.out):
        if opts.quarantine_bad_parts:  # before anything reads the parts: a bad one stops every reader
            quarantined = labels_store.quarantine_bad_parts(opts.out, log)
        labels_store.remove_stale_temporaries(opts.out)
        compacted = labels_store.compact(opts.out, _lease_check(lease))
    existing = labels_store.existing_keys(opts.out)
    plan = labels_store.plan(manifest, existing, bundle.model_id, relabel=opts.relabel, retry_errors=opts.retry_errors)
    return Prepared(bundle, manifest, plan, compacted, mapping, keep_schema, lease, quarantined)


def _take_lease(opts: LabelOptions, log) -> DatasetLease:
    return DatasetLease(opts.out, timeout_s=opts.lease_timeout_s, log=log).acquire(opts.wait_for_lease_s)


def _lease_check(lease: DatasetLease | None):
    """What commits call first: raises LeaseLost once another run has taken the dataset over."""
    return lease.check if lease is not None else None


def _check_trust_overrides(opts: LabelOptions, bundle) -> None:
    """Threshold overrides need the bundle's trust data; refuse before any work rather than in every actor."""
    from core.errors import BundleError
    from core.trust.confidence import load_trust

    if (opts.min_confidence is not None or opts.max_ood_score is not None) and load_trust(bundle) is None:
        raise BundleError(
            f"--min-confidence / --max-ood-score need a bundle with trust data; {opts.model} has none "
            "(trained before calibration existed): retrain it"
        )


def _check_engine(opts: LabelOptions, bundle) -> None:
    """An engine the bundle cannot run is refused before any work (a GPU pool is checked in build_dataset)."""
    from core.errors import BundleError
    from core.model.engines import resolve_engine

    try:
        resolve_engine(opts.engine, bundle.litert_path is not None, gpu=False)
    except ValueError as e:
        raise BundleError(f"{opts.model}: {e}") from e


def _pool_size(opts: LabelOptions, gpus_per_actor: float) -> int:
    import ray

    if opts.model_actors:
        return opts.model_actors
    if gpus_per_actor:
        return max(1, int(ray.cluster_resources().get("GPU", 0) // gpus_per_actor))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, cpus // 2)  # CPU clusters: one actor per two cores; decode tasks interleave with them


def _pool_fits_now(n_actors: int, cpus_per_actor: float, gpus_per_actor: float, decode_cpus: float) -> bool:
    """Whether the cluster's nodes (those up now) hold the CPUs and GPUs for every model actor plus one decode
    task; if not, the pool is waiting for nodes to join.  Totals, not what is free this instant: the previous
    run's actors may still be handing theirs back."""
    import ray

    total = ray.cluster_resources()
    return (
        total.get("CPU", 0) + 1e-9 >= n_actors * cpus_per_actor + decode_cpus
        and total.get("GPU", 0) + 1e-9 >= n_actors * gpus_per_actor
    )


def _default_tf_threads(opts: LabelOptions, n_actors: int, gpus_per_actor: float) -> int:
    """TF threads per model actor.

    With GPUs the model runs on the device and its actor needs only its own CPU share.  On CPU-only clusters
    the model dominates (EfficientNet-B0: ~77 ms of CPU per image against ~15 ms to decode a 1024² PNG), so
    the actors share all the cores between them and decode tasks fill the gaps: measured on 2 cores, 2 TF
    threads labelled 17.9 img/s against 14.2 img/s with 1 (cores otherwise idle while decode waits).
    """
    import ray

    if gpus_per_actor:
        return max(1, int(opts.cpus_per_actor))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, cpus // max(1, n_actors))


def http_options(opts: LabelOptions, run_id: str = "") -> dicomweb.HttpOptions:
    """How decode tasks talk to DICOMweb servers (credentials are not here: workers read them from their
    environment, so they never travel as task arguments)."""
    return dicomweb.HttpOptions(
        ca_bundle=opts.ca_bundle, concurrency=max(1, opts.dicomweb_concurrency), breaker_scope=run_id
    )


def build_dataset(
    opts: LabelOptions, todo: pa.Table, bundle, header_map: dict[str, str] | None = None, run_id: str = ""
):
    """The Ray Data pipeline over the rows to do (lazy: nothing runs until it is iterated)."""
    import ray

    from cluster.runtime import cluster_gpus

    gpus = cluster_gpus()
    gpus_per_actor = opts.gpus_per_actor if opts.gpus_per_actor is not None else (1 if gpus else 0)
    n_actors = _pool_size(opts, gpus_per_actor)
    if gpus_per_actor:  # prepare() checked the engine against the bundle; a GPU pool is known only now
        from core.model.engines import resolve_engine

        resolve_engine(opts.engine, bundle.litert_path is not None, gpu=True)
    bs = opts.batch_size
    rows_per_block = opts.rows_per_block or max(bs, min(bs * 2, -(-todo.num_rows // max(1, n_actors * 4))))
    # Blocks of two batches: a decode task hands its output on when its whole block is done, so the first model
    # batch waits for the first block.  Measured on 2 cores (2,000 1024² PNGs, interleaved runs): 64-row blocks
    # returned the first batch at 4.7-4.9 s against 6.2-7.4 s with 256, and the whole run was 4-8 % faster;
    # 32-row blocks were slower again (per-task overhead).
    blocks = [todo.slice(i, rows_per_block).combine_chunks() for i in range(0, todo.num_rows, rows_per_block)]
    # When the cluster's nodes can hold the whole pool, start at once: decode tasks then work through the
    # first blocks while the model actors import TensorFlow, load and trace (seconds of CPU each), instead of
    # the whole pipeline waiting for them.  Otherwise (GPU nodes still joining an autoscaling cluster) start
    # only once the whole pool is up; a pool that cannot start in time fails the job with a clear message
    # instead of crawling on one actor.  Set before the dataset exists: a Dataset keeps its own copy.
    fits = _pool_fits_now(n_actors, opts.cpus_per_actor, gpus_per_actor, opts.decode_cpus)
    ray.data.DataContext.get_current().wait_for_min_actors_s = 0 if fits else opts.wait_for_actors_s
    # from_blocks (a Ray Data DeveloperAPI) reads each block's metadata here in the driver, where from_arrow runs
    # one remote task per block for it: on a fresh driver, every run's case, those tasks kept the pipeline from
    # starting for 1.3 s while workers loaded Ray Data's block code.
    ds = ray.data.from_blocks(blocks)
    ds = ds.map_batches(
        _decode,
        fn_kwargs={
            "cfg": bundle.preprocess,
            "keep": tuple(opts.keep_columns),
            "threads": max(1, int(opts.decode_cpus)),
            "allowed_roots": tuple(opts.allowed_roots),
            "max_pixels": opts.max_pixels,
            "header_map": header_map,
            "modalities": opts.modalities or bundle.modalities,
            "http": http_options(opts, run_id),
            **({"max_bytes": opts.max_bytes} if opts.max_bytes else {}),
        },
        batch_size=bs,
        batch_format="numpy",
        num_cpus=opts.decode_cpus,
        # An honest per-task memory reservation (a 100 MP 16-bit image decodes to ~0.8 GB of float32). Having
        # remote args that differ from the actors' also keeps Ray Data from fusing decode into the model actors,
        # which would serialise decode behind the model.
        memory=opts.decode_memory_mb * 2**20,
    )
    threads = opts.tf_threads or _default_tf_threads(opts, n_actors, gpus_per_actor)

    ds = ds.map_batches(
        ModelActor,
        fn_constructor_kwargs={
            "bundle_path": opts.model,
            "batch_size": bs,
            "threads": threads,
            "min_confidence": opts.min_confidence,
            "max_ood_score": opts.max_ood_score,
            "engine": opts.engine,
        },
        batch_size=bs,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_gpus=gpus_per_actor,
        num_cpus=opts.cpus_per_actor,
    )
    return ds, n_actors, gpus_per_actor


def run_label(opts: LabelOptions, log=None) -> LabelSummary:
    """Label under the dataset's lease (core/labeling/lease.py): taken once the inputs are checked, released however the
    run ends (raises LeaseHeld when another live run holds it past ``wait_for_lease_s``)."""
    with contextlib.ExitStack() as held:
        return _run_label(opts, log or log_.info, held)


def _run_label(opts: LabelOptions, log, held: contextlib.ExitStack) -> LabelSummary:
    t_start, started_at = time.perf_counter(), time.time()
    prep = prepare(opts, held, log)
    bundle, plan = prep.bundle, prep.plan
    summary = LabelSummary(bundle.model_id, prep.manifest.num_rows, plan.todo.num_rows, already_ok=plan.already_ok)
    summary.carried_errors, summary.compacted = plan.permanent_errors, prep.compacted
    summary.started_at, summary.quarantined = started_at, prep.quarantined
    if plan.todo.num_rows == 0:
        summary.seconds, summary.store_retries = time.perf_counter() - t_start, _store_retries(prep)
        log(f"[label] 0 to do: all {prep.manifest.num_rows} manifest rows already labelled by {bundle.model_id}")
        _drift_of_last_run(opts, summary, log)
        return summary
    log(
        f"[label] {plan.todo.num_rows} to do of {prep.manifest.num_rows} (model_id={bundle.model_id}, "
        f"already ok={plan.already_ok}, retrying={plan.retry})"
    )

    from cluster.runtime import ensure_ray

    ensure_ray(opts.address)
    run_id = prep.lease.run_id if prep.lease else uuid.uuid4().hex[:12]
    ds, n_actors, gpus_per_actor = build_dataset(opts, plan.todo, bundle, prep.header_map, run_id)
    log(f"[label] {n_actors} model actor(s), {gpus_per_actor} GPU each, batch {opts.batch_size}")
    writer = labels_store.PartWriter(
        opts.out,
        run_id,
        opts.rows_per_file,
        schema.labels_schema(prep.keep_schema),
        guard=_lease_check(prep.lease),
    )
    per_label: Counter = Counter()
    errs: Counter = Counter()
    abstain: Counter = Counter()
    t0 = time.perf_counter()
    tracker = ProgressTracker(log_, "label", summary.todo, "rows", rate_label="images/s")
    first_result = None
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        first_result = first_result or time.perf_counter()
        batch = schema.labels_table(batch, prep.keep_schema)
        writer.add(batch)
        status = batch.column("status").to_pylist()
        summary.done += batch.num_rows
        summary.ok += status.count(schema.STATUS_OK)
        summary.failed += status.count(schema.STATUS_ERROR)
        summary.skipped += status.count(schema.STATUS_SKIPPED)
        per_label.update(x for x in batch.column(schema.LABEL).to_pylist() if x)
        errs.update(x for x in batch.column("error").to_pylist() if x)
        abstain.update(x for x in batch.column("abstain_reason").to_pylist() if x)
        _count_disagreements(summary, batch)
        tracker.update(summary.done, failed=summary.failed, abstained=sum(abstain.values()))
    writer.flush()
    summary.compacted += labels_store.compact(opts.out, _lease_check(prep.lease))
    summary.seconds = time.perf_counter() - t_start
    summary.images_per_s = summary.done / max(time.perf_counter() - t0, 1e-9)
    summary.per_label, summary.errors, summary.files = dict(per_label), dict(errs), writer.files
    summary.abstained, summary.abstain_reasons = sum(abstain.values()), dict(abstain)
    summary.run_id = writer.run_id
    summary.drift = _assess_drift(opts, summary, log)
    summary.store_retries = _store_retries(prep)
    _write_run_summary(opts.out, writer.run_id, summary)
    for line in summary.lines():
        log(line)
    if opts.max_error_rate is not None and summary.error_rate > opts.max_error_rate:
        raise ErrorRateExceeded(
            f"{summary.failed} of {summary.done} rows failed ({summary.error_rate:.1%} > --max-error-rate "
            f"{opts.max_error_rate:.1%}); the labels that succeeded were written to {opts.out}, errors by code: "
            f"{json.dumps(summary.errors)}",
            summary,
        )
    if opts.fail_on_drift and summary.drift and summary.drift["flagged"]:
        raise DriftDetected(
            f"run {summary.run_id} drifted from its reference ({', '.join(summary.drift['reasons'])}); its labels "
            f"and run summary are written to {opts.out}: see `scanlabel runs --labels {opts.out}`",
            summary,
        )
    return summary


def _store_retries(prep: Prepared) -> dict[str, int]:
    return {"lease": prep.lease.store_errors_retried} if prep.lease is not None and prep.lease.supported else {}


class ErrorRateExceeded(RuntimeError):
    """More rows failed than the run allows: a nightly job must not silently label garbage."""

    exit_code = 3

    def __init__(self, message: str, summary: LabelSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class DriftDetected(RuntimeError):
    """--fail-on-drift: the run's mix, error or abstention rate moved away from its reference (core/trust/drift.py)."""

    exit_code = 4

    def __init__(self, message: str, summary: LabelSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


def _assess_drift(opts: LabelOptions, summary: LabelSummary, log) -> dict[str, Any] | None:
    """Compare this run with the earlier runs of the same model; a failure to read history never fails the run."""
    from core.labeling.run_history import load_runs
    from core.trust.drift import assess

    try:
        history = load_runs(opts.out)
    except (OSError, ValueError) as e:
        log_.warning("drift not assessed: the run history of %s could not be read (%s)", opts.out, e)
        return None
    current = {**asdict(summary), "finished_at": time.time()}
    result = assess(current, history, window=opts.drift_window)
    log(f"[label] {result.describe()}")
    return result.to_dict()


def _drift_of_last_run(opts: LabelOptions, summary: LabelSummary, log) -> None:
    """Nothing new to label: with --fail-on-drift, a rerun (a scheduler's retry) must not turn the last run's
    drift alarm into a success, so the last run of this model's flag is reported again."""
    if not opts.fail_on_drift or not storage.exists(opts.out):
        return
    from core.labeling.run_history import load_runs

    mine = [r for r in load_runs(opts.out) if r.get("model_id") == summary.model_id and int(r.get("done") or 0) > 0]
    if mine and (mine[-1].get("drift") or {}).get("flagged"):
        last = mine[-1]
        summary.drift = last["drift"]
        raise DriftDetected(
            f"nothing new to label, and the last run ({last.get('run_id')}) was flagged for drift "
            f"({', '.join(last['drift'].get('reasons') or [])}): see `scanlabel runs --labels {opts.out}`",
            summary,
        )


def _count_disagreements(summary: LabelSummary, batch: pa.Table) -> None:
    agrees = batch.column("header_agrees").to_pylist()
    for i, a in enumerate(agrees):
        if a is False:
            summary.header_disagreements += 1
            if len(summary.header_disagreement_examples) < 20:
                summary.header_disagreement_examples.append(
                    {
                        "image_id": batch.column(schema.IMAGE_ID)[i].as_py(),
                        "header": batch.column("header_class")[i].as_py(),
                        "pixels": batch.column(schema.LABEL)[i].as_py(),
                    }
                )


def _write_run_summary(out: str, run_id: str, summary: LabelSummary) -> None:
    """Per-run summaries live under ``_runs/`` (ignored by Parquet dataset readers)."""
    data = json.dumps({**asdict(summary), "run_id": run_id, "finished_at": time.time()}, indent=2).encode()
    killpoints.reached("runs.write")
    storage.write_bytes_atomic(storage.join(out, "_runs", f"{run_id}.json"), data)
