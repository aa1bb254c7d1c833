"""The audit of header labels: every image whose DICOM header and model disagree, for people to settle.

``scanlabel audit --labels DIR --manifest FILE --out DIR`` compares a labels dataset (``scanlabel label``) with the
header-labelled manifest it came from (``scanlabel manifest --label-from-header``: ``label`` is the header's class,
``label_source`` the attribute it came from).  Compared are the rows where both name a body part: the model's
``ok`` rows that did not abstain, whose header maps onto a class.  It writes

* ``audit.parquet`` (:data:`core.io.schema.AUDIT_SCHEMA`) - the disagreements, most confident model first: the
  top of the list is where the header is most likely wrong;
* ``audit.csv`` - the same rows with an empty ``corrected_label`` column; filled in, it is what
  ``scanlabel review --apply`` reads (``image_id``, ``uri``, ``corrected_label``), as a review queue is;
* ``audit.html`` - a contact sheet with thumbnails (the review page's, :mod:`core.trust.review`) after two tables:
  the estimated share of wrong headers per header class and per ``label_source``;
* ``summary.json`` - the counts and shares.

The estimated share of wrong headers is the share of compared rows the model disagrees with: it counts the
model's own errors as wrong headers too, so it is as good as the model (its accuracy is measured on sample
archives by ``python -m jobs.bench weak-labels``).

Privacy: only labels-schema and header-manifest columns, none identifying (docs/dicom.md#privacy-phi).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import errors
from core.io import schema, storage
from core.labeling import store as labels_store
from core.trust import review

AUDIT_PARQUET = "audit.parquet"
AUDIT_CSV = "audit.csv"
AUDIT_HTML = "audit.html"
AUDIT_SUMMARY = "summary.json"
CSV_COLUMNS = (*schema.AUDIT_SCHEMA.names, review.CORRECTED)
_LABELS_COLUMNS = (schema.IMAGE_ID, schema.URI, schema.LABEL, "confidence", "status", "model_id", "labeled_at")


def _header_labels(manifest: str) -> dict[str, tuple[str | None, str | None, str | None]]:
    """image_id -> (header class, label_source, header_body_part) from a header-labelled manifest."""
    from core.io.manifests import read_manifest

    m = schema.validate_manifest(read_manifest(manifest))
    if schema.LABEL not in m.column_names:
        raise errors.ManifestError(
            f"manifest {manifest} has no label column: audit a manifest from "
            "`scanlabel manifest --root DIR --label-from-header`"
        )
    ids = m.column(schema.IMAGE_ID).to_pylist()
    n = len(ids)
    cols = [m.column(c).to_pylist() if c in m.column_names else [None] * n
            for c in (schema.LABEL, "label_source", "header_body_part")]  # fmt: skip
    return dict(zip(ids, zip(*cols, strict=True), strict=True))


def _model_rows(labels_dir: str, model_id: str | None) -> list[dict[str, Any]]:
    table = labels_store.read_labels(labels_dir)
    if table.num_rows == 0:
        raise errors.ManifestError(f"no labels found in {labels_dir}")
    table = table.select([c for c in _LABELS_COLUMNS if c in table.column_names])
    model_id = model_id or review._latest_model(table)
    table = table.filter(pc.equal(table.column("model_id"), model_id))
    if table.num_rows == 0:
        raise errors.ManifestError(f"{labels_dir} has no labels of model_id {model_id}")
    return table.filter(pc.equal(table.column("status"), schema.STATUS_OK)).to_pylist()


def _shares(compared: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    n = Counter(r[key] for r in compared)
    wrong = Counter(r[key] for r in compared if r["disagrees"])
    return {
        k: {"compared": n[k], "disagree": wrong.get(k, 0), "estimated_wrong_share": round(wrong.get(k, 0) / n[k], 4)}
        for k in sorted(n)
    }


def build_audit(
    labels_dir: str, manifest: str, model_id: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The disagreements (ranked, most confident model first) and the summary (counts, shares per class/source)."""
    header = _header_labels(manifest)
    rows = [r for r in _model_rows(labels_dir, model_id) if r[schema.IMAGE_ID] in header]
    compared = []
    for r in rows:
        cls, source, body_part = header[r[schema.IMAGE_ID]]
        if cls is None or r[schema.LABEL] in (None, schema.OTHER_LABEL):
            continue
        r.update(header_class=cls, label_source=source, header_body_part=body_part)
        r["disagrees"] = r[schema.LABEL] != cls
        compared.append(r)
    flagged = [r for r in compared if r["disagrees"]]
    flagged.sort(key=lambda r: (-review._confidence_key(r), r[schema.IMAGE_ID]))
    for i, r in enumerate(flagged, start=1):
        r["rank"] = i
    summary = {
        "model_id": rows[0]["model_id"] if rows else model_id,
        "manifest_rows": len(header),
        "header_labelled": sum(v[0] is not None for v in header.values()),
        "model_ok_rows": len(rows),
        "compared": len(compared),
        "disagree": len(flagged),
        "estimated_wrong_share": round(len(flagged) / len(compared), 4) if compared else None,
        "per_header_class": _shares(compared, "header_class"),
        "per_label_source": _shares(compared, "label_source"),
    }
    return flagged, summary


