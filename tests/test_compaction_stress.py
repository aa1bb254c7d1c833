"""Compaction against concurrent writers and compactors: never drop the newest row of a key, end duplicate-free.

Real part files on a local folder, real threads doing real file I/O (they interleave at every read, rename
and delete).  The expected winner of every key is computed from what the writers actually wrote.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading

import pyarrow as pa
import pyarrow.parquet as pq

from core.io import schema
from core.labeling import store as labels_store

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def _rows(keys: list[tuple[str, str]], at: list[dt.datetime], label: str = "chest") -> pa.Table:
    return schema.labels_table(
        [
            {
                "image_id": i,
                "uri": f"/archive/{i}.png",
                "label": label,
                "status": "ok",
                "model_id": m,
                "labeled_at": t,
            }
            for (i, m), t in zip(keys, at, strict=True)
        ]
    )


def _write(out: str, table: pa.Table) -> str:
    w = labels_store.PartWriter(out)
    w.add(table)
    w.flush()
    return w.files[0]


def _us(t: dt.datetime) -> int:
    return int((t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds() * 1_000_000)


def _final(out: str) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """Every surviving row as (labeled_at µs, part file) per key."""
    found: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for name in sorted(os.listdir(out)):
        if not name.endswith(".parquet") or name.startswith((".", "_")):
            continue
        t = pq.read_table(os.path.join(out, name))
        for i, m, at in zip(
            t.column("image_id").to_pylist(),
            t.column("model_id").to_pylist(),
            t.column("labeled_at").cast(pa.int64()).to_pylist(),
            strict=True,
        ):
            found.setdefault((i, m), []).append((at, name))
    return found


def test_a_stale_plan_applied_after_another_compaction_drops_nothing_it_should_not(tmp_path):
    """The issue's interleaving: compactor X plans, compactor Y rewrites the same file, then X applies.

    Position-based compaction dropped whatever row had slid into the planned position (here the only row of
    image d); identity-based compaction re-reads the file and finds its loser already gone.
    """
    out = str(tmp_path / "labels")
    old, new = T0, T0 + dt.timedelta(hours=1)
    keys = [("c", "m"), ("a", "m"), ("b", "m"), ("d", "m")]
    _write(out, _rows(keys, [old] * 4))
    _write(out, _rows([("a", "m")], [new]))
    plan_x = labels_store.plan_compaction(out)  # loser: a@old in the first file
    _write(out, _rows([("c", "m")], [new]))  # a later run relabels c ...
    assert labels_store.compact(out) == 2  # ... and compactor Y rewrites the first file to [b, d]
    assert labels_store.apply_compaction(out, plan_x) == 0
    final = _final(out)
    assert sorted(final) == [("a", "m"), ("b", "m"), ("c", "m"), ("d", "m")]
    assert all(len(v) == 1 for v in final.values())
    assert final[("a", "m")][0][0] == _us(new) and final[("c", "m")][0][0] == _us(new)


def test_ties_are_decided_by_content_and_identical_rows_keep_one(tmp_path):
    out = str(tmp_path / "labels")
    same = [T0, T0]
    _write(out, _rows([("x", "m"), ("x", "m")], same, label="head"))  # identical rows in one file
    f2 = _write(out, _rows([("y", "m")], [T0], label="head"))
    f3 = _write(out, pa.concat_tables([_rows([("y", "m")], [T0], label="arm"), _rows([("y", "m")], [T0], "leg")]))
    assert labels_store.compact(out) == 3
    final = _final(out)
    assert [len(v) for v in final.values()] == [1, 1]
    assert final[("y", "m")][0][1] == max(f2, f3)  # same time: the greater part file name wins, then content
    assert labels_store.compact(out) == 0


def test_interleaved_writers_and_compactors_never_lose_a_key(tmp_path):
    out = str(tmp_path / "labels")
    rng = random.Random(12)
    images = [f"img-{i:03d}" for i in range(40)]
    keys = [(i, m) for i in images for m in ("m1", "m2")]
    written: dict[tuple[str, str], list[tuple[int, str]]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []
    writers_done = threading.Event()

    def record(table: pa.Table, name: str) -> None:
        with lock:
            for i, m, at in zip(
                table.column("image_id").to_pylist(),
                table.column("model_id").to_pylist(),
                table.column("labeled_at").cast(pa.int64()).to_pylist(),
                strict=True,
            ):
                written.setdefault((i, m), []).append((at, name))

    # Some keys are written exactly once, up front: if any compaction ever drops them, nothing brings them back.
    solo = keys[:12]
    for start in range(0, len(solo), 3):
        table = _rows(solo[start : start + 3], [T0] * 3)
        record(table, _write(out, table))

    def writer(seed: int) -> None:
        r = random.Random(seed)
        try:
            for _ in range(100):
                picked = r.sample(keys[12:], r.randint(1, 6))
                # Few distinct timestamps: equal labeled_at across files is common, so the file name decides.
                at = [T0 + dt.timedelta(seconds=r.randint(1, 40)) for _ in picked]
                table = _rows(picked, at, label=r.choice(["head", "chest", "leg"]))
                record(table, _write(out, table))
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    def compactor() -> None:
        try:
            while not writers_done.is_set():
                labels_store.compact(out)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(rng.random(),)) for _ in range(3)]
    compactors = [threading.Thread(target=compactor) for _ in range(3)]
    for t in compactors + writers:
        t.start()
    for t in writers:
        t.join(timeout=600)
    writers_done.set()
    for t in compactors:
        t.join(timeout=600)
    assert not errors, errors
    assert sum(len(v) for v in written.values()) > 600  # a few hundred part files were written

    labels_store.compact(out)
    final = _final(out)
    assert sorted(final) == sorted(written), set(written) ^ set(final)  # no key lost
    dupes = {k: v for k, v in final.items() if len(v) != 1}
    assert not dupes, dupes
    for k, rows in written.items():  # and the survivor is the newest row written (file name breaks time ties)
        assert final[k][0] == max(rows), (k, final[k], max(rows))
    assert labels_store.compact(out) == 0
