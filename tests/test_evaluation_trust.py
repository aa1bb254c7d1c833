"""`scanlabel evaluate` trust figures: ECE before/after calibration, reliability diagram, selective metrics, OOD
AUROC - checked against numbers worked out independently, on real Parquet labels and a real bundle on disk."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.io import schema
from core.trust import calibration as cm

CLASSES = ["abdomen", "arm", "chest", "hand", "head", "leg", "other", "pelvis"]
BODY = [c for c in CLASSES if c != "other"]


# --- the measures themselves -------------------------------------------------------------------------------
def test_ece_by_hand():
    # Bin (0.6, 0.667]: 2 rows at 0.65, 1 right -> gap 0.15; bin (0.933, 1]: 2 rows at 0.95, both right -> 0.05.
    rel = cm.reliability([0.65, 0.65, 0.95, 0.95], [1, 0, 1, 1])
    assert rel.counts.sum() == 4 and (rel.counts > 0).sum() == 2
    assert rel.ece == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)
    assert cm.reliability([], []).ece == 0.0


def test_ece_matches_the_training_side_definition():
    """Demo and training print core.trust.confidence's ECE; evaluate must report the same number for the same rows."""
    from core.trust.confidence import expected_calibration_error

    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, size=(500, 7))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 7, size=500)
    assert cm.calibration(probs, y).ece == pytest.approx(expected_calibration_error(probs, y), abs=1e-12)


def test_undo_temperature_inverts_the_bundle_calibration():
    from core.trust.confidence import apply_temperature

    rng = np.random.default_rng(1)
    raw = rng.dirichlet(np.full(7, 1.0), size=50)
    for t in (0.5, 1.0, 2.7):
        np.testing.assert_allclose(cm.undo_temperature(apply_temperature(raw, t), t), raw, rtol=1e-6, atol=1e-9)


def test_auroc_is_the_pairwise_ranking_probability():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 60).round(1)  # rounded: ties happen
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    assert cm.auroc(pos, neg) == pytest.approx(np.mean(pairs))
    assert cm.auroc([3, 4], [1, 2]) == 1.0 and cm.auroc([1], [2]) == 0.0
    assert cm.auroc([], [1.0]) is None


def test_selective_metrics_by_hand():
    def row(true, pred, status="ok", reason=None, ood=0.1):
        return {"true": true, "pred": pred, "status": status, "abstain_reason": reason, "ood_score": ood}

    rows = [
        row("chest", "chest"),
        row("chest", "chest"),
        row("chest", "leg"),  # accepted, wrong
        row("chest", "other", reason="low_confidence"),
        row("leg", "leg"),
        row("leg", None, status="error", ood=None),  # unreadable: not covered, not in the abstention base
        row("other", "other", reason="out_of_distribution", ood=5.0),
        row("other", "hand", ood=0.05),  # a non-radiograph that got a body part: the dangerous kind
        row("other", None, status="skipped", ood=None),  # out of scope
    ]
    m, rel = cm.trust_metrics(rows, None, None)
    assert m["coverage"] == pytest.approx(4 / 6)
    assert m["abstention_rate"] == pytest.approx(1 / 5)
    assert m["accuracy_accepted"] == pytest.approx(3 / 4)
    assert m["abstention_per_class"] == {"chest": 0.25, "leg": 0.0, "other": 0.5}
    assert m["n_other"] == 3 and m["other_labelled_as_body_part"] == 1
    assert m["other_without_body_part"] == pytest.approx(2 / 3)
    # ood: other-ok {5.0, 0.05} vs body-ok {0.1 x5}: 5.0 beats all five, 0.05 none -> 0.5
    assert m["ood_auroc"] == pytest.approx(0.5)
    assert m["ece_before"] is None and m["ece_after"] is None and rel == {}  # no probabilities in these rows
    m, _ = cm.trust_metrics([r for r in rows if r["true"] != "other"], None, None)
    assert m["ood_auroc"] is None and m["n_other"] == 0 and "other" not in m["abstention_per_class"]


# --- evaluate end to end ------------------------------------------------------------------------------------
TEMPERATURE = 2.5


@pytest.fixture(scope="module")
def calibrated_bundle(tmp_path_factory):
    """A real bundle on disk with trust data (temperature 2.5), written through the project's own API."""
    import keras

    from core.model.bundle import save_bundle
    from core.model.preprocess import PreprocessConfig
    from core.trust.confidence import Trust

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(len(CLASSES), activation="softmax")])
    tmp = tmp_path_factory.mktemp("trust")
    Trust(TEMPERATURE, 0.5, 10.0, "max_softmax", list(CLASSES)).write(str(tmp))
    out = tmp / "bundle"
    model_id = save_bundle(
        str(out),
        model,
        CLASSES,
        PreprocessConfig(image_size=32),
        {"backbone": "test"},
        hashed_files={"trust.json": str(tmp / "trust.json")},
    )
    return str(out), model_id


