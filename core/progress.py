"""Progress of a long phase (training steps, labeled rows) as log records an entry point can draw.

Library code never writes to the terminal: it logs a :class:`ProgressEvent` on its ``scanlabel.*`` logger (the
event rides on the record as ``record.progress``), and the entry point decides whether that becomes a live bar, a
plain line every so often, or nothing.  A record's message is a complete plain-text rendering, so a program that
only configures :mod:`logging` still sees readable progress.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ProgressEvent:
    phase: str  # "train" | "label"
    done: int
    total: int
    unit: str  # "steps" | "rows"
    rate: float | None = None  # units per second so far
    eta_s: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # shown after the counts, in order
    final: bool = False
    rate_label: str = ""  # how the rate is shown, e.g. "images/s"
    rate_scale: float = 1.0  # units of the shown rate per counted unit (images per training step)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressEvent:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def details(self) -> str:
        parts = []
        if self.rate:
            parts.append(f"{self.rate * self.rate_scale:.1f} {self.rate_label or self.unit + '/s'}")
        parts += [f"{k} {_fmt(v)}" for k, v in self.fields.items() if v is not None]
        if self.eta_s is not None and not self.final:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        return " · ".join(parts)

    def text(self) -> str:
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        details = self.details()
        return f"[{self.phase}] {self.done}/{self.total} {self.unit}{pct}" + (f" · {details}" if details else "")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class ProgressTracker:
    """Turns "done so far" into rate and ETA and logs at most one event per ``every_s`` (plus the last one).

    The rate is measured from the first update, not from construction: start-up (actor pools, model loading) is
    not throughput, and counting it would make the first ETA estimates far too long.
    """

    def __init__(
        self,
        logger: logging.Logger,
        phase: str,
        total: int,
        unit: str,
        every_s: float = 1.0,
        rate_label: str = "",
        rate_scale: float = 1.0,
    ) -> None:
        self.logger = logger
        self.phase, self.total, self.unit, self.every_s = phase, total, unit, every_s
        self.rate_label, self.rate_scale = rate_label, rate_scale
        self._t0: float | None = None
        self._done0 = 0
        self._created = time.perf_counter()
        self._last = 0.0

    def update(self, done: int, final: bool = False, **fields: Any) -> ProgressEvent | None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._done0 = now, done
        final = final or (self.total > 0 and done >= self.total)
        if not final and now - self._last < self.every_s:
            return None
        self._last = now
        elapsed = now - self._t0
        moved = done - self._done0
        rate = moved / elapsed if elapsed > 0 and moved > 0 else None
        if rate is None and final and done > 0:  # all in one update: the rate since the tracker started
            rate = done / max(now - self._created, 1e-9)
        eta = (self.total - done) / rate if rate else None
        event = ProgressEvent(
            self.phase, done, self.total, self.unit, rate, eta, dict(fields), final, self.rate_label, self.rate_scale
        )
        self.logger.info(event.text(), extra={"progress": event.to_dict()})
        return event


def event_of(record: logging.LogRecord) -> ProgressEvent | None:
    """The progress event a log record carries, if any."""
    data = getattr(record, "progress", None)
    if isinstance(data, ProgressEvent):
        return data
    if isinstance(data, dict):
        return ProgressEvent.from_dict(data)
    return None
