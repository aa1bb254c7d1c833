"""The labeling job's options, declared once: the Python API's dataclass and ``scanlabel label``'s flags.

Fields made with :func:`core.options.option` are on the command line too; the others are API-only tuning knobs.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from core.labeling.lease import DEFAULT_TIMEOUT_S as LEASE_TIMEOUT_S
from core.options import option
from core.readers.scope import normalize_modalities


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


@dataclass
class LabelOptions:
    manifest: str = option(MISSING, "--manifest", "the Parquet manifest to label (local, s3:// or gs://)")
    model: str = option(MISSING, "--model", "model bundle directory (local, s3:// or gs://)")
    out: str = option(MISSING, "--out", "labels dataset directory")
    batch_size: int = option(32, "--batch-size", "images per model call", type=int)
    relabel: bool = option(
        False,
        "--relabel",
        "label every row again (default --resume: skip images already labelled ok by this model_id)",
        negative="--resume",
    )
    retry_errors: bool = option(False, "--retry-errors", "also retry rows that failed permanently", action="store_true")
    model_actors: int | None = option(
        None, "--model-actors", "model actors (default: one per GPU or CPU share)", type=int
    )
    gpus_per_actor: float | None = option(None, "--gpus-per-actor", "default 1 when the cluster has GPUs", type=float)
    cpus_per_actor: float = option(1.0, "--cpus-per-actor", "CPUs reserved per model actor", type=float)
    tf_threads: int | None = option(
        None,
        "--tf-threads",
        "threads per model actor for the model (TF or LiteRT; default: its share of the node's CPUs)",
        type=int,
    )
    decode_cpus: float = 1.0
    decode_memory_mb: int = 512
    rows_per_file: int = option(10_000, "--rows-per-file", "rows per committed Parquet part", type=int)
    rows_per_block: int | None = None
    wait_for_actors_s: int = 900
    address: str | None = option(None, "--address", "Ray address (default: RAY_ADDRESS or a local Ray)")
    allowed_roots: tuple[str, ...] = option(
        (),
        "--allowed-root",
        "refuse URIs resolving outside this root (repeatable; none = no restriction)",
        action="append",
        metavar="PREFIX",
        convert=tuple,
    )
    max_pixels: int | None = option(
        None, "--max-pixels", "refuse larger images as too_large (default 100 MP)", type=int
    )
    max_bytes: int | None = None
    ca_bundle: str | None = option(
        None,
        "--ca-bundle",
        "PEM file of the CAs to trust for https DICOMweb servers (default: the system's; credentials come from "
        "SCANLABEL_DICOMWEB_* variables, never flags: docs/dicomweb.md)",
        metavar="PEM",
    )
    dicomweb_concurrency: int = option(
        4, "--dicomweb-concurrency", "WADO-RS requests in flight per decode task (default 4)", type=int, metavar="N"
    )
    header_map: str | None = option(None, "--header-map", "JSON mapping DICOM BodyPartExamined values onto classes")
    keep_columns: tuple[str, ...] = option(
        (), "--keep-columns", "comma-separated manifest columns to carry into the labels", type=_comma_list
    )
    max_error_rate: float | None = option(
        None, "--max-error-rate", "exit non-zero (after writing) when more than this fraction of rows fail", type=float
    )
    wait_for_lease_s: float = option(
        0.0,
        "--wait-for-lease",
        "when another run holds the labels dataset, wait up to this long for it (then plan against what it "
        "committed) instead of exiting at once with code 5 (default 0: exit)",
        type=float,
        metavar="SECONDS",
    )
    lease_timeout_s: float = option(
        LEASE_TIMEOUT_S,
        "--lease-timeout",
        "this run's lease is stale (taken over by the next run) this long after its last heartbeat; "
        f"heartbeats every timeout/4 (default {LEASE_TIMEOUT_S:.0f})",
        type=float,
        metavar="SECONDS",
    )
    min_confidence: float | None = option(
        None,
        "--min-confidence",
        "abstain (label 'other', abstain_reason low_confidence) below this calibrated confidence "
        "(default: the threshold the bundle fitted on its validation split)",
        type=float,
    )
    max_ood_score: float | None = option(
        None,
        "--max-ood-score",
        "abstain (label 'other', abstain_reason out_of_distribution) above this OOD score "
        "(default: the bundle's fitted threshold)",
        type=float,
    )
    modalities: tuple[str, ...] | None = option(
        None,
        "--modalities",
        "DICOM modalities to label (default: the bundle's, CR,DX,RG for projection radiographs); other "
        "objects are skipped as out_of_scope from their header; '*' labels every modality",
        type=normalize_modalities,
        metavar="CR,DX",
    )
    fail_on_drift: bool = option(
        False,
        "--fail-on-drift",
        "exit 4 (after writing the labels and the run summary) when the run's body-part mix, error rate or "
        "abstention rate drifted from the earlier runs of the same model (see `scanlabel runs`)",
        action="store_true",
    )
    drift_window: int = option(
        7,
        "--drift-window",
        "drift reference: the last N earlier runs of the same model (default 7)",
        type=int,
        metavar="N",
    )
    quarantine_bad_parts: bool = option(
        False,
        "--quarantine-bad-parts",
        "move part files of the labels dataset that are not readable labels parts (truncated, foreign Parquet) "
        "into its _quarantine/ folder, then label again the images left without a row (docs/faults.md)",
        action="store_true",
    )
    engine: str = option(
        "auto",
        "--engine",
        "who runs the model: litert (the bundle's LiteRT export, XNNPACK, CPU only), keras (TensorFlow; what GPU "
        "actors run), auto (default: litert on CPU actors when the bundle has the export, else keras); same "
        "float32 arithmetic, so labels agree (docs/labels.md)",
        choices=("auto", "keras", "litert"),
    )
