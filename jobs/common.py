"""Shared bits of the thin entry points: the console (see jobs/console.py), a uniform `main`, exit codes.

Every command exits with one of the codes in :data:`EXIT_CODES_HELP` (also the epilog of every ``--help``), so a
scheduler can act on the outcome without parsing output.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected: a bug, a lost cluster; the log file has the traceback
EXIT_USAGE = 2  # bad flags, manifest, bundle or option value: fix the input, rerunning as is fails the same way
EXIT_ERROR_RATE = 3  # --max-error-rate exceeded; everything that succeeded is written
EXIT_DRIFT = 4  # --fail-on-drift and this run drifted from its reference; everything is written
EXIT_LEASED = 5  # another run holds the labels dataset's lease
EXIT_STORE_UNAVAILABLE = 6  # the object store kept failing after every retry; what was committed is whole
EXIT_TERMINATED = 128 + signal.SIGTERM  # stopped by SIGTERM: what was committed is kept, the lease released

EXIT_CODES_HELP = """exit codes:
  0  ok
  1  unexpected failure (the log file named in the first line has the traceback)
  2  usage error, bad manifest, bad model bundle or bad option value (nothing was done)
  3  more rows failed than --max-error-rate allows (the labels that succeeded are written)
  4  drift from the reference runs with --fail-on-drift (the labels and run summary are written)
  5  the labels dataset is leased by another run (nothing was done)
  6  the object store kept failing (throttling, 5xx, resets) after every retry: what was committed is whole;
     run again once it is back
  143  stopped by SIGTERM (`ray job stop`, a scheduler): committed labels are kept, the lease is released"""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``with`` and ``finally`` on the way out runs.

    A labeling run takes its dataset's lease, then compacts and plans before it joins Ray.  SIGTERM there (``ray
    job stop``, a scheduler) used to kill it on the spot, Python's default: the lease stayed held until stale and
    a rerun started at once exited 5.  Once joined, ray.init's own handler exited with an undocumented 15.  A
    BaseException (like KeyboardInterrupt), so that library code catching Exception cannot swallow it.
    """


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Flags every command takes, and the exit codes in its ``--help``."""
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show Ray's, TensorFlow's and the workers' own output on the console (always in the log file)",
    )
    p.epilog = EXIT_CODES_HELP
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def run_main(
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int | None],
    prog: str,
    description: str,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return invoke(run, args, prog.split()[-1])


def exit_code_for(error: BaseException) -> int | None:
    """The documented exit code of an expected failure, or None for an unexpected one.

    An exception may carry its own ``exit_code`` attribute (e.g. the lease error: 5).
    """
    from core.errors import BundleError, ManifestError
    from core.io.storage import is_unavailable

    code = getattr(error, "exit_code", None)
    if isinstance(code, int):
        return code
    if is_unavailable(error):  # before the usage errors: a store that is down is not a bad input
        return EXIT_STORE_UNAVAILABLE
    if isinstance(error, (ManifestError, BundleError, FileNotFoundError, ValueError)):
        return EXIT_USAGE
    return None


def invoke(
    run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, command: str | None = None
) -> int:
    import logging

    from jobs.console import Console

    command = command or getattr(args, "command", None) or run.__module__.rsplit(".", 1)[-1]
    console = Console(command, verbose=bool(getattr(args, "verbose", False))).start()
    log = logging.getLogger("scanlabel.cli")
    # SIGTERM unwinds as Terminated; cluster.runtime.ensure_ray keeps this handler across ray.init.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        return int(run(args) or 0)
    except Terminated:
        console.error("scanlabel: terminated (SIGTERM): what it had committed is kept")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        console.error("scanlabel: interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - the entry point turns every failure into a message and an exit code
        code = exit_code_for(e)
        if code is None:
            log.debug("unexpected failure", exc_info=True)
            console.error(
                f"scanlabel: unexpected failure: {type(e).__name__}: {e} (traceback in {console.log_path})"
            )
            return EXIT_FAILURE
        log.debug("failure (exit %d)", code, exc_info=True)
        console.error(f"scanlabel: error: {e}")
        return code
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        console.close()


if __name__ == "__main__":  # pragma: no cover - `python -m jobs.common` is not a command
    sys.exit(EXIT_USAGE)


def _typed(convert):
    """argparse reports a ValueError from ``type`` as a bare "invalid value": keep the option's own message."""

    def parse(text: str):
        try:
            return convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def add_option_arguments(p: argparse.ArgumentParser, cls: type) -> None:
    """A flag for every field of ``cls`` declared with :func:`core.options.option`."""
    from core.options import cli_fields

    for name, default, cli in cli_fields(cls):
        flag, negative = cli.pop("flag"), cli.pop("negative", None)
        cli.pop("convert", None)
        if "type" in cli:
            cli["type"] = _typed(cli["type"])
        if negative is not None:  # a pair of flags, e.g. --resume (the default) / --relabel
            group = p.add_mutually_exclusive_group()
            group.add_argument(negative, dest=name, action="store_false", default=default, help="the default")
            group.add_argument(flag, dest=name, action="store_true", help=cli["help"])
            continue
        if not cli.get("required"):
            cli["default"] = list(default) if cli.get("action") == "append" else default
        p.add_argument(flag, dest=name, **cli)


def options_from_args(cls: type, args: argparse.Namespace):
    """The ``cls`` instance the parsed flags declare (the same declarations built the parser)."""
    from core.options import cli_fields

    values = {}
    for name, _, cli in cli_fields(cls):
        value = getattr(args, name)
        values[name] = cli["convert"](value) if "convert" in cli else value
    return cls(**values)
