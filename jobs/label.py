"""`scanlabel label`: label every image of a manifest with a model bundle, on Ray Data, into Parquet."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def _typed(convert):
    """argparse reports a ValueError from ``type`` as a bare "invalid value": keep the option's own message."""

    def parse(text: str):
        try:
            return convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of :class:`core.labeling.options.LabelOptions` that has a CLI declaration, plus the job's own."""
    from core.labeling.options import LabelOptions, cli_fields

    defaults = LabelOptions.__dataclass_fields__
    for name, cli in cli_fields():
        flag, negative = cli.pop("flag"), cli.pop("negative", None)
        cli.pop("convert", None)
        if "type" in cli:
            cli["type"] = _typed(cli["type"])
        default = defaults[name].default
        if negative is not None:  # a pair of flags: --resume (the default) / --relabel
            group = p.add_mutually_exclusive_group()
            group.add_argument(negative, dest=name, action="store_false", default=default, help="the default")
            group.add_argument(flag, dest=name, action="store_true", help=cli["help"])
            continue
        if not cli.get("required"):
            cli["default"] = list(default) if cli.get("action") == "append" else default
        p.add_argument(flag, dest=name, **cli)
    p.add_argument(
        "--summary-json",
        default=None,
        metavar="FILE",
        help="also write this run's summary, with its exit_code and outcome, here (local, s3:// or gs://; "
        "atomic) for a scheduler to pick up; written whatever the outcome",
    )


def options_from_args(args: argparse.Namespace):
    """The :class:`LabelOptions` the parsed flags declare (the same declarations built the parser)."""
    from core.labeling.options import LabelOptions, cli_fields

    values = {}
    for name, cli in cli_fields():
        value = getattr(args, name)
        values[name] = cli["convert"](value) if "convert" in cli else value
    return LabelOptions(**values)


def run(args: argparse.Namespace) -> int:
    from cluster.label import DriftDetected, ErrorRateExceeded, run_label
    from core.labeling.lease import EXIT_CODE as LEASE_EXIT_CODE
    from core.labeling.lease import LeaseHeld, LeaseLost
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
