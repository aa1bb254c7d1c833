"""Trustworthy labels: calibration, OOD thresholds and abstention (core/trust/confidence.py,
BatchClassifier.label_batch).

The fitting functions are checked on constructed cases whose right answer is known; abstention is checked on
a really trained bundle (the session fixture ``trained_bundle``: phantoms plus generated non-radiographs).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.io import schema
from core.trust import confidence as trust


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _overconfident(n: int, k: int, true_t: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), predictions reported as softmax(z * true_t): overconfident by true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, k))
    p_true = _softmax(z)
    y = np.array([rng.choice(k, p=p) for p in p_true])
    return _softmax(z * true_t), y


def test_temperature_recovers_the_miscalibration_and_lowers_nll_and_ece():
    probs, y = _overconfident(4000, 7, true_t=3.0, seed=0)
    t = trust.fit_temperature(probs, y)
    assert t == pytest.approx(3.0, rel=0.1)
    calibrated = trust.apply_temperature(probs, t)
    assert trust.nll(calibrated, y) < trust.nll(probs, y) - 0.1
    assert trust.expected_calibration_error(calibrated, y) < 0.03 < trust.expected_calibration_error(probs, y)
    assert (calibrated.argmax(1) == probs.argmax(1)).all()  # temperature never changes a label

    # Already calibrated predictions are left (nearly) alone, and never made worse on fresh data.
    probs2, y2 = _overconfident(4000, 7, true_t=1.0, seed=1)
    t2 = trust.fit_temperature(probs2, y2)
    assert t2 == pytest.approx(1.0, abs=0.1)


def test_thresholds_hit_the_target_abstention_on_validation_and_on_fresh_rows():
    classes = ["abdomen", "chest", "other"]
    rng = np.random.default_rng(0)

    def rows(n: int):
        z = rng.normal(0, 1, (n, 3)) + np.array([3.0, 3.0, -2.0]) * rng.integers(0, 2, (n, 1))
        z[:, 0] += rng.normal(2, 1, n)
        z[:, 2] -= 3.5  # the model rarely calls an in-domain image "other" (~0.3%)
        return _softmax(z), rng.gamma(4.0, 1.0, n)

    val_p, val_ood = rows(3000)
    min_conf, max_ood, stats = trust.fit_thresholds(val_p, val_ood, classes, target=0.01)
    reasons = trust.abstain_reasons(val_p, val_ood, classes, min_conf, max_ood)
    rate = np.mean([r is not None for r in reasons])
    assert stats["abstention"] == pytest.approx(rate)
    assert 0.005 <= rate <= 0.0101
    assert {schema.ABSTAIN_OOD, schema.ABSTAIN_LOW_CONFIDENCE} <= {r for r in reasons if r}

    fresh_p, fresh_ood = rows(20000)
    fresh = np.mean([r is not None for r in trust.abstain_reasons(fresh_p, fresh_ood, classes, min_conf, max_ood)])
    assert 0.004 <= fresh <= 0.02

    # A larger target abstains more.
    min5, max5, stats5 = trust.fit_thresholds(val_p, val_ood, classes, target=0.05)
    assert min5 >= min_conf and max5 <= max_ood and 0.03 <= stats5["abstention"] <= 0.0501


def test_abstain_reasons_follow_the_rule():
    classes = ["chest", "leg", "other"]
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1], [0.95, 0.04, 0.01]])
    ood = np.array([1.0, 1.0, 1.0, 50.0])
    assert trust.abstain_reasons(probs, ood, classes, 0.6, 10.0) == [
        None,
        schema.ABSTAIN_OOD,  # the model itself says other
        schema.ABSTAIN_LOW_CONFIDENCE,
        schema.ABSTAIN_OOD,  # far from the training features
    ]


def test_mahalanobis_statistics_add_up_across_shards_and_score_distance():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (300, 8)), rng.normal(5, 1, (300, 8))])
    y = np.repeat([0, 1], 300)
    whole = trust.FeatureStats.of(x, y, 2)
    halves = [trust.FeatureStats.of(x[i::2], y[i::2], 2) for i in range(2)]
    summed = trust.FeatureStats.from_flat(halves[0].flat() + halves[1].flat(), 2, 8)
    np.testing.assert_allclose(summed.flat(), whole.flat())
    means, precision = trust.mahalanobis_params(whole)
    arrays = {"means": means, "precision": precision}
    near = trust.ood_scores("mahalanobis", rng.normal(0, 1, (50, 8)), np.zeros((50, 2)), ["a", "b"], arrays)
    far = trust.ood_scores("mahalanobis", rng.normal(20, 1, (50, 8)), np.zeros((50, 2)), ["a", "b"], arrays)
    assert near.max() < far.min()
    assert np.median(near) == pytest.approx(8, rel=0.5)  # chi-square with 8 degrees of freedom


# --- on a trained bundle ----------------------------------------------------------------------------------------


def _label(bundle_path: str, manifest, **overrides):
    from core.labeling.batches import BatchClassifier, decode_batch
    from core.model.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    table = pq.read_table(manifest)
    clf = BatchClassifier(bundle, 16, **overrides)
    batch = {schema.URI: np.asarray(table.column(schema.URI).to_pylist(), dtype=object)}
    batch[schema.IMAGE_ID] = np.asarray(table.column(schema.IMAGE_ID).to_pylist(), dtype=object)
    decoded = decode_batch(batch, bundle.preprocess)
    return clf, clf.label_batch(decoded).to_pylist(), table.column(schema.LABEL).to_pylist()


@pytest.fixture(scope="module")
def unseen_archive(tmp_path_factory):
    """Phantoms and generated non-radiographs from seeds the trained bundle never saw."""
    from core.synthetic.sample_archive import write_sample_archive

    return write_sample_archive(tmp_path_factory.mktemp("unseen"), 35, seed=12, other_count=35)


def test_trained_bundle_carries_hashed_trust_data(trained_bundle):
    from core.errors import BundleError
    from core.model.bundle import load_bundle

    path, summary = trained_bundle
    assert "other" in summary["classes"]
    with open(os.path.join(path, "bundle.json")) as f:
        hashed = json.load(f)["sha256"]
    assert trust.TRUST_FILE in hashed
    bundle = load_bundle(path)
    t = trust.load_trust(bundle)
    assert t is not None and t.ood_method == "p_other" and t.temperature > 0  # "auto" with an `other` class
    assert 0.0 < t.min_confidence < 1.0 and np.isfinite(t.max_ood_score)
    assert bundle.training["modalities"] == ["CR", "DX", "RG"]
    assert bundle.training["calibration"]["val_nll_after"] <= bundle.training["calibration"]["val_nll_before"] + 1e-9
    fit = t.info["thresholds"]  # rows the model calls "other" abstain anyway; the thresholds add at most the rest
    assert fit["abstention"] <= max(0.01, fit["predicted_other"]) + 1e-9

    altered = os.path.join(os.path.dirname(path), "altered")
    shutil.copytree(path, altered)
    with open(os.path.join(altered, trust.TRUST_FILE)) as f:
        data = json.load(f)
    data["max_ood_score"] = 1e9  # switching abstention off by hand must not go unnoticed
    with open(os.path.join(altered, trust.TRUST_FILE), "w") as f:
        json.dump(data, f)
    with pytest.raises(BundleError, match="trust.json"):
        load_bundle(altered)


def test_label_batch_abstains_with_the_right_reasons(trained_bundle, unseen_archive):
    path, _ = trained_bundle
    clf, rows, truth = _label(path, unseen_archive)
    t = clf.trust
    classes = clf.classes
    other = classes.index(schema.OTHER_LABEL)
    ok = [r for r in rows if r["status"] == schema.STATUS_OK]
    assert len(ok) >= 60
    for r in ok:
        p = np.asarray(r["probabilities"])
        assert len(p) == len(classes) and p.sum() == pytest.approx(1.0, abs=1e-4)
        assert r["confidence"] == pytest.approx(p.max(), abs=1e-6)
        assert r["ood_score"] is not None
        if p.argmax() == other or r["ood_score"] > t.max_ood_score:
            expected = schema.ABSTAIN_OOD
        elif r["confidence"] < t.min_confidence:
            expected = schema.ABSTAIN_LOW_CONFIDENCE
        else:
            expected = None
        assert r["abstain_reason"] == expected
        assert (r[schema.LABEL] == schema.OTHER_LABEL) == (expected is not None)
        if expected is None:
            assert r[schema.LABEL] == classes[int(p.argmax())]

    # Even this small model abstains far more often on unseen non-radiographs than on unseen phantoms (the
    # done-means figures are measured on the demo-size model: jobs/demo.py).
    by_truth = {"other": [], "body": []}
    for r, true in zip(rows, truth, strict=True):
        if r["status"] == schema.STATUS_OK:
            by_truth["other" if true == "other" else "body"].append(r["abstain_reason"] is not None)
    assert np.mean(by_truth["other"]) > np.mean(by_truth["body"]) + 0.2, by_truth

    # Per-run overrides: nothing passes an impossible confidence, everything is out of distribution below 0.
    _, strict, _ = _label(path, unseen_archive, min_confidence=1.01)
    assert {r["abstain_reason"] for r in strict if r["status"] == "ok"} <= set(schema.ABSTAIN_REASONS)
    assert all(r[schema.LABEL] == schema.OTHER_LABEL for r in strict if r["status"] == "ok")
    _, far, _ = _label(path, unseen_archive, max_ood_score=-1.0)
    assert {r["abstain_reason"] for r in far if r["status"] == "ok"} == {schema.ABSTAIN_OOD}


def test_scored_pass_gives_the_plain_model_outputs_calibrated(trained_bundle, unseen_archive):
    """Features and probabilities come from one call; the probabilities are the model's, only calibrated."""
    from core.labeling.batches import PIXELS, decode_batch
    from core.model.preprocess import expand

    path, _ = trained_bundle
    clf, _, _ = _label(path, unseen_archive)
    table = pq.read_table(unseen_archive)
    batch = {
        schema.URI: np.asarray(table.column(schema.URI).to_pylist()[:20], dtype=object),
        schema.IMAGE_ID: np.asarray(table.column(schema.IMAGE_ID).to_pylist()[:20], dtype=object),
    }
    pixels = np.asarray(decode_batch(batch, clf.bundle.preprocess)[PIXELS])
    calibrated, ood = clf.predict_scored(pixels)
    plain = clf.bundle.model(expand(pixels, clf.bundle.preprocess), training=False).numpy()
    np.testing.assert_allclose(calibrated, clf.trust.calibrate(plain), atol=1e-5)
    assert ood.shape == (20,) and np.isfinite(ood).all()


