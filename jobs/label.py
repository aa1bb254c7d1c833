"""`scanlabel label`: label every image of a manifest with a model bundle, on Ray Data, into Parquet."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def _modalities(text: str) -> tuple[str, ...]:
    from core.scope import normalize_modalities

    try:
        return normalize_modalities(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True)
    p.add_argument("--model", required=True, help="model bundle directory (local, s3:// or gs://)")
    p.add_argument("--out", required=True, help="labels dataset directory")
    p.add_argument("--batch-size", type=int, default=32)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        dest="relabel",
        action="store_false",
        default=False,
        help="skip images already labelled ok by this model_id (default)",
    )
    mode.add_argument("--relabel", dest="relabel", action="store_true", help="label every row again")
    p.add_argument("--retry-errors", action="store_true", help="also retry rows that failed permanently")
    p.add_argument("--model-actors", type=int, default=None)
    p.add_argument("--gpus-per-actor", type=float, default=None, help="default 1 when the cluster has GPUs")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument(
        "--tf-threads",
        type=int,
        default=None,
        help="threads per model actor for the model (TF or LiteRT; default: its share of the node's CPUs)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "keras", "litert"),
        default="auto",
        help="who runs the model: litert (the bundle's LiteRT export, XNNPACK, CPU only), keras (TensorFlow; "
        "what GPU actors run), auto (default: litert on CPU actors when the bundle has the export, else keras). "
        "Same float32 arithmetic: labels agree (BENCHMARKS.md, issue 9)",
    )
    p.add_argument("--rows-per-file", type=int, default=10_000)
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument(
        "--allowed-root",
        action="append",
        default=[],
        metavar="PREFIX",
        help="refuse URIs resolving outside this root (repeatable; none = no restriction)",
    )
    p.add_argument("--max-pixels", type=int, default=None, help="refuse larger images as too_large (default 100 MP)")
    p.add_argument("--header-map", default=None, help="JSON mapping DICOM BodyPartExamined values onto classes")
    p.add_argument(
        "--modalities",
        type=_modalities,
        default=None,
        metavar="CR,DX",
        help="DICOM modalities to label (default: the bundle's, CR,DX,RG for projection radiographs); other "
        "objects are skipped as out_of_scope from their header; '*' labels every modality",
    )
    p.add_argument("--keep-columns", default="", help="comma-separated manifest columns to carry into the labels")
    p.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="abstain (label 'other', abstain_reason low_confidence) below this calibrated confidence "
        "(default: the threshold the bundle fitted on its validation split)",
    )
    p.add_argument(
        "--max-ood-score",
        type=float,
        default=None,
        help="abstain (label 'other', abstain_reason out_of_distribution) above this OOD score "
        "(default: the bundle's fitted threshold)",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=None,
        help="exit non-zero (after writing) when more than this fraction of rows fail",
    )
    p.add_argument(
        "--fail-on-drift",
        action="store_true",
        help="exit 4 (after writing the labels and the run summary) when the run's body-part mix, error rate or "
        "abstention rate drifted from the earlier runs of the same model (see `scanlabel runs`)",
    )
    p.add_argument(
        "--drift-window",
        type=int,
        default=7,
        metavar="N",
        help="drift reference: the last N earlier runs of the same model (default 7)",
    )
    p.add_argument(
        "--summary-json",
        default=None,
        metavar="FILE",
        help="also write this run's summary, with its exit_code and outcome, here (local, s3:// or gs://; "
        "atomic) for a scheduler to pick up; written whatever the outcome",
    )
    add_lease_arguments(p)


def add_lease_arguments(p: argparse.ArgumentParser) -> None:
    """One run at a time per labels dataset (core/lease.py); a second run exits 5 unless told to wait."""
    from core.lease import DEFAULT_TIMEOUT_S

    p.add_argument(
        "--wait-for-lease",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when another run holds the labels dataset, wait up to this long for it (then plan against what it "
        "committed) instead of exiting at once with code 5 (default 0: exit)",
    )
    p.add_argument(
        "--lease-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="this run's lease is stale (taken over by the next run) this long after its last heartbeat; "
        f"heartbeats every timeout/4 (default {DEFAULT_TIMEOUT_S:.0f})",
    )


def options_from_args(args: argparse.Namespace):
    from cluster.label import LabelOptions

    return LabelOptions(
        manifest=args.manifest,
        model=args.model,
        out=args.out,
        batch_size=args.batch_size,
        relabel=args.relabel,
        retry_errors=args.retry_errors,
        model_actors=args.model_actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        rows_per_file=args.rows_per_file,
        tf_threads=args.tf_threads,
        address=args.address,
        allowed_roots=tuple(args.allowed_root),
        max_pixels=args.max_pixels,
        header_map=args.header_map,
        keep_columns=tuple(c.strip() for c in args.keep_columns.split(",") if c.strip()),
        max_error_rate=args.max_error_rate,
        wait_for_lease_s=args.wait_for_lease,
        lease_timeout_s=args.lease_timeout,
        min_confidence=args.min_confidence,
        max_ood_score=args.max_ood_score,
        modalities=args.modalities,
        fail_on_drift=args.fail_on_drift,
        drift_window=args.drift_window,
        engine=args.engine,
    )


def run(args: argparse.Namespace) -> int:
    from cluster.label import DriftDetected, ErrorRateExceeded, run_label
    from core.lease import EXIT_CODE as LEASE_EXIT_CODE
    from core.lease import LeaseHeld, LeaseLost
    from jobs.common import EXIT_TERMINATED, Terminated

    try:
        summary = run_label(options_from_args(args))
    except (ErrorRateExceeded, DriftDetected) as e:
        print(f"scanlabel: error: {e}", file=sys.stderr)
        write_summary_json(args, e.summary, e.exit_code, str(e))
        return e.exit_code
    except (LeaseHeld, LeaseLost) as e:
        print(f"scanlabel: error: {e}", file=sys.stderr)
        write_summary_json(args, None, LEASE_EXIT_CODE, str(e))
        return LEASE_EXIT_CODE
    except Terminated:
        write_summary_json(args, None, EXIT_TERMINATED, "terminated by SIGTERM; committed labels are kept")
        raise
    except Exception as e:
        from jobs.common import EXIT_FAILURE, exit_code_for

        write_summary_json(args, None, exit_code_for(e) or EXIT_FAILURE, f"{type(e).__name__}: {e}")
        raise
    write_summary_json(args, summary, 0, None)
    return 0


OUTCOMES = {0: "ok", 1: "failed", 2: "refused", 3: "error_rate_exceeded", 4: "drift", 5: "leased", 143: "terminated"}


def write_summary_json(args: argparse.Namespace, summary, exit_code: int, message: str | None) -> None:
    """The run's result where a scheduler looks for it: whatever happened, the file says (exit_code, outcome)."""
    if not args.summary_json:
        return
    import json
    import time
    from dataclasses import asdict

    from core import storage

    data = {
        "exit_code": exit_code,
        "outcome": OUTCOMES.get(exit_code, "failed"),
        "message": message,
        "labels": args.out,
        "manifest": args.manifest,
        "written_at": time.time(),
        "summary": asdict(summary) if summary is not None else None,
    }
    storage.write_bytes_atomic(args.summary_json, json.dumps(data, indent=2, default=str).encode())


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel label", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
