"""`python -m jobs.bench trust` at toy size: every held-out row is labelled and scored, figures are rates, and
pydicom-data's real radiographs are reported (inputs only).  The figures of a 2-epoch model mean nothing; the
bench's real run is recorded in BENCHMARKS.md, "Trust figures of the demo's recipe"."""

from __future__ import annotations

import argparse
import json

import cv2
import pyarrow.parquet as pq

from benchmarks.trust import DEMO_HOLDOUT, real_radiographs, run_trust


def test_trust_bench_scores_every_held_out_row(tmp_path):
    args = argparse.Namespace(
        train_count=56,
        train_other=14,
        holdout_count=30,
        seeds=[0],
        backbone="mobilenet_v3_small",
        image_size=32,
        epochs=1,
        side_scale=0.5,  # every archive's phantoms at 128-224 px
        out=str(tmp_path),
    )
    assert run_trust(args) == 0
    for archive in ("train", "holdout_s1", "holdout_s2"):
        rows = pq.read_table(tmp_path / archive / "manifest.parquet").to_pylist()
        png = next(r["uri"] for r in rows if r["format"] == "png8" and r["label"] != "other")
        assert max(cv2.imread(png, cv2.IMREAD_UNCHANGED).shape) <= 224, archive
    (result,) = json.loads((tmp_path / "trust_bench.json").read_text())
    _, phantoms, other = DEMO_HOLDOUT
    assert result["s1"]["n"] == phantoms + other
    assert result["s2"]["n"] == 30
    for name in ("s1", "s2"):
        for key in ("abstention_rate", "ece_before", "ece_after"):
            assert 0.0 <= result[name][key] <= 1.0, (name, key, result[name])
    assert 0.0 <= result["non_radiographs_without_body_part"] <= 1.0
    for name, (_, part) in real_radiographs().items():
        assert result[name]["expected"] == part
        assert result[name]["label"] in ("head", "chest", "abdomen", "pelvis", "arm", "leg", "hand", "other")
        assert 0.0 <= result[name]["p_expected"] <= 1.0