def _archive(tmp_path, model_id: str, rng: np.random.Generator):
    """Labels as the label job writes them: raw probabilities over-confident, calibrated by the temperature."""
    from core.trust.confidence import apply_temperature

    n_body, n_other = 300, 40
    truth = list(rng.choice(BODY, size=n_body)) + ["other"] * n_other
    images, uris = tmp_path / "img", []
    images.mkdir()
    raw = np.zeros((len(truth), len(CLASSES)))
    for i, t in enumerate(truth):
        right = rng.random() < 0.8 and t != "other"
        k = CLASSES.index(t) if right else int(rng.integers(0, len(CLASSES)))
        raw[i] = rng.dirichlet(np.full(len(CLASSES), 0.2))
        raw[i, k] += 400.0  # sharp: over-confident before calibration (T = 2.5 brings the ECE down)
        raw[i] /= raw[i].sum()
        path = images / f"{i}.png"
        cv2.imwrite(str(path), np.full((16, 16), (i * 7) % 255, np.uint8))
        uris.append(str(path))
    cal = apply_temperature(raw, TEMPERATURE)
    ood = np.where(np.array(truth) == "other", rng.normal(3, 1, len(truth)), rng.normal(0, 1, len(truth)))
    top = cal.argmax(axis=1)
    reasons = [None] * len(truth)
    labels = [CLASSES[k] for k in top]
    for i in range(len(truth)):
        if ood[i] > 2.0:
            reasons[i], labels[i] = schema.ABSTAIN_OOD, schema.OTHER_LABEL
        elif cal[i].max() < 0.35:
            reasons[i], labels[i] = schema.ABSTAIN_LOW_CONFIDENCE, schema.OTHER_LABEL
    n = len(truth)
    ids = [f"img-{i:04d}" for i in range(n)]
    table = schema.labels_table(
        {
            schema.IMAGE_ID: ids,
            schema.URI: uris,
            schema.LABEL: labels,
            "confidence": cal.max(axis=1).tolist(),
            "probabilities": cal.tolist(),
            "status": ["ok"] * n,
            "model_id": [model_id] * n,
            "labeled_at": [1_700_000_000_000_000] * n,
            "ood_score": ood.tolist(),
            "abstain_reason": reasons,
        }
    )
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    pq.write_table(table, labels_dir / "part-0.parquet")
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"uri": uris, "image_id": ids, "label": truth}), manifest)
    return str(labels_dir), str(manifest), truth, raw, cal, ood, labels


def test_evaluate_reports_trust_figures(tmp_path, calibrated_bundle):
    from core.trust.evaluation import evaluate

    bundle, model_id = calibrated_bundle
    labels_dir, manifest, truth, raw, cal, ood, labels = _archive(tmp_path, model_id, np.random.default_rng(0))
    out = tmp_path / "report"
    metrics = evaluate(labels_dir, manifest, out, model=bundle)

    body = np.array([t != "other" for t in truth])
    y = np.array([CLASSES.index(t) for t in np.array(truth)[body]])
    assert metrics["temperature"] == TEMPERATURE and metrics["ece_bins"] == 15
    assert metrics["ece_after"] == pytest.approx(cm.calibration(cal[body], y).ece)
    assert metrics["ece_before"] == pytest.approx(cm.calibration(raw[body], y).ece, abs=1e-6)
    assert metrics["ece_before"] > metrics["ece_after"]  # over-confident raw scores, softened by T
    accepted = [i for i in range(len(truth)) if body[i] and labels[i] != "other"]
    assert metrics["coverage"] == pytest.approx(len(accepted) / body.sum())
    assert metrics["abstention_rate"] == pytest.approx(1 - len(accepted) / body.sum())
    assert metrics["accuracy_accepted"] == pytest.approx(np.mean([labels[i] == truth[i] for i in accepted]))
    assert set(metrics["abstention_per_class"]) == set(truth)
    other = ~body
    expect_auroc = np.mean([p > q for p, q in itertools.product(ood[other], ood[body])])
    assert metrics["ood_auroc"] == pytest.approx(expect_auroc)
    expect_other = np.mean([labels[i] == "other" for i in np.where(other)[0]])
    assert metrics["other_without_body_part"] == pytest.approx(expect_other)

    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("ece_before", "ece_after", "coverage", "abstention_rate", "accuracy_accepted"):
        assert on_disk[key] == pytest.approx(metrics[key])
    assert set(on_disk["abstention_per_class"]) == set(metrics["abstention_per_class"])
    assert on_disk["ood_auroc"] == pytest.approx(metrics["ood_auroc"])
    png = cv2.imread(str(out / "reliability.png"))
    assert png is not None and png.shape[1] > 800 and png.std() > 10  # two panels, something drawn
    page = (out / "report.html").read_text()
    assert "<h2>Trust</h2>" in page and 'alt="reliability diagram"' in page
    assert f"{metrics['ece_after']:.3f}" in page and f"{metrics['ood_auroc']:.3f}" in page


def test_evaluate_without_bundle_reports_ece_before_as_null(tmp_path, calibrated_bundle):
    from jobs.cli import main

    _, model_id = calibrated_bundle
    labels_dir, manifest, truth, _, cal, _, _ = _archive(tmp_path, model_id, np.random.default_rng(1))
    out = tmp_path / "report"
    assert main(["evaluate", "--labels", labels_dir, "--manifest", manifest, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ece_before"] is None and metrics["temperature"] is None
    body = np.array([t != "other" for t in truth])
    y = np.array([CLASSES.index(t) for t in np.array(truth)[body]])
    # the class order is read off the accepted rows; every class occurs, so every body-part row counts
    assert metrics["ece_rows"] == body.sum()
    assert metrics["ece_after"] == pytest.approx(cm.calibration(cal[body], y).ece)
    assert "before calibration" in (out / "report.html").read_text()


def test_evaluate_refuses_a_bundle_that_did_not_write_the_labels(tmp_path, calibrated_bundle, capsys):
    from jobs.cli import main

    bundle, _ = calibrated_bundle
    labels_dir, manifest, *_ = _archive(tmp_path, "some-other-model", np.random.default_rng(2))
    out = tmp_path / "report"
    rc = main(["evaluate", "--labels", labels_dir, "--manifest", manifest, "--out", str(out), "--model", bundle])
    assert rc == 2 and "holds labels of ['some-other-model']" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()
