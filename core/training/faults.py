"""A worker that dies mid-epoch, on purpose: how the tests prove a Ray Train run survives losing a worker.

Kept out of :class:`~core.training.config.TrainConfig` (what a user asks a run to do): a fault is passed beside
the config, to :func:`core.training.run_training` or ``cluster.train.train``, and never lands in a bundle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerExit:
    """Worker ``rank`` (default: the last) exits (``os._exit``) early in epoch ``epoch`` (1-based), once.

    The ``marker`` file records that it happened, so the restarted worker gets through."""

    epoch: int
    marker: str
    rank: int | None = None
    delay_s: float = 5.0

    def __call__(self, epoch: int, step: int, steps: int, rank: int, world: int, log: Callable[[str], None]) -> None:
        fail_rank = world - 1 if self.rank is None else self.rank
        if not (self.epoch == epoch + 1 and step == min(1, steps - 1) and rank == fail_rank):
            return
        if os.path.exists(self.marker):  # once: the restarted worker must get through
            return
        with open(self.marker, "w") as f:
            f.write(f"rank {rank} exited in epoch {epoch + 1}\n")
        log(f"[train] fault: rank {rank} exits mid-epoch {epoch + 1}")
        # Ray Train V2 collects reports by polling workers (every 2 s by default); a worker that dies sooner takes
        # its unpolled epoch report, and so that checkpoint, with it.  Real epochs are far longer than that, so
        # the fault waits for the poll before it dies.
        time.sleep(self.delay_s)
        os._exit(1)
