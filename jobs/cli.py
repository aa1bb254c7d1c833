"""The `scanlabel` console script: one subcommand per job module, identical to `python -m jobs.<name>`."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("sample", "train", "label", "evaluate", "review", "audit", "demo", "manifest", "bench", "runs")


def main(argv: list[str] | None = None) -> int:
    from jobs.common import EXIT_CODES_HELP, add_common_arguments, invoke

    parser = argparse.ArgumentParser(
        prog="scanlabel",
        description="Label medical-scan archives by body part.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"jobs.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"jobs.{name}":
                continue
            raise
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0], description=module.__doc__)
        module.add_arguments(p)
        add_common_arguments(p)
        runners[name] = module.run
    args = parser.parse_args(argv)
    return invoke(runners[args.command], args, args.command)


if __name__ == "__main__":
    sys.exit(main())