def test_trust_arrays_travel_in_the_bundle_hashes(tiny_bundle, tmp_path):
    """An OOD method with fitted arrays (Mahalanobis) writes ood.npz; it is hashed and loads back unchanged."""
    from core.model.bundle import load_bundle, save_bundle

    src = load_bundle(tiny_bundle[0])
    rng = np.random.default_rng(0)
    arrays = {"means": rng.normal(size=(7, 4)), "precision": np.eye(4)}
    t = trust.Trust(1.3, 0.4, 12.5, "mahalanobis", src.classes, arrays, {"note": "test"})
    parts = tmp_path / "parts"
    parts.mkdir()
    files = {name: str(parts / name) for name in t.write(str(parts))}
    assert set(files) == {trust.TRUST_FILE, trust.OOD_FILE}
    out = tmp_path / "bundle"
    model_id = save_bundle(str(out), src.model, src.classes, src.preprocess, {"backbone": "b"}, hashed_files=files)
    assert model_id != src.model_id
    loaded = trust.load_trust(load_bundle(str(out)))
    assert loaded.ood_method == "mahalanobis" and loaded.temperature == 1.3 and loaded.needs_features
    np.testing.assert_array_equal(loaded.arrays["means"], arrays["means"])
    np.savez(out / trust.OOD_FILE, means=np.zeros((7, 4)), precision=np.eye(4))  # altered arrays are caught
    with pytest.raises(Exception, match="ood.npz"):
        load_bundle(str(out))


