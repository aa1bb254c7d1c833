"""The Ray labeling job on a real local Ray: one row per manifest row, bad files as error rows, resume."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from core.io import schema


@pytest.fixture
def manifest_with_bad_rows(small_archive, tmp_path):
    _, manifest = small_archive
    table = pq.read_table(manifest).select(["uri", "image_id", "label"])
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.dcm").write_bytes(b"")
    from pydicom.data import get_testdata_file

    bad = pa.table(
        {
            "uri": [
                str(tmp_path / "missing.png"),
                str(tmp_path / "text.png"),
                str(tmp_path / "empty.dcm"),
                get_testdata_file("rtplan.dcm"),
            ],
            "image_id": ["bad-missing", "bad-text", "bad-empty", "bad-rtplan"],
            "label": [None, None, None, None],
        }
    )
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.concat_tables([table, bad.cast(table.schema)]), path)
    return str(path), table.num_rows + bad.num_rows


def test_label_job_writes_one_row_per_manifest_row(ray_session, tiny_bundle, manifest_with_bad_rows, tmp_path):
    from cluster.label import LabelOptions, run_label

    manifest, n = manifest_with_bad_rows
    bundle, model_id = tiny_bundle
    out = str(tmp_path / "labels")
    summary = run_label(LabelOptions(manifest=manifest, model=bundle, out=out, batch_size=16, rows_per_file=30))
    table = pads.dataset(out).to_table()
    assert table.num_rows == n and len(set(table.column("image_id").to_pylist())) == n
    assert table.schema.equals(schema.LABELS_SCHEMA)
    rows = {r["image_id"]: r for r in table.to_pylist()}
    assert rows["bad-missing"]["status"] == "error" and rows["bad-missing"]["error"] == "not_found"
    assert rows["bad-text"]["error"] == "unsupported_format"
    assert rows["bad-empty"]["error"] == "empty_file"
    # An RT plan is outside the bundle's default scope (projection radiography): skipped from its header.
    assert rows["bad-rtplan"]["status"] == "skipped" and rows["bad-rtplan"]["error"] == "out_of_scope"
    good = [r for k, r in rows.items() if not k.startswith("bad-")]
    assert all(r["status"] == "ok" and r["label"] and len(r["probabilities"]) == 7 for r in good)
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 and r["model_id"] == model_id for r in good)
    assert summary.ok == n - 4 and summary.failed == 3 and summary.skipped == 1
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no temporaries left behind

    # A rerun has nothing to do: resume is the default.
    again = run_label(LabelOptions(manifest=manifest, model=bundle, out=out, batch_size=16))
    assert again.todo == 0
    assert pads.dataset(out).to_table().num_rows == n
