"""Shared bits of the thin entry points: quiet TF logs, a uniform `main`, clear errors instead of tracebacks."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_main(
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int | None],
    prog: str,
    description: str,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    return invoke(run, parser.parse_args(argv))


def invoke(run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    from core.errors import BundleError, ManifestError

    try:
        return int(run(args) or 0)
    except (ManifestError, BundleError, FileNotFoundError, ValueError) as e:
        print(f"scanlabel: error: {e}", file=sys.stderr)
        return 2
