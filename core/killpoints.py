"""Named points where a crash test can SIGKILL this process (docs/faults.md, "The driver killed anywhere").

``SCANLABEL_KILL_AT=<point>:<n>`` kills the process with SIGKILL the ``n``-th time it reaches ``<point>`` (``n``
defaults to 1); a comma-separated list kills at whichever comes first.  A real kill at a chosen step, not a
simulated one: the crash schedule of the fault suite uses it to hit windows (between writing a temporary and
renaming it, between two compaction rewrites, while renewing the lease) that a kill after a delay would reach only
by luck.  Unset, as always outside that suite, a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

ENV = "SCANLABEL_KILL_AT"

# Every point the driver of a labeling run passes, in the order a run meets them.
POINTS = (
    "manifest.read",  # the manifest is read and validated
    "lease.acquired",  # the lease generation was created, the heartbeat not yet started
    "store.temporaries",  # before a stale temporary left by a killed run is removed
    "compact.rewrite",  # before a part file holding a superseded row is rewritten
    "compact.delete",  # before a part file left with no row is deleted
    "parts.commit",  # a part file's rows are buffered, not yet written
    "store.tmp_written",  # a local file's temporary is written and fsynced, not yet renamed into place
    "parts.committed",  # a part file was renamed into place
    "lease.renewed",  # a heartbeat created the next lease generation
    "runs.write",  # before the run summary is written under _runs/
    "lease.release",  # before the lease is marked released
    "summary_json.write",  # before --summary-json is written
)

_seen: Counter = Counter()
_lock = threading.Lock()


def reached(point: str) -> None:
    """Mark that this process reached ``point``; SIGKILL it here if ``SCANLABEL_KILL_AT`` names this visit."""
    spec = os.environ.get(ENV)
    if not spec or point not in spec:
        return
    with _lock:
        _seen[point] += 1
        seen = _seen[point]
    for item in spec.split(","):
        name, _, nth = item.strip().partition(":")
        if name == point and seen == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
