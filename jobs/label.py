"""`scanlabel label`: label every image of a manifest with a model bundle, on Ray Data, into Parquet."""

from __future__ import annotations

import argparse
import sys

from jobs.common import add_option_arguments, options_from_args, run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every option :class:`core.labeling.options.LabelOptions` declares for the CLI, plus the job's own."""
    from core.labeling.options import LabelOptions

    add_option_arguments(p, LabelOptions)
    p.add_argument(
        "--summary-json",
        default=None,
        metavar="FILE",
        help="also write this run's summary, with its exit_code and outcome, here (local, s3:// or gs://; "
        "atomic) for a scheduler to pick up; written whatever the outcome",
    )


def label_options(args: argparse.Namespace):
    """The :class:`LabelOptions` the parsed flags declare."""
    from core.labeling.options import LabelOptions

    return options_from_args(LabelOptions, args)


def run(args: argparse.Namespace) -> int:
    from cluster.label import DriftDetected, ErrorRateExceeded, run_label
    from core.labeling.lease import EXIT_CODE as LEASE_EXIT_CODE
    from core.labeling.lease import LeaseHeld, LeaseLost
    from jobs.common import EXIT_TERMINATED, Terminated

    try:
        summary = run_label(label_options(args))
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


OUTCOMES = {
    0: "ok",
    1: "failed",
    2: "refused",
    3: "error_rate_exceeded",
    4: "drift",
    5: "leased",
    6: "store_unavailable",
    143: "terminated",
}


def write_summary_json(args: argparse.Namespace, summary, exit_code: int, message: str | None) -> None:
    """The run's result where a scheduler looks for it: whatever happened, the file says (exit_code, outcome)."""
    if not args.summary_json:
        return
    import json
    import time
    from dataclasses import asdict

    from core import killpoints
    from core.io import storage

    data = {
        "exit_code": exit_code,
        "outcome": OUTCOMES.get(exit_code, "failed"),
        "message": message,
        "labels": args.out,
        "manifest": args.manifest,
        "written_at": time.time(),
        "summary": asdict(summary) if summary is not None else None,
    }
    killpoints.reached("summary_json.write")
    storage.write_bytes_atomic(args.summary_json, json.dumps(data, indent=2, default=str).encode())


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel label", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
