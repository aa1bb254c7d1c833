"""The review queue: the labels most worth a human look, and the way their corrections become training data.

``scanlabel review --labels DIR [--manifest FILE] --out DIR`` writes

* ``review.csv`` - one row per queued image, worst first, with an empty ``corrected_label`` column for the
  reviewer to fill in (a spreadsheet is what reviewers already use); and
* ``review.html`` - the same rows as a contact sheet (one self-contained file: inline CSS, thumbnails as data
  URIs, no scripts), numbered like the CSV so a reviewer can look in one and type in the other.

Worst first means: (1) labels that disagree with the DICOM header, or with the manifest's own ``label`` when
it has one - one of the two is wrong; (2) abstentions (label ``other``: the model would not commit); (3) the
rest by ascending confidence.  Only ``ok`` rows are queued: an unreadable or out-of-scope file has no label
to correct.

``scanlabel review --apply review.csv --out corrections.parquet [--base-manifest TRAIN] [--model BUNDLE]``
turns the filled-in CSV into a manifest in the project schema (``uri``, ``image_id``, ``label``) that
``scanlabel train`` reads.  With ``--base-manifest`` the corrections replace those rows of the earlier training
manifest (matched by ``image_id``) and the rest are appended, so the next fine-tune trains on both.  Labels are
validated against the bundle's classes (``--model``) or the project's body parts, plus ``other``; an unknown
label refuses the whole file, naming the rows.

Privacy: the CSV and the page carry only columns of the labels schema, none of which is identifying (the
manifest columns a labeling run kept with ``--keep-columns`` are deliberately left out: they may be anything).
Spreadsheet formula injection: text cells starting with ``= + - @`` are prefixed with ``'`` on the way out and
the prefix is removed on the way back in.
"""

from __future__ import annotations

import csv
import html
import io
import math
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

REVIEW_CSV = "review.csv"
REVIEW_HTML = "review.html"
CORRECTED = "corrected_label"
CSV_COLUMNS = (
    "rank",
    "image_id",
    "uri",
    "label",
    "confidence",
    "abstain_reason",
    "ood_score",
    "header_body_part",
    "header_class",
    "manifest_label",
    "review_reason",
    "model_id",
    CORRECTED,
)
# Why a row is in the queue, in priority order.
HEADER_DISAGREES = "header_disagrees"
MANIFEST_DISAGREES = "manifest_disagrees"
ABSTAINED = "abstained"
LOW_CONFIDENCE = "lowest_confidence"
_PRIORITY = {HEADER_DISAGREES: 0, MANIFEST_DISAGREES: 0, ABSTAINED: 1, LOW_CONFIDENCE: 2}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_LABELS_COLUMNS = (
    schema.IMAGE_ID,
    schema.URI,
    schema.LABEL,
    "confidence",
    "status",
    "header_body_part",
    "header_class",
    "header_agrees",
    "model_id",
    "labeled_at",
    "ood_score",
    "abstain_reason",
)


# --- building the queue ---------------------------------------------------------------------------------------
def _latest_model(labels: pa.Table) -> str:
    """The model that labelled most recently: the queue is about the labels the index holds now."""
    latest = pc.max(labels.column("labeled_at")).as_py()
    return labels.filter(pc.equal(labels.column("labeled_at"), latest)).column("model_id")[0].as_py()


def _reason(row: dict[str, Any]) -> str:
    if row.get("header_agrees") is False:
        return HEADER_DISAGREES
    manifest_label = row.get("manifest_label")
    if manifest_label and row.get(schema.LABEL) not in (None, schema.OTHER_LABEL) and manifest_label != row["label"]:
        return MANIFEST_DISAGREES
    if row.get("abstain_reason") or row.get(schema.LABEL) == schema.OTHER_LABEL:
        return ABSTAINED
    return LOW_CONFIDENCE


def _confidence_key(row: dict[str, Any]) -> float:
    c = row.get("confidence")
    return float(c) if isinstance(c, (int, float)) and math.isfinite(c) else -1.0


