"""`python -m jobs.bench NAME`: benchmarks that print figures and ratios (not timed tests); NAME: see --help.

The benchmarks live in the top-level ``benchmarks/`` folder of a source checkout (not installed with the package);
each module there registers its own sub-commands, listed in :data:`benchmarks.MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jobs.common import run_main


def _benchmarks():
    """The ``benchmarks`` package of the checkout this ``jobs`` package sits in (also for the console script)."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(os.path.join(checkout, "benchmarks")) and checkout not in sys.path:
        sys.path.insert(0, checkout)
    try:
        return importlib.import_module("benchmarks")
    except ModuleNotFoundError as e:
        raise SystemExit("scanlabel bench: the benchmarks ship with the source checkout, not the package") from e


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", required=True)
    for name in _benchmarks().MODULES:
        importlib.import_module(name).register(sub)


def run(args: argparse.Namespace) -> int:
    return args.bench_run(args)


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel bench", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
