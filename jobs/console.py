"""The terminal of a scanlabel command: scanlabel's own lines and one progress display; everything else to a log.

Library code only logs (``scanlabel.*`` loggers, progress as :class:`core.progress.ProgressEvent` records).  The
entry point owns the terminal:

* every record goes to a log file (``$SCANLABEL_LOG_DIR`` or ``~/.cache/scanlabel/logs``, named in the first
  line the command prints);
* ``scanlabel.*`` records at INFO and above reach the console; progress events become a live bar (rich) when
  stdout is a terminal, or a plain line every ``SCANLABEL_PROGRESS_EVERY_S`` seconds (default 30) otherwise;
* without ``--verbose``, file descriptor 2 of the process is pointed at the log file, so what C++ libraries
  write straight to stderr (TensorFlow's oneDNN and absl notices, Ray's core-worker warnings) and what Python
  libraries log to stderr (Ray, Ray Data's execution plans and progress) land there; Ray worker output is
  routed by :mod:`cluster.ray_output`.  An error record from another library reaches the console once, in one
  line that points at the log.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO

from core.progress import ProgressEvent, event_of

log = logging.getLogger("scanlabel.cli")
WORKER_OUTPUT_LOGGER = "scanlabel.ray_workers"


def log_dir() -> str:
    if os.environ.get("SCANLABEL_LOG_DIR"):
        return os.environ["SCANLABEL_LOG_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "scanlabel", "logs")


def _open_log_path(command: str) -> str:
    name = f"{command}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{os.getpid()}.log"
    for folder in (log_dir(), os.path.join("/tmp", "scanlabel-logs")):
        try:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, name)
            with open(path, "a"):
                pass
            return path
        except OSError:
            continue
    raise OSError("no writable folder for the log file: set SCANLABEL_LOG_DIR")


class _StderrRouter:
    """``sys.stderr`` while the console is quiet: every line goes to the log; lines that start with "scanlabel"
    (the commands' own error messages, printed to stderr) also reach the terminal.

    Python libraries that log to ``sys.stderr`` (Ray's handlers resolve it when they emit) thus land in the log
    without any of them being configured one by one.
    """

    def __init__(self, log_stream: IO[str], terminal: IO[str]) -> None:
        self.log_stream, self.terminal = log_stream, terminal
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            while "\n" in self._pending:
                line, self._pending = self._pending.split("\n", 1)
                self._route(line + "\n")
            if len(self._pending) > 65536:
                self._route(self._pending)
                self._pending = ""
        return len(text)

    def _route(self, line: str) -> None:
        self.log_stream.write(line)
        if line.startswith("scanlabel"):
            self.terminal.write(line)
            self.terminal.flush()

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.log_stream.write(self._pending)
                self._pending = ""
        self.log_stream.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        """Handlers that captured this stream close it at exit (absl does): keep the real streams open."""
        self.flush()

    def fileno(self) -> int:
        return self.log_stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.log_stream, "encoding", "utf-8")


class PlainRenderer:
    """Non-terminal output (CI, Ray job logs, pipes): a progress line on start, every ``every_s`` and at the end."""

    def __init__(self, stream: IO[str], every_s: float) -> None:
        self.stream, self.every_s = stream, every_s
        self._last: dict[str, float] = {}

    def progress(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        last = self._last.get(event.phase)
        if event.final and last == -1.0:
            return  # a repeated final update: already printed
        if event.final or last is None or now - last >= self.every_s:
            self._last[event.phase] = -1.0 if event.final else now
            self.line(event.text())

    def line(self, text: str, stream: IO[str] | None = None) -> None:
        target = stream or self.stream
        target.write(text + "\n")
        target.flush()

    def close(self) -> None:
        pass


class RichRenderer:
    """A terminal: one live bar per phase (rich, a Ray dependency); other lines print above it."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console as RichConsole

        self.stream = stream
        self.console = RichConsole(file=stream, highlight=False, markup=False, emoji=False, soft_wrap=True)
        self._bar = None
        self._task = None
        self._phase: str | None = None
        self._done_phase: str | None = None

    def _start(self, event: ProgressEvent) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[details]}"),
            console=self.console,
            redirect_stdout=True,
            redirect_stderr=False,  # stderr is the log file: never draw it on the terminal
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(f"[{event.phase}]", total=event.total or None, unit=event.unit, details="")
        self._phase = event.phase

    def progress(self, event: ProgressEvent) -> None:
        if event.final and self._bar is None and self._done_phase == event.phase:
            return  # a repeated final update: the bar already ended
        self._done_phase = event.phase if event.final else None
        if self._bar is None or self._phase != event.phase:
            self._stop()
            self._start(event)
        self._bar.update(self._task, completed=event.done, total=event.total or None, details=event.details())
        if event.final:
            self._stop()

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar = self._task = self._phase = None

    def line(self, text: str, stream: IO[str] | None = None) -> None:
        if stream is not None and stream is not self.stream:
            stream.write(text + "\n")
            stream.flush()
        else:
            self.console.print(text)

    def close(self) -> None:
        self._stop()


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console
        self._seen_foreign: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name
            ours = (name == "scanlabel" or name.startswith("scanlabel.")) and name != WORKER_OUTPUT_LOGGER
            if ours:
                event = event_of(record)
                if event is not None:
                    self.console.renderer.progress(event)
                    return
                text = record.getMessage()
                if record.levelno >= logging.WARNING:
                    if not text.startswith("scanlabel"):
                        text = f"scanlabel: {'warning' if record.levelno == logging.WARNING else 'error'}: {text}"
                    self.console.renderer.line(text, self.console.err)
                else:
                    self.console.renderer.line(text)
            elif record.levelno >= logging.ERROR and not self.console.verbose:
                # Another library's error: once, in one line, pointing at the details.
                first = record.getMessage().strip().splitlines()[0][:200] if record.getMessage().strip() else ""
                if first and first not in self._seen_foreign:
                    self._seen_foreign.add(first)
                    self.console.renderer.line(
                        f"scanlabel: {name} reported an error: {first} (details in {self.console.log_path})",
                        self.console.err,
                    )
        except Exception:  # noqa: BLE001 - a display problem must never fail the job
            self.handleError(record)


class _FileProgressThrottle(logging.Filter):
    """The log file keeps a progress line every ``every_s`` seconds per phase (and the last), not every update."""

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        event = event_of(record)
        if event is None:
            return True
        now = time.monotonic()
        if event.final or now - self._last.get(event.phase, -1e9) >= self.every_s:
            self._last[event.phase] = now
            return True
        return False


class Console:
    """Set up (``start``) and tear down (``close``) the terminal and log file of one command."""

    def __init__(
        self, command: str, verbose: bool = False, out: IO[str] | None = None, err: IO[str] | None = None
    ) -> None:
        self.command, self.verbose = command, verbose
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.log_path = ""
        self.renderer: PlainRenderer | RichRenderer | None = None
        self._handlers: list[logging.Handler] = []
        self._saved_fd2: int | None = None
        self._saved_stderr: IO[str] | None = None
        self._saved_levels: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self) -> Console:
        self.log_path = _open_log_path(self.command)
        every = float(os.environ.get("SCANLABEL_PROGRESS_EVERY_S", "30"))
        if not self.verbose and self.err is sys.__stderr__ and _has_fd(self.err):
            # Keep the terminal's stderr for scanlabel's own errors; everything else written to fd 2 goes to the log.
            self.err.flush()
            self._saved_fd2 = os.dup(2)
            self.err = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(fd, 2)
            os.close(fd)
            self._saved_stderr = sys.stderr
            sys.stderr = _StderrRouter(self._saved_stderr, self.err)
            # Ray Data draws its own bars on a terminal; scanlabel draws one for the whole job instead.
            os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        tty = _isatty(self.out)
        self.renderer = RichRenderer(self.out) if tty else PlainRenderer(self.out, every)

        file_handler = logging.FileHandler(self.log_path, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        file_handler.addFilter(_FileProgressThrottle(every))
        console_handler = _ConsoleHandler(self)
        root = logging.getLogger()
        for handler in (file_handler, console_handler):
            root.addHandler(handler)
            self._handlers.append(handler)
        # Libraries log at INFO and above into the file; scanlabel's own DEBUG lines (worker output) too.
        for name, level in (("", logging.INFO), ("scanlabel", logging.DEBUG)):
            self._saved_levels[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(level)
        logging.captureWarnings(True)
        from cluster import ray_output  # no Ray import: only records the console mode for ensure_ray

        ray_output.set_verbose(self.verbose)
        note = "" if self.verbose else " (Ray, TensorFlow and worker output go there; --verbose shows them here)"
        self.renderer.line(f"scanlabel {self.command}: log file {self.log_path}{note}")
        return self

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        root = logging.getLogger()
        for handler in self._handlers:
            root.removeHandler(handler)
            handler.close()
        self._handlers.clear()
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        logging.captureWarnings(False)
        if self._saved_fd2 is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            if self._saved_stderr is not None:
                sys.stderr = self._saved_stderr
                self._saved_stderr = None
            os.dup2(self._saved_fd2, 2)
            os.close(self._saved_fd2)
            self._saved_fd2 = None
            try:
                self.err.close()
            except OSError:
                pass
            self.err = sys.stderr

    def error(self, text: str) -> None:
        """A failure the user must see: on stderr, and in the log."""
        log.debug("exit message: %s", text)
        if self.renderer is not None:
            self.renderer.line(text, self.err)
        else:
            print(text, file=self.err)


def _has_fd(stream: IO[str]) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