def test_old_bundle_without_trust_labels_without_abstention_and_warns_once(tiny_bundle, tmp_path, caplog):
    from core.errors import BundleError
    from core.labeling.batches import BatchClassifier, decode_batch
    from core.model.bundle import load_bundle
    from core.synthetic.sample_archive import write_sample_archive

    old = tmp_path / "old_bundle"  # a path of its own: the warning is once per bundle path and process
    shutil.copytree(tiny_bundle[0], old)
    manifest = write_sample_archive(tmp_path / "a", 6, seed=4)
    table = pq.read_table(manifest)
    batch = {
        schema.URI: np.asarray(table.column(schema.URI).to_pylist(), dtype=object),
        schema.IMAGE_ID: np.asarray(table.column(schema.IMAGE_ID).to_pylist(), dtype=object),
    }
    with caplog.at_level(logging.WARNING, logger="scanlabel.trust"):
        bundle = load_bundle(str(old))
        assert trust.load_trust(bundle) is None
        rows = []
        for _ in range(2):
            clf = BatchClassifier(bundle, 8)
            rows += clf.label_batch(decode_batch(batch, bundle.preprocess)).to_pylist()
    warnings = [r for r in caplog.records if "trust.json" in r.getMessage()]
    assert len(warnings) == 1
    assert all(r["status"] == "ok" and r["label"] in bundle.classes for r in rows)
    assert all(r["abstain_reason"] is None and r["ood_score"] is None for r in rows)
    with pytest.raises(ValueError, match="trust data"):
        BatchClassifier(bundle, 8, min_confidence=0.5)

    from cluster.label import LabelOptions, prepare

    with pytest.raises(BundleError, match="trust data"):
        prepare(LabelOptions(manifest=str(manifest), model=str(old), out=str(tmp_path / "labels"), max_ood_score=3.0))


def test_label_cli_passes_threshold_overrides():
    import argparse

    from jobs.label import add_arguments, label_options

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--manifest", "m", "--model", "b", "--out", "o", "--min-confidence", "0.7"])
    opts = label_options(args)
    assert opts.min_confidence == 0.7 and opts.max_ood_score is None
