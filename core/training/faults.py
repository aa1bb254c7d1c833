"""A worker that dies mid-epoch, on purpose: how the tests prove a Ray Train run survives losing a worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from core.training.config import TrainConfig


def test_hook_worker_exit(
    cfg: TrainConfig, epoch: int, step: int, steps: int, rank: int, world: int, log: Callable[[str], None]
) -> None:
    """``cfg.extra`` test hook: worker ``fail_rank`` exits mid-epoch ``fail_at_epoch``, once (see TrainConfig)."""
    fail_at = cfg.extra.get("fail_at_epoch")
    fail_marker = cfg.extra.get("fail_marker")
    fail_rank = int(cfg.extra.get("fail_rank", world - 1))
    if not (fail_at == epoch + 1 and step == min(1, steps - 1) and rank == fail_rank and fail_marker):
        return
    if os.path.exists(fail_marker):  # once: the restarted worker must get through
        return
    with open(fail_marker, "w") as f:
        f.write(f"rank {rank} exited in epoch {epoch + 1}\n")
    log(f"[train] test hook: rank {rank} exits mid-epoch {epoch + 1}")
    # Ray Train V2 collects reports by polling workers (every 2 s by default); a worker that dies sooner takes
    # its unpolled epoch report, and so that checkpoint, with it.  Real epochs are far longer than that, so the
    # hook waits for the poll before it dies.
    time.sleep(float(cfg.extra.get("fail_delay_s", 5.0)))
    os._exit(1)
