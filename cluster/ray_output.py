"""What Ray workers print, and how scanlabel's own log records get from a worker to the driver's console.

Ray streams every worker's stdout/stderr to the driver (``log_to_driver``), which prints it with a ``(pid=…)``
prefix: Ray Train's checkpoint and metric reports, TensorFlow's oneDNN/absl notices, actor warnings.  The driver
instead routes that stream through :func:`install`:

* lines a worker wrote with :func:`forward_worker_logs` (scanlabel's records, progress events included, as one
  marked JSON line each) are re-emitted as log records on the driver, under their own logger name, so the
  entry point's console shows them like any local record;
* every other line goes to the ``scanlabel.ray_workers`` logger at DEBUG (the entry point sends it to its log
  file), or, when the console is verbose, is also printed by Ray's own printer as before.

The hook uses Ray's stdout dispatcher (``ray._private``, stable since Ray 2.0).  If it is missing, nothing
breaks: Ray prints worker output as usual and progress from workers is simply not drawn.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import Any

MARK = "::scanlabel-log::"
_RAY_HANDLER = "ray_print_logs"
_OUR_HANDLER = "scanlabel_worker_output"
_state: dict[str, Any] = {"verbose": True}
_raw = logging.getLogger("scanlabel.ray_workers")


def set_verbose(verbose: bool) -> None:
    """Called by the entry point before Ray starts: quiet consoles keep worker chatter out (default: verbose)."""
    _state["verbose"] = verbose


class _JsonLineHandler(logging.Handler):
    """Worker side: one marked JSON line per record on this process's stdout, which Ray streams to the driver."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = {"name": record.name, "levelno": record.levelno, "msg": record.getMessage()}
            progress = getattr(record, "progress", None)
            if progress is not None:
                data["progress"] = progress
            sys.stdout.write(MARK + json.dumps(data, default=str) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)


def forward_worker_logs(name: str = "scanlabel", level: int = logging.INFO) -> logging.Logger:
    """In a Ray worker: send the ``scanlabel`` loggers' records to the driver (idempotent).

    ``propagate`` is turned off so the root logger Ray Train configures on its workers does not print each
    record a second time as plain text.
    """
    logger = logging.getLogger(name)
    if not any(isinstance(h, _JsonLineHandler) for h in logger.handlers):
        logger.addHandler(_JsonLineHandler())
    logger.setLevel(level)
    logger.propagate = False
    return logger


def _reemit(line: str, data: dict[str, Any]) -> bool:
    if not line.startswith(MARK):
        return False
    try:
        payload = json.loads(line[len(MARK) :])
        name = str(payload["name"])
        record = logging.makeLogRecord(
            {
                "name": name,
                "levelno": int(payload["levelno"]),
                "levelname": logging.getLevelName(int(payload["levelno"])),
                "msg": str(payload["msg"]),
                "worker_pid": data.get("pid"),
            }
        )
        if "progress" in payload:
            record.progress = payload["progress"]
        logging.getLogger(name).handle(record)
    except (ValueError, KeyError, TypeError):
        return False
    return True


def _dispatch(data: dict[str, Any], ray_printer) -> None:
    rest = [line for line in data.get("lines", []) if not _reemit(line, data)]
    if not rest:
        return
    who = data.get("actor_name") or data.get("task_name")
    pid = data.get("pid")
    prefix = f"({who} pid={pid}) " if who else (f"({pid}) " if pid else "")
    for line in rest:
        _raw.debug("%s%s", prefix, line)
    if _state["verbose"] and ray_printer is not None:
        ray_printer({**data, "lines": rest})


def install() -> bool:
    """Driver side, after ``ray.init``: take over the printing of worker output (idempotent, also after a
    re-init, which puts Ray's own printer back)."""
    try:
        from ray._private import worker as ray_worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    if not hasattr(dispatcher, "add_handler") or not hasattr(ray_worker, "print_to_stdstream"):
        return False
    should_ignore = getattr(ray_worker, "_should_ignore_worker_log_prefix", None)
    ignore_prefix = bool(should_ignore(ray_worker.global_worker)) if should_ignore else False
    printer = functools.partial(ray_worker.print_to_stdstream, ignore_prefix=ignore_prefix)
    dispatcher.remove_handler(_RAY_HANDLER)
    dispatcher.remove_handler(_OUR_HANDLER)
    dispatcher.add_handler(_OUR_HANDLER, functools.partial(_dispatch, ray_printer=printer))
    if not _state["verbose"]:
        import ray.data

        # Ray Data's own bars and per-operator dumps: the entry point draws one progress display instead.
        ray.data.DataContext.get_current().enable_progress_bars = False
    return True
