"""The weak-labels benchmark (``python -m jobs.bench weak-labels``, benchmarks/weak_labels.py): the parts that decide
what a run measures, without its hours of training."""

from __future__ import annotations

import argparse
import json

from core.synthetic.sample_archive import DICOM_FORMATS, write_sample_archive


def test_weak_labels_bench_reuses_a_truth_model_only_of_the_same_recipe_and_archive(tmp_path):
    """``jobs.bench weak-labels --reuse-truth``: a further noise setting skips the truth training only when the
    bundle there was trained with the same recipe on the very truth archive there now (its manifest's hash)."""
    from benchmarks.weak_labels import TRUTH_RECIPE, _config, _same_truth
    from core.training.publish import fingerprint

    manifest = str(write_sample_archive(tmp_path / "truth_archive", 8, 0, formats=sorted(DICOM_FORMATS)))
    args = argparse.Namespace(backbone="compact_resnet", image_size=48, epochs=3, batch_size=None, lr=None)
    cfg = _config(args, manifest, str(tmp_path / "truth"))
    assert not _same_truth(cfg, 8)  # nothing trained yet
    (tmp_path / "truth").mkdir()
    hp = {k: getattr(cfg, k) for k in TRUTH_RECIPE}
    record = {"hyperparameters": hp, "manifest_sha256": fingerprint(manifest)}
    (tmp_path / "truth" / "training.json").write_text(json.dumps(record))
    assert _same_truth(cfg, 8)
    assert not _same_truth(cfg, 9)  # another --train-count
    assert not _same_truth(_config(argparse.Namespace(**{**vars(args), "epochs": 4}), manifest, cfg.out), 8)
    write_sample_archive(tmp_path / "truth_archive", 8, 5, formats=sorted(DICOM_FORMATS))  # another archive
    assert not _same_truth(cfg, 8)
