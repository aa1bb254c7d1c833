"""A labels dataset with a part file someone truncated or replaced: a clear error naming it, and a way back.

Real part files written by the real writer, then damaged on disk the way it happens (a copy cut short, another
table's Parquet dropped into the folder); a real label run refuses, names the file and writes nothing, and
``--quarantine-bad-parts`` moves it aside and labels only the images it held (docs/faults.md).
"""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from core.io import schema
from core.labeling import lease
from core.labeling import store as labels_store


def _rows(ids: list[str]) -> pa.Table:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return schema.labels_table(
        [
            {"image_id": i, "uri": f"/x/{i}.png", "label": "chest", "status": "ok", "model_id": "m", "labeled_at": when}
            for i in ids
        ]
    )


def _dataset(tmp_path, groups: list[list[str]]) -> tuple[str, list[str]]:
    out = str(tmp_path / "labels")
    w = labels_store.PartWriter(out, rows_per_file=10**6)
    for ids in groups:
        w.add(_rows(ids))
        w.flush()
    return out, [os.path.join(out, f) for f in w.files]


def _truncate(path: str) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def test_a_truncated_or_foreign_part_is_named_in_the_error(tmp_path):
    out, files = _dataset(tmp_path, [["a", "b"], ["c", "d"], ["e"]])
    _truncate(files[1])
    pq.write_table(pa.table({"uri": ["/x/z.png"], "patient": ["p"]}), os.path.join(out, "manifest-copy.parquet"))
    with pytest.raises(labels_store.CorruptPart) as caught:
        labels_store.existing_keys(out)
    message = str(caught.value)
    assert files[1] in message and "manifest-copy.parquet" in message, message
    assert "no image_id column" in message and "--quarantine-bad-parts" in message
    assert sorted(p for p, _ in caught.value.bad) == sorted([files[1], os.path.join(out, "manifest-copy.parquet")])
    with pytest.raises(labels_store.CorruptPart):
        labels_store.compact(out)  # compaction reads through the same door: it never rewrites around a bad file


def test_quarantine_moves_only_the_bad_parts_and_keeps_every_readable_row(tmp_path):
    out, files = _dataset(tmp_path, [["a", "b"], ["c", "d"], ["e"]])
    _truncate(files[0])
    lines: list[str] = []
    moved = labels_store.quarantine_bad_parts(out, lines.append)
    name = os.path.basename(files[0])
    assert moved == [name] and name in lines[0] and labels_store.QUARANTINE_DIR in lines[0]
    assert os.path.exists(os.path.join(out, labels_store.QUARANTINE_DIR, name))
    assert sorted(labels_store.existing_keys(out).column("image_id").to_pylist()) == ["c", "d", "e"]
    assert pads.dataset(out, format="parquet").to_table().num_rows == 3  # readers skip the quarantine folder
    assert labels_store.quarantine_bad_parts(out, lines.append) == []


def test_a_label_run_refuses_a_corrupted_dataset_then_quarantines_and_relabels_its_images(
    ray_session, small_archive, tiny_bundle, tmp_path
):
    from cluster.label import LabelOptions, run_label

    bundle, _ = tiny_bundle
    _, archive_manifest = small_archive
    uris = pq.read_table(archive_manifest).column("uri").to_pylist()[:24]
    manifest = str(tmp_path / "manifest.parquet")
    pq.write_table(pa.table({"uri": uris, "image_id": [f"i{i:02d}" for i in range(24)]}), manifest)
    out = str(tmp_path / "labels")
    opts = {"manifest": manifest, "model": bundle, "out": out, "batch_size": 8, "rows_per_file": 8}
    first = run_label(LabelOptions(**opts))
    assert first.ok == 24 and len(first.files) == 3
    bad = os.path.join(out, first.files[1])
    lost_ids = pq.read_table(bad).column("image_id").to_pylist()
    _truncate(bad)
    before = sorted(os.listdir(out))

    with pytest.raises(labels_store.CorruptPart, match=first.files[1]):
        run_label(LabelOptions(**opts))
    assert sorted(os.listdir(out)) == before  # nothing written, nothing moved
    assert lease.DatasetLease(out).current().state == "released"

    lines: list[str] = []
    healed = run_label(LabelOptions(**opts, quarantine_bad_parts=True), log=lines.append)
    assert healed.quarantined == [first.files[1]] and any("quarantined" in x for x in lines)
    assert healed.todo == len(lost_ids) == 8 and healed.already_ok == 16  # only the bad file's images
    table = pads.dataset(out, format="parquet").to_table(columns=["image_id"])
    ids = table.column("image_id").to_pylist()
    assert sorted(ids) == sorted(f"i{i:02d}" for i in range(24))  # one row per image: nothing lost
    assert os.path.exists(os.path.join(out, labels_store.QUARANTINE_DIR, first.files[1]))