def build_queue(
    labels_dir: str, manifest: str | None = None, model_id: str | None = None, limit: int | None = 500
) -> list[dict[str, Any]]:
    """The ``ok`` rows of one model's labels, worst first, at most ``limit`` of them (None: all).

    ``manifest`` restricts the queue to its rows and, when it has ``label``, compares against it."""
    table = labels_store.read_labels(labels_dir)
    if table.num_rows == 0:
        raise errors.ManifestError(f"no labels found in {labels_dir}")
    table = table.select([c for c in _LABELS_COLUMNS if c in table.column_names])
    model_id = model_id or _latest_model(table)
    table = table.filter(pc.equal(table.column("model_id"), model_id))
    if table.num_rows == 0:
        raise errors.ManifestError(f"{labels_dir} has no labels of model_id {model_id}")
    table = table.filter(pc.equal(table.column("status"), schema.STATUS_OK))
    manifest_labels: dict[str, str | None] | None = None
    if manifest is not None:
        from core.io.manifests import read_manifest

        m = schema.validate_manifest(read_manifest(manifest))
        ids = m.column(schema.IMAGE_ID).to_pylist()
        labels = m.column(schema.LABEL).to_pylist() if schema.LABEL in m.column_names else [None] * len(ids)
        manifest_labels = dict(zip(ids, labels, strict=True))
        table = table.filter(pc.is_in(table.column(schema.IMAGE_ID), pa.array(ids, pa.string())))
    rows = table.to_pylist()
    for r in rows:
        r["manifest_label"] = manifest_labels.get(r[schema.IMAGE_ID]) if manifest_labels else None
        r["review_reason"] = _reason(r)
    rows.sort(key=lambda r: (_PRIORITY[r["review_reason"]], _confidence_key(r), r[schema.IMAGE_ID]))
    if limit is not None and limit > 0:
        rows = rows[:limit]
    for i, r in enumerate(rows, start=1):
        r["rank"] = i
    return rows


# --- writing it -----------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _uncell(text: str | None) -> str:
    text = (text or "").strip()
    if text.startswith("'") and text[1:].startswith(_FORMULA_START):
        return text[1:]
    return text