def _table_html(title: str, shares: dict[str, dict[str, Any]]) -> str:
    e = review._e
    body = "".join(
        f"<tr><td>{e(k)}</td><td>{v['compared']}</td><td>{v['disagree']}</td>"
        f"<td>{100 * v['estimated_wrong_share']:.1f} %</td></tr>"
        for k, v in shares.items()
    )
    head = "<tr><th>{}</th><th>compared</th><th>model disagrees</th><th>estimated wrong headers</th></tr>"
    return f'<table class="shares">{head.format(e(title))}{body}</table>'


_CSS = """
table.shares{border-collapse:collapse;margin:8px 24px 8px 0;display:inline-table;font-size:13px;background:#fff}
table.shares th,table.shares td{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.shares th:first-child,table.shares td:first-child{text-align:left}
"""


def render_html(rows: Sequence[dict[str, Any]], summary: dict[str, Any], thumbnail: Callable | None) -> str:
    e = review._e
    for r in rows:
        r["review_reason"] = review.HEADER_DISAGREES
    share = summary["estimated_wrong_share"]
    title = f"scanlabel header audit — {summary['model_id']}"
    figures = "\n".join(review._figure(r, thumbnail) for r in rows)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(title)}</title><style>{review._CSS}{_CSS}</style></head><body>",
            f"<h1>{e(title)}</h1>",
            (
                f'<p class="note">generated {generated} · {summary["compared"]} image(s) where header and model both '
                f"name a body part; they disagree on {summary['disagree']}"
                + (f" ({100 * share:.1f} %)" if share is not None else "")
                + ", listed below, most confident model first.</p>"
            ),
            _table_html("header class", summary["per_header_class"]),
            _table_html("label source", summary["per_label_source"]),
            (
                f'<p class="note">Type the right body part into the <code>{review.CORRECTED}</code> column of '
                f"<code>{AUDIT_CSV}</code> (row <code>rank</code> = the number on each image), then: "
                f"<code>scanlabel review --apply {AUDIT_CSV} --out corrections.parquet --base-manifest "
                "TRAIN.parquet</code>.</p>"
            ),
            f'<div class="sheet">\n{figures}\n</div>',
            "</body></html>\n",
        ]
    )


def _parquet(rows: Sequence[dict[str, Any]]) -> bytes:
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema.AUDIT_SCHEMA}
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pydict(cols, schema=schema.AUDIT_SCHEMA), sink)
    return sink.getvalue().to_pybytes()


def write_audit(
    labels_dir: str,
    manifest: str,
    out_dir: str,
    model_id: str | None = None,
    thumbnail: Callable[[str], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write the four files (each atomically); returns the summary with their paths."""
    if thumbnail is None:
        from core.trust.evaluation import thumbnail as default_thumbnail

        thumbnail = default_thumbnail
    rows, summary = build_audit(labels_dir, manifest, model_id)
    paths = {name: storage.join(out_dir, name) for name in (AUDIT_PARQUET, AUDIT_CSV, AUDIT_HTML, AUDIT_SUMMARY)}
    storage.write_bytes_atomic(paths[AUDIT_PARQUET], _parquet(rows))
    storage.write_bytes_atomic(paths[AUDIT_CSV], review.render_csv(rows, CSV_COLUMNS))
    storage.write_bytes_atomic(paths[AUDIT_HTML], render_html(rows, summary, thumbnail).encode("utf-8"))
    summary = {**summary, "files": paths}
    storage.write_bytes_atomic(paths[AUDIT_SUMMARY], json.dumps(summary, indent=2).encode("utf-8"))
    return summary
