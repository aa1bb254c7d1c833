"""`scanlabel runs`: the run history of a labels dataset, one row a run, with drift flags (and plots with --out).

scanlabel runs --labels DIR|URI [--out REPORT_DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys

from jobs.common import run_main

log = logging.getLogger("scanlabel.runs")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", required=True, help="labels dataset written by `scanlabel label` (local, s3:// or gs://)")
    p.add_argument("--out", default=None, help="also write runs.html and its plots (PNG) into this local folder")
    p.add_argument("--model-id", default=None, help="only the runs of this model")
    p.add_argument("--last", type=int, default=None, help="only the last N runs")


def run(args: argparse.Namespace) -> int:
    from core.labeling.run_history import format_table, load_runs, write_report

    runs = load_runs(args.labels)
    if args.model_id:
        runs = [r for r in runs if r.get("model_id") == args.model_id]
    if args.last:
        runs = runs[-args.last :]
    if not runs:
        log.info("[runs] no run summaries under %s/_runs", args.labels)
    else:
        log.info(format_table(runs))
        flagged = [r for r in runs if (r.get("drift") or {}).get("flagged")]
        log.info(f"[runs] {len(runs)} run(s), {len(flagged)} flagged for drift")
    if args.out:
        page = write_report(args.labels, runs, args.out)
        log.info(f"[runs] report: {page}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel runs", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
