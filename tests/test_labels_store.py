"""The labels dataset: planning what to do, atomic part files, and self-healing of duplicates."""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pyarrow.dataset as pads

from core.io import schema
from core.labeling import store as labels_store


def _rows(ids, model_id="m1", status="ok", error=None, when=None):
    when = when or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return schema.labels_table(
        [
            {
                "image_id": i,
                "uri": f"/x/{i}.png",
                "label": "chest" if status == "ok" else None,
                "status": status,
                "error": error,
                "model_id": model_id,
                "labeled_at": when,
            }
            for i in ids
        ]
    )


def _manifest(ids):
    return pa.table({"uri": [f"/x/{i}.png" for i in ids], "image_id": list(ids)})


def test_plan_skips_ok_and_permanent_errors_but_retries_transient(tmp_path):
    out = str(tmp_path / "labels")
    w = labels_store.PartWriter(out)
    w.add(_rows(["a", "b"]))
    w.add(_rows(["c"], status="error", error="decode_error"))
    w.add(_rows(["d"], status="error", error="io_error"))
    w.add(_rows(["a", "b", "c", "d"], model_id="other-model"))
    w.flush()
    existing = labels_store.existing_keys(out)
    p = labels_store.plan(_manifest("abcde"), existing, "m1")
    assert sorted(p.todo.column("image_id").to_pylist()) == ["d", "e"]
    assert p.already_ok == 2 and p.permanent_errors == 1 and p.retry == 1
    p2 = labels_store.plan(_manifest("abcde"), existing, "m1", retry_errors=True)
    assert sorted(p2.todo.column("image_id").to_pylist()) == ["c", "d", "e"]
    p3 = labels_store.plan(_manifest("abcde"), existing, "m1", relabel=True)
    assert p3.todo.num_rows == 5
    p4 = labels_store.plan(_manifest("abcde"), existing, "new-model")
    assert p4.todo.num_rows == 5


def test_part_files_are_committed_whole_with_no_temporaries_left(tmp_path):
    out = str(tmp_path / "labels")
    w = labels_store.PartWriter(out, rows_per_file=2)
    w.add(_rows(["a", "b", "c"]))
    w.add(_rows(["d"]))
    w.flush()
    names = sorted(os.listdir(out))
    assert len(names) == 2 and all(n.startswith("part-") and n.endswith(".parquet") for n in names)
    assert pads.dataset(out).to_table().num_rows == 4


def test_compact_keeps_newest_row_per_image_and_model(tmp_path):
    out = str(tmp_path / "labels")
    old = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    new = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    w = labels_store.PartWriter(out)
    w.add(_rows(["a", "b"], status="error", error="io_error", when=old))
    w.flush()
    w2 = labels_store.PartWriter(out)
    w2.add(_rows(["b"], when=new))
    w2.add(_rows(["b"], model_id="m2", when=old))
    w2.flush()
    assert labels_store.compact(out) == 1
    table = labels_store.read_labels(out)
    assert table.num_rows == 3
    rows = {(r["image_id"], r["model_id"]): r["status"] for r in table.to_pylist()}
    assert rows == {("a", "m1"): "error", ("b", "m1"): "ok", ("b", "m2"): "ok"}
    assert labels_store.compact(out) == 0
