"""Evaluate a labels dataset against a manifest's ground truth and write the report.

Joined on ``image_id``.  Rows the model could not label stay in the denominator (they count as wrong), so a
pipeline that silently drops hard images cannot look better than it is.

Trust figures (:mod:`core.trust.calibration`: ECE before/after calibration, coverage, abstention, accuracy on
accepted rows, OOD AUROC where the manifest has ``other`` rows) come with every evaluation; the bundle
(``--model``) is only needed for the class order of ``probabilities`` and the temperature behind ECE-before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import errors, readers
from core.io import schema
from core.io.manifests import read_manifest
from core.labeling import store as labels_store
from core.model.preprocess import normalize_intensity
from core.trust.calibration import trust_metrics
from core.trust.metrics import compute_metrics
from core.trust.report import report_row, write_report


def thumbnail(uri: str, size: int = 128) -> np.ndarray:
    """A display thumbnail through the same reader and intensity normalisation as the model sees."""
    import cv2

    decoded = readers.read_image(uri)
    img = normalize_intensity(decoded.pixels, decoded.mask)
    h, w = img.shape
    s = size / max(h, w)
    img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return (img * 255).astype(np.uint8)


def _bundle_trust(model: str | None) -> tuple[Any, float | None]:
    """(bundle, temperature): the temperature from the bundle's trust data, 1.0 for a bundle without (its
    probabilities were never scaled), None without a bundle (ECE-before cannot be computed)."""
    if model is None:
        return None, None
    from core.model.bundle import load_bundle
    from core.trust.confidence import load_trust

    bundle = load_bundle(model)
    trust = load_trust(bundle)
    return bundle, (float(trust.temperature) if trust is not None else 1.0)


def evaluate(
    labels_dir: str,
    manifest_uri: str,
    out_dir: str | Path,
    model_id: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Metrics and report of ``labels_dir`` against the manifest's ``label``; ``model`` is the bundle that wrote
    the labels (optional: it supplies the class order and the temperature for ECE-before)."""
    manifest = schema.validate_manifest(read_manifest(manifest_uri), require_label=True)
    labels = labels_store.read_labels(labels_dir)
    if labels.num_rows == 0:
        raise errors.ManifestError(f"no labels found in {labels_dir}")
    bundle, temperature = _bundle_trust(model)
    model_id = _pick_model_id(labels, labels_dir, bundle, model_id, model)
    labels = labels.filter(pc.equal(labels.column("model_id"), model_id))
    truth = manifest.select([schema.IMAGE_ID, schema.LABEL]).rename_columns([schema.IMAGE_ID, "true"])
    classes = _classes_from(labels, truth)
    rows = _report_rows(labels, truth)
    known = set(classes)
    scored = [r for r in rows if r["true"] in known]
    metrics = compute_metrics([r["true"] for r in scored], [r["pred"] for r in scored], classes)
    metrics["model_id"] = model_id
    metrics["labels_dir"] = str(labels_dir)
    metrics["manifest"] = str(manifest_uri)
    metrics["rows_without_label_row"] = sum(1 for r in rows if r["status"] == "missing")
    metrics["ground_truth_outside_model_classes"] = len(rows) - len(scored)
    sections = _sections(rows)
    metrics["header_disagreements"] = len(sections[_DISAGREE])
    trust, reliabilities = trust_metrics(rows, bundle.classes if bundle is not None else None, temperature)
    metrics.update(trust)
    metrics["reliability"] = {k: v.to_json() for k, v in reliabilities.items()}
    extra = {k: v for k, v in sections.items() if v} or None
    write_report(
        out_dir, metrics, rows, thumbnail=thumbnail, title=f"scanlabel evaluation — {model_id}", extra_sections=extra
    )
    return metrics


def _pick_model_id(labels: pa.Table, labels_dir: str, bundle, model_id: str | None, model: str | None) -> str:
    """The model whose labels are evaluated: the bundle's, the one asked for, or the latest to write."""
    model_ids = sorted(set(labels.column("model_id").to_pylist()))
    if bundle is not None:
        if bundle.model_id not in model_ids:
            raise errors.BundleError(
                f"--model {model} is model_id {bundle.model_id}, but {labels_dir} holds labels of {model_ids}"
            )
        if model_id is not None and model_id != bundle.model_id:
            raise errors.BundleError(f"--model-id {model_id} contradicts --model {model} ({bundle.model_id})")
        return bundle.model_id
    if model_id is not None:
        return model_id
    if len(model_ids) > 1:
        latest = pc.max(labels.column("labeled_at")).as_py()
        return labels.filter(pc.equal(labels.column("labeled_at"), latest)).column("model_id")[0].as_py()
    return model_ids[0]


def _report_rows(labels: pa.Table, truth: pa.Table) -> list[dict[str, Any]]:
    """One report row per ground-truth image, ``missing`` where the labels dataset has none."""
    keep = [schema.IMAGE_ID, schema.URI, schema.LABEL, "confidence", "status", "error", "header_body_part"]
    keep += ["header_class", "header_agrees"]
    keep += [c for c in ("probabilities", "ood_score", "abstain_reason") if c in labels.column_names]
    # A dict join, not Table.join: Arrow's hash join cannot carry the list column ``probabilities``.
    by_id = {r[schema.IMAGE_ID]: r for r in labels.select(keep).to_pylist()}
    rows = []
    for t in truth.to_pylist():
        r = {**by_id.get(t[schema.IMAGE_ID], {}), **t}
        rows.append(
            report_row(
                image_id=r[schema.IMAGE_ID],
                uri=r.get(schema.URI) or "",
                true=r["true"],
                pred=r.get(schema.LABEL),
                confidence=r.get("confidence"),
                status=r.get("status") or "missing",
                error=r.get("error"),
                header_body_part=r.get("header_class") or r.get("header_body_part"),
                header_agrees=r.get("header_agrees"),
                probabilities=r.get("probabilities"),
                ood_score=r.get("ood_score"),
                abstain_reason=r.get("abstain_reason"),
            )
        )
    return rows


_DISAGREE = "DICOM header disagrees with the pixels"


def _sections(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows worth a look, by why: the report shows each non-empty list as its own section."""
    body_parts = {r["true"] for r in rows if r["true"] != schema.OTHER_LABEL}
    return {
        _DISAGREE: [r for r in rows if r.get("header_agrees") is False],
        "Non-radiographs ('other') labelled as a body part": [
            r for r in rows if r["true"] == schema.OTHER_LABEL and r["pred"] in body_parts
        ],
        "Body-part images the model abstained on": [
            r for r in rows if r["true"] != schema.OTHER_LABEL and r["pred"] == schema.OTHER_LABEL
        ],
    }


def _classes_from(labels: pa.Table, truth: pa.Table) -> list[str]:
    """Every class seen in predictions or ground truth, sorted, so the confusion matrix has no hidden rows."""
    preds = {x for x in labels.column(schema.LABEL).to_pylist() if x}
    trues = {x for x in truth.column("true").to_pylist() if x}
    return sorted(preds | trues)


def headline(metrics: dict[str, Any]) -> str:
    keys = ("n", "accuracy", "macro_f1", "n_unlabeled", "coverage", "abstention_rate", "accuracy_accepted")
    keys += ("ece_before", "ece_after", "ood_auroc")
    return json.dumps({k: metrics[k] for k in keys if k in metrics})