def render_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = CSV_COLUMNS) -> bytes:
    """The rows as CSV for a spreadsheet: ``columns`` in order, ``corrected_label`` left empty for the reviewer."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c)) if c != CORRECTED else "" for c in columns])
    return buf.getvalue().encode("utf-8")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}.note{color:#555;font-size:13px;max-width:960px}
code{background:#eee;padding:1px 4px;border-radius:3px}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border-radius:3px;color:#fff;font-size:12px}
.sheet{display:flex;flex-wrap:wrap;gap:8px;margin-top:16px}
figure{margin:0;width:150px;background:#fff;border:3px solid #ccc;border-radius:4px;padding:4px;box-sizing:border-box}
figure img{display:block;margin:0 auto;max-width:136px;max-height:136px}
.placeholder{width:136px;height:136px;margin:0 auto;background:#9e9e9e;color:#fff;font-size:10px;overflow:hidden;
  word-break:break-word;padding:4px;box-sizing:border-box}
figcaption{font-size:11px;line-height:1.35;margin-top:4px;word-break:break-word}
figcaption b{font-size:12px}figcaption .id{display:block;color:#777;font-family:monospace}
.header_disagrees,.manifest_disagrees{border-color:#d32f2f}.abstained{border-color:#f9a825}
.lowest_confidence{border-color:#90a4ae}
.legend .header_disagrees{background:#d32f2f}.legend .abstained{background:#f9a825}
.legend .lowest_confidence{background:#90a4ae}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _figure(row: dict[str, Any], thumbnail: Callable[[str], np.ndarray] | None) -> str:
    from core.trust.report import encode_thumbnail

    try:
        if thumbnail is None:
            raise ValueError("no thumbnail loader")
        visual = f'<img src="{encode_thumbnail(thumbnail(str(row[schema.URI])), 136)}" alt="{_e(row["image_id"])}">'
    except Exception as exc:  # noqa: BLE001 - one unreadable image must not sink the page
        visual = f'<div class="placeholder">{_e(type(exc).__name__)}</div>'
    conf = row.get("confidence")
    conf_text = f" ({conf:.2f})" if isinstance(conf, (int, float)) and math.isfinite(conf) else ""
    lines = [f"<b>#{row['rank']} {_e(row.get('label'))}{conf_text}</b>"]
    if row.get("abstain_reason"):
        lines.append(f"abstained: {_e(row['abstain_reason']).replace('_', ' ')}")
    if row["review_reason"] != ABSTAINED or not row.get("abstain_reason"):
        lines.append(_e(row["review_reason"].replace("_", " ")))
    header = row.get("header_class") or row.get("header_body_part")
    if header:
        lines.append(f"header: {_e(header)}")
    if row.get("manifest_label"):
        lines.append(f"manifest: {_e(row['manifest_label'])}")
    caption = "<br>".join(lines) + f'<span class="id">{_e(row["image_id"])}</span>'
    return (
        f'<figure class="{_e(row["review_reason"])}" title="{_e(row[schema.URI])}">{visual}'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def render_html(
    rows: Sequence[dict[str, Any]], thumbnail: Callable[[str], np.ndarray] | None, title: str, csv_name: str
) -> str:
    counts = Counter(r["review_reason"] for r in rows)
    ordered = sorted(counts.items(), key=lambda kv: _PRIORITY[kv[0]])
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in ordered)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    legend = "".join(
        f'<span class="{k}">{k.replace("_", " ")}</span>' for k in (HEADER_DISAGREES, ABSTAINED, LOW_CONFIDENCE)
    )
    figures = "\n".join(_figure(r, thumbnail) for r in rows)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            f'<p class="note">generated {generated} · {len(rows)} image(s) to review, worst first: {_e(summary)}</p>',
            f'<p class="legend">{legend}</p>',
            (
                f'<p class="note">Type the right body part into the <code>{CORRECTED}</code> column of '
                f"<code>{_e(csv_name)}</code> (row <code>rank</code> = the number on each image; leave it empty "
                f"when the label is right), then: <code>scanlabel review --apply {_e(csv_name)} --out "
                "corrections.parquet --base-manifest TRAIN.parquet</code> and train on the result.</p>"
            ),
            f'<div class="sheet">\n{figures}\n</div>',
            "</body></html>\n",
        ]
    )


def write_review(
    labels_dir: str,
    out_dir: str,
    manifest: str | None = None,
    model_id: str | None = None,
    limit: int | None = 500,
    thumbnail: Callable[[str], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write ``review.csv`` and ``review.html`` (atomically) and return a summary."""
    if thumbnail is None:
        from core.trust.evaluation import thumbnail as default_thumbnail

        thumbnail = default_thumbnail
    rows = build_queue(labels_dir, manifest, model_id, limit)
    model = rows[0]["model_id"] if rows else (model_id or "")
    csv_path, html_path = storage.join(out_dir, REVIEW_CSV), storage.join(out_dir, REVIEW_HTML)
    storage.write_bytes_atomic(csv_path, render_csv(rows))
    page = render_html(rows, thumbnail, f"scanlabel review queue — {model}", REVIEW_CSV)
    storage.write_bytes_atomic(html_path, page.encode("utf-8"))
    return {
        "rows": len(rows),
        "reasons": dict(Counter(r["review_reason"] for r in rows)),
        "csv": csv_path,
        "html": html_path,
        "model_id": model,
    }


# --- applying corrections -------------------------------------------------------------------------------------
def allowed_labels(model: str | None = None, base: pa.Table | None = None) -> list[str]:
    """What a correction may say: the bundle's classes (or the project's body parts), ``other``, and the labels
    the base training manifest already uses."""
    if model is not None:
        from core.model.bundle import load_bundle

        classes = set(load_bundle(model).classes)
    else:
        classes = set(schema.BODY_PARTS)
    classes.add(schema.OTHER_LABEL)
    if base is not None:
        classes |= {x for x in base.column(schema.LABEL).to_pylist() if x}
    return sorted(classes)


