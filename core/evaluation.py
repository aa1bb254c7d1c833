"""Evaluate a labels dataset against a manifest's ground truth and write the report.

Joined on ``image_id``.  Rows the model could not label stay in the denominator (they count as wrong), so a
pipeline that silently drops hard images cannot look better than it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import errors, labels_store, readers, schema
from core.dataset import read_manifest
from core.metrics import compute_metrics
from core.preprocess import normalize_intensity
from core.report import write_report


def thumbnail(uri: str, size: int = 128) -> np.ndarray:
    """A display thumbnail through the same reader and intensity normalisation as the model sees."""
    import cv2

    decoded = readers.read_image(uri)
    img = normalize_intensity(decoded.pixels, decoded.mask)
    h, w = img.shape
    s = size / max(h, w)
    img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return (img * 255).astype(np.uint8)


def evaluate(labels_dir: str, manifest_uri: str, out_dir: str | Path, model_id: str | None = None) -> dict[str, Any]:
    manifest = schema.validate_manifest(read_manifest(manifest_uri), require_label=True)
    labels = labels_store.read_labels(labels_dir)
    if labels.num_rows == 0:
        raise errors.ManifestError(f"no labels found in {labels_dir}")
    model_ids = sorted(set(labels.column("model_id").to_pylist()))
    if model_id is None:
        if len(model_ids) > 1:
            latest = pc.max(labels.column("labeled_at")).as_py()
            model_id = labels.filter(pc.equal(labels.column("labeled_at"), latest)).column("model_id")[0].as_py()
        else:
            model_id = model_ids[0]
    labels = labels.filter(pc.equal(labels.column("model_id"), model_id))
    truth = manifest.select([schema.IMAGE_ID, schema.LABEL]).rename_columns([schema.IMAGE_ID, "true"])
    keep = [schema.IMAGE_ID, schema.URI, schema.LABEL, "confidence", "status", "error", "header_body_part"]
    keep += ["header_class", "header_agrees"]
    joined = truth.join(labels.select(keep), schema.IMAGE_ID, join_type="left outer")
    classes = _classes_from(labels, truth)
    rows = []
    for r in joined.to_pylist():
        rows.append(
            {
                "image_id": r[schema.IMAGE_ID],
                "uri": r.get(schema.URI) or "",
                "true": r["true"],
                "pred": r.get(schema.LABEL),
                "confidence": r.get("confidence"),
                "status": r.get("status") or "missing",
                "error": r.get("error"),
                "header_body_part": r.get("header_class") or r.get("header_body_part"),
                "header_agrees": r.get("header_agrees"),
            }
        )
    known = set(classes)
    scored = [r for r in rows if r["true"] in known]
    metrics = compute_metrics([r["true"] for r in scored], [r["pred"] for r in scored], classes)
    metrics["model_id"] = model_id
    metrics["labels_dir"] = str(labels_dir)
    metrics["manifest"] = str(manifest_uri)
    metrics["rows_without_label_row"] = sum(1 for r in rows if r["status"] == "missing")
    metrics["ground_truth_outside_model_classes"] = len(rows) - len(scored)
    disagreements = [r for r in rows if r.get("header_agrees") is False]
    metrics["header_disagreements"] = len(disagreements)
    extra = {"DICOM header disagrees with the pixels": disagreements} if disagreements else None
    write_report(
        out_dir, metrics, rows, thumbnail=thumbnail, title=f"scanlabel evaluation — {model_id}", extra_sections=extra
    )
    return metrics


def _classes_from(labels: pa.Table, truth: pa.Table) -> list[str]:
    """Every class seen in predictions or ground truth, sorted, so the confusion matrix has no hidden rows."""
    preds = {x for x in labels.column(schema.LABEL).to_pylist() if x}
    trues = {x for x in truth.column("true").to_pylist() if x}
    return sorted(preds | trues)


def headline(metrics: dict[str, Any]) -> str:
    return json.dumps({k: metrics[k] for k in ("n", "accuracy", "macro_f1", "n_unlabeled") if k in metrics})
