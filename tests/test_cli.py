"""The command contract through the `scanlabel` entry point: sample → label → evaluate, and refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.cli import main


def test_sample_label_evaluate_contract(ray_session, tiny_bundle, tmp_path, capsys):
    bundle, model_id = tiny_bundle
    archive, labels, report = tmp_path / "archive", tmp_path / "labels", tmp_path / "report"
    assert main(["sample", "--out", str(archive), "--count", "21", "--seed", "5"]) == 0
    manifest = archive / "manifest.parquet"
    table = pq.read_table(manifest)
    assert {"uri", "image_id", "label"} <= set(table.column_names) and table.num_rows == 21
    assert all(os.path.isabs(u) for u in table.column("uri").to_pylist())

    assert (
        main(["label", "--manifest", str(manifest), "--model", bundle, "--out", str(labels), "--batch-size", "8"]) == 0
    )
    assert main(["evaluate", "--labels", str(labels), "--manifest", str(manifest), "--out", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == 21 and metrics["model_id"] == model_id
    assert {"accuracy", "macro_f1", "per_class"} <= set(metrics)
    assert cv2.imread(str(report / "confusion_matrix.png")) is not None
    html = (report / "report.html").read_text()
    assert "<img" in html and "chest" in html
    # The untrained model calls everything one class, so DICOM headers of other classes disagree: the archive-QA
    # section lists them with thumbnails.
    assert metrics["header_disagreements"] > 0 and "DICOM header disagrees with the pixels" in html
    out = capsys.readouterr().out
    assert "macro_f1" in out


def test_bad_manifest_is_refused_before_any_work(tiny_bundle, tmp_path, capsys):
    bundle, _ = tiny_bundle
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"uri": ["/a.png", "/b.png"], "image_id": ["x", "x"]}), bad)
    out = tmp_path / "labels"
    rc = main(["label", "--manifest", str(bad), "--model", bundle, "--out", str(out)])
    assert rc == 2
    assert "duplicate image_id" in capsys.readouterr().err
    assert not out.exists()


def test_jobs_run_as_modules():
    for name in ("sample", "train", "label", "evaluate", "demo"):
        r = subprocess.run(
            [sys.executable, "-m", f"jobs.{name}", "--help"], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0 and "usage" in r.stdout, (name, r.stderr[-500:])


def test_label_and_train_flags_are_the_option_declarations():
    """The CLI and the Python API share one declaration per option: same flags, same defaults, same values."""
    import argparse

    from core.labeling.options import LabelOptions
    from core.options import cli_fields
    from core.training import TrainConfig
    from jobs import label, train

    cases = [
        (LabelOptions, label.add_arguments, label.label_options, ["--manifest", "m", "--model", "b", "--out", "o"]),
        (TrainConfig, train.add_arguments, train.config_from_args, ["--manifest", "m", "--out", "o"]),
    ]
    for cls, add, build, required in cases:
        parser = argparse.ArgumentParser()
        add(parser)
        flags = {s for a in parser._actions for s in a.option_strings}
        assert {cli["flag"] for _, _, cli in cli_fields(cls)} <= flags
        built = build(parser.parse_args(required))
        given = {"manifest": "m", "model": "b", "out": "o"}
        api = cls(**{k: v for k, v in given.items() if k in cls.__dataclass_fields__})
        assert built == api, cls.__name__
    parser = argparse.ArgumentParser()
    label.add_arguments(parser)
    opts = label.label_options(
        parser.parse_args(
            [
                "--manifest",
                "m",
                "--model",
                "b",
                "--out",
                "o",
                "--relabel",
                "--allowed-root",
                "/a",
                "--allowed-root",
                "/b",
                "--keep-columns",
                "x, y",
            ]
        )
    )
    assert opts.relabel is True and opts.allowed_roots == ("/a", "/b") and opts.keep_columns == ("x", "y")