def read_corrections(csv_uri: str, allowed: Sequence[str]) -> pa.Table:
    """The filled-in rows of a review CSV as a manifest table; refuses anything it cannot trust whole."""
    try:
        text = storage.read_bytes(csv_uri).decode("utf-8-sig")  # spreadsheets like to add a BOM
    except FileNotFoundError as e:
        raise errors.ManifestError(f"review file {csv_uri} does not exist") from e
    except UnicodeDecodeError as e:
        raise errors.ManifestError(f"review file {csv_uri} is not UTF-8 text (save it as CSV UTF-8)") from e
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in (schema.IMAGE_ID, schema.URI, CORRECTED) if c not in (reader.fieldnames or [])]
    if missing:
        raise errors.ManifestError(
            f"{csv_uri} lacks column(s) {missing}: is it a review.csv written by `scanlabel review`?"
        )
    allowed_set = set(allowed)
    ids, uris, labels, unknown = [], [], [], []
    for line, row in enumerate(reader, start=2):  # line 1 is the header
        corrected = _uncell(row.get(CORRECTED)).lower()
        if not corrected:
            continue
        if corrected not in allowed_set:
            unknown.append(f"line {line}: {corrected!r}")
            continue
        image_id, uri = _uncell(row.get(schema.IMAGE_ID)), _uncell(row.get(schema.URI))
        if not image_id or not uri:
            raise errors.ManifestError(f"{csv_uri} line {line}: a correction without image_id or uri")
        ids.append(image_id)
        uris.append(uri)
        labels.append(corrected)
    if unknown:
        raise errors.ManifestError(
            f"{csv_uri}: {len(unknown)} corrected_label value(s) are not known labels ({'; '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}); allowed: {', '.join(allowed)}"
        )
    if not ids:
        raise errors.ManifestError(f"{csv_uri} has no corrected_label filled in: nothing to apply")
    table = pa.table({schema.URI: uris, schema.IMAGE_ID: ids, schema.LABEL: labels}, schema=schema.MANIFEST_SCHEMA)
    return schema.validate_manifest(table, require_label=True)  # refuses duplicate image_ids, naming them


def apply_corrections(
    csv_uri: str, out: str, base_manifest: str | None = None, model: str | None = None
) -> dict[str, Any]:
    """Write the corrections (merged over ``base_manifest`` when given) as a training manifest at ``out``."""
    from core.io.manifests import read_manifest

    base = None
    if base_manifest is not None:
        base = schema.validate_manifest(read_manifest(base_manifest), require_label=True)
        base = base.select(list(schema.MANIFEST_SCHEMA.names))
    corrections = read_corrections(csv_uri, allowed_labels(model, base))
    replaced = 0
    if base is not None:
        corrected_ids = pa.array(corrections.column(schema.IMAGE_ID).to_pylist(), pa.string())
        overridden = pc.is_in(base.column(schema.IMAGE_ID), corrected_ids)
        replaced = int(pc.sum(overridden).as_py() or 0)
        kept = base.filter(pc.invert(overridden))
        merged = pa.concat_tables([t.cast(schema.MANIFEST_SCHEMA) for t in (kept, corrections)])
    else:
        merged = corrections
    merged = schema.validate_manifest(merged, require_label=True).cast(schema.MANIFEST_SCHEMA)
    buf = pa.BufferOutputStream()
    pq.write_table(merged, buf)
    storage.write_bytes_atomic(out, buf.getvalue().to_pybytes())
    return {
        "corrections": corrections.num_rows,
        "replaced": replaced,
        "added": corrections.num_rows - replaced,
        "rows": merged.num_rows,
        "per_label": dict(Counter(corrections.column(schema.LABEL).to_pylist())),
        "out": out,
    }
