"""Evaluation report: ``metrics.json`` for machines, ``confusion_matrix.png`` and ``report.html`` for people.

When the metrics carry trust figures (:mod:`core.trust.calibration`) the page gets a *Trust* section and
``reliability.png`` (the reliability diagram before and after calibration) is written too.

The HTML page is a single self-contained file (inline CSS, images as base64 data URIs, no scripts, no
external resources) so it can be mailed, attached to a ticket or opened from an air-gapped reading room
without breaking.  Its main job is auditing: the contact sheet shows misclassified images first, most
confident mistakes leading, because those are what a radiologist needs to look at.

Rendering a report must never fail because of one bad image: a thumbnail loader that raises (or returns
nothing usable) produces a grey placeholder carrying the error text instead.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import cv2
import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: cluster nodes and CI have no display
import matplotlib.pyplot as plt  # must come after matplotlib.use

THUMB_MAX_PX = 128
_MAX_ERROR_CHARS = 300

METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion_matrix.png"
RELIABILITY_FILE = "reliability.png"
REPORT_FILE = "report.html"

# The columns of one report row, in order: what ``scanlabel evaluate`` and training's validation report both write.
ROW_KEYS = (
    "image_id",
    "uri",
    "true",
    "pred",
    "confidence",
    "status",
    "error",
    "header_body_part",
    "header_agrees",
    "probabilities",
    "ood_score",
    "abstain_reason",
)


def report_row(**values: object) -> dict[str, object]:
    """One row of a report: every key of :data:`ROW_KEYS` (None where not given), nothing else."""
    unknown = set(values) - set(ROW_KEYS)
    if unknown:
        raise ValueError(f"not report columns: {sorted(unknown)}")
    return {k: values.get(k) for k in ROW_KEYS}


# --- atomic writes ------------------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory so a crash never leaves a half-written report behind."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    # os.open with 0o666 lets the umask decide permissions, as a plain open() would (mkstemp forces 0600,
    # which would hide the report from the team that reads it).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _jsonable(obj: object) -> object:
    """Make numpy scalars/arrays and non-finite floats JSON-safe; callers may hand in hand-built metrics."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # NaN/inf are not JSON; strict parsers reject the whole file
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --- confusion matrix figure --------------------------------------------------------------------------------
def _num(metrics: Mapping, key: str) -> float:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def render_confusion_png(metrics: Mapping, title: str = "scanlabel evaluation") -> bytes:
    """Draw the confusion matrix with row-normalised colours, so a rare class's errors are as visible as a
    common one's, while the cell text keeps the raw counts a reader can check."""
    classes = [str(c) for c in metrics.get("classes") or []]
    cm = np.asarray(metrics.get("confusion_matrix") or np.zeros((0, 0)), dtype=np.int64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"confusion_matrix shape {cm.shape} does not match {k} classes")
    # Normalise by support where known so rows without a prediction (not in the matrix) still dilute the
    # row: the diagonal colour then equals the recall printed in the per-class table.
    per_class = metrics.get("per_class") or {}
    support = np.array([(per_class.get(c) or {}).get("support") or 0 for c in classes], dtype=np.float64)
    rows = np.maximum(cm.sum(axis=1), support).reshape(k, 1)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows != 0)

    side = max(4.5, 0.55 * k + 3.0)
    fontsize = 10 if k <= 12 else max(5, 10 - (k - 12) // 3)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=110)
    try:
        if k:
            im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
            cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            cbar.set_label("fraction of true class")
            for i in range(k):
                for j in range(k):
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour, fontsize=fontsize)
            ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=fontsize)
            ax.set_yticks(range(k), classes, fontsize=fontsize)
        else:
            ax.text(0.5, 0.5, "no classes to show", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        n_unlabeled = int(_num(metrics, "n_unlabeled"))
        xlabel = "predicted"
        if n_unlabeled:
            xlabel += f"\n({n_unlabeled} row(s) without a prediction not shown)"
        ax.set_xlabel(xlabel)
        ax.set_ylabel("true")
        ax.set_title(
            f"{title}\naccuracy {_num(metrics, 'accuracy'):.3f} · macro-F1 {_num(metrics, 'macro_f1'):.3f}"
            f" · n={int(_num(metrics, 'n'))}"
        )
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


# --- reliability diagram ------------------------------------------------------------------------------------
def render_reliability_png(metrics: Mapping, title: str = "scanlabel evaluation") -> bytes:
    """Accuracy against confidence per bin (``metrics["reliability"]``, see :mod:`core.trust.calibration`),
    before and after calibration side by side: bars on the diagonal are honest confidence, the red part of a
    bar is the gap that ECE averages (weighted by the bin's row count, printed above it)."""
    panels = [(k, metrics["reliability"][k]) for k in ("before", "after") if (metrics.get("reliability") or {}).get(k)]
    if not panels:
        raise ValueError("metrics have no reliability bins to draw")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0), dpi=110, squeeze=False)
    try:
        for ax, (which, rel) in zip(axes[0], panels, strict=True):
            edges = np.asarray(rel["edges"], np.float64)
            width = np.diff(edges)
            centers = edges[:-1] + width / 2
            acc = np.array([np.nan if a is None else a for a in rel["accuracy"]], np.float64)
            conf = np.array([np.nan if c is None else c for c in rel["confidence"]], np.float64)
            counts = np.asarray(rel["counts"], np.int64)
            filled = counts > 0
            ax.bar(centers[filled], acc[filled], width=width[filled], color="#1976d2", edgecolor="white",
                   label="accuracy")  # fmt: skip
            gap_lo = np.minimum(acc, conf)[filled]
            ax.bar(centers[filled], np.abs(conf - acc)[filled], bottom=gap_lo, width=width[filled],
                   color="#e53935", alpha=0.45, edgecolor="none", label="gap to confidence")  # fmt: skip
            for x, a, n in zip(centers[filled], acc[filled], counts[filled], strict=True):
                ax.text(x, min(a, 0.95) + 0.02, str(n), ha="center", va="bottom", fontsize=7, color="#333")
            ax.plot([0, 1], [0, 1], "--", color="#555", linewidth=1, label="perfect calibration")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.05)
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            key = "ece_before" if which == "before" else "ece_after"
            temp = metrics.get("temperature")
            sub = f" (T={temp:.3g} undone)" if which == "before" and isinstance(temp, (int, float)) else ""
            ax.set_title(f"{which} calibration{sub}\nECE {_fmt(metrics.get(key))} · n={int(counts.sum())}")
            ax.legend(loc="upper left", fontsize=8)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


# --- thumbnails ---------------------------------------------------------------------------------------------
def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    # Loaders are asked for uint8, but raw 12/16-bit X-ray pixels are common; stretch rather than wrap.
    f = img.astype(np.float64)
    finite = np.isfinite(f)
    if not finite.any():
        return np.zeros(img.shape, dtype=np.uint8)
    lo, hi = float(f[finite].min()), float(f[finite].max())
    f = np.where(finite, f, lo)
    scaled = (f - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(f)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_thumbnail(img: np.ndarray, max_px: int = THUMB_MAX_PX) -> str:
    """Downscale to at most ``max_px`` on the long side and return a PNG data URI.

    Three/four-channel arrays are taken as RGB(A), the numpy convention of image loaders, and swapped to
    the BGR order cv2 encodes.  Never upscales: a tiny image stays honest about its size.
    """
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ValueError(f"thumbnail must be a non-empty 2-D or 3-D array, got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] not in (3, 4):
        raise ValueError(f"thumbnail has {arr.shape[2]} channels; expected 1, 3 or 4")
    arr = _to_uint8(arr)
    if arr.ndim == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    h, w = arr.shape[:2]
    scale = max_px / max(h, w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        arr = cv2.resize(arr, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise ValueError("cv2.imencode failed to produce a PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


# --- HTML ---------------------------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "—"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _kind(row: Mapping) -> str:
    """``wrong`` (including rows with no prediction, which metrics count as wrong), ``right`` or ``unknown``
    (no ground truth, e.g. header-disagreement rows from an unlabelled manifest)."""
    true, pred = row.get("true"), row.get("pred")
    if _is_missing(true):
        return "unknown"
    if _is_missing(pred) or str(pred) != str(true):
        return "wrong"
    return "right"


def _confidence(row: Mapping) -> float | None:
    c = row.get("confidence")
    if isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c):
        return float(c)
    return None


def _order(rows: Sequence[Mapping]) -> list[Mapping]:
    """Mistakes first, most confident first (those are the dangerous ones); then correct rows, least
    confident first (borderline calls); rows without ground truth last.  Stable within ties."""

    def key(item: tuple[int, Mapping]) -> tuple:
        pos, row = item
        kind = _kind(row)
        conf = _confidence(row)
        group = {"wrong": 0, "right": 1, "unknown": 2}[kind]
        if conf is None:
            conf_key = math.inf  # missing confidence sorts after any scored row in its group
        else:
            conf_key = -conf if kind == "wrong" else conf
        return group, conf_key, pos

    return [row for _, row in sorted(enumerate(rows), key=key)]


def _caption(row: Mapping) -> str:
    pred = row.get("pred")
    conf = _confidence(row)
    if _is_missing(pred):
        pred_text = "—"
        status = row.get("status")
        error = row.get("error")
        detail = ", ".join(str(x) for x in (status, error) if not _is_missing(x) and x != "")
        if detail:
            pred_text += f" [{detail}]"
    else:
        pred_text = f"{pred} ({conf:.2f})" if conf is not None else str(pred)
    true = row.get("true")
    parts = [f"pred: {pred_text}", f"true: {'—' if _is_missing(true) else true}"]
    header = row.get("header_body_part")
    if not _is_missing(header) and header != "":
        parts.append(f"header: {header}")
    return " / ".join(parts)


def _figure(row: Mapping, thumbnail: Callable[[str], np.ndarray] | None) -> str:
    kind = _kind(row)
    uri = row.get("uri")
    if thumbnail is None:
        image = None
        error = "no thumbnail loader"
    else:
        try:
            if _is_missing(uri) or uri == "":
                raise ValueError("row has no uri")
            loaded = thumbnail(str(uri))
            if loaded is None:
                raise ValueError("thumbnail loader returned None")
            image, error = encode_thumbnail(loaded), None
        except Exception as exc:  # noqa: BLE001 - one unreadable image must not sink the whole report
            image, error = None, _short_error(exc)
    if image is not None:
        visual = f'<img src="{image}" alt="{_e(row.get("image_id"))}">'
    else:
        visual = f'<div class="placeholder">{_e(error)}</div>'
    return (
        f'<figure class="thumb {kind}" data-kind="{kind}" title="{_e(uri)}">{visual}'
        f'<figcaption><span class="cap">{_e(_caption(row))}</span>'
        f'<span class="id">{_e(row.get("image_id"))}</span></figcaption></figure>'
    )


def _contact_sheet(rows: Sequence[Mapping], thumbnail: Callable[[str], np.ndarray] | None, max_thumbnails: int) -> str:
    ordered = _order(rows)
    shown = ordered[: max(0, max_thumbnails)]
    n_wrong = sum(1 for r in rows if _kind(r) == "wrong")
    summary = (
        f'<p class="note">showing {len(shown)} of {len(rows)} row(s); {n_wrong} misclassified or without a '
        f"prediction, shown first with a red border (most confident first).</p>"
    )
    if not shown:
        return summary
    figures = "\n".join(_figure(r, thumbnail) for r in shown)
    return f'{summary}\n<div class="sheet">\n{figures}\n</div>'


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.generated,.note{color:#666;font-size:13px}
.kpis{display:flex;gap:16px;flex-wrap:wrap;margin-top:16px}
.kpi{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:110px}
.kpi .v{display:block;font-size:26px;font-weight:600}.kpi .k{color:#666;font-size:13px}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #ddd;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f0f0f0}
td.low{background:#fdecea}
img.cm{max-width:100%;height:auto;background:#fff;border:1px solid #ddd}
.sheet{display:flex;flex-wrap:wrap;gap:8px}
figure.thumb{margin:0;width:140px;background:#fff;border:3px solid #ccc;border-radius:4px;padding:4px;
  box-sizing:border-box}
figure.thumb.wrong{border-color:#d32f2f}figure.thumb.right{border-color:#9ccc65}
figure.thumb img{display:block;margin:0 auto;max-width:128px;max-height:128px}
.placeholder{width:128px;height:128px;margin:0 auto;background:#9e9e9e;color:#fff;font-size:10px;
  overflow:hidden;word-break:break-word;padding:4px;box-sizing:border-box}
figcaption{font-size:11px;line-height:1.3;margin-top:4px;word-break:break-word}
figcaption .id{display:block;color:#777;font-family:monospace}
"""


def _per_class_table(metrics: Mapping) -> str:
    per_class = metrics.get("per_class") or {}
    classes = [str(c) for c in (metrics.get("classes") or per_class.keys())]
    lines = [
        (
            "<table><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
            "</tr></thead><tbody>"
        )
    ]
    for c in classes:
        s = per_class.get(c) or {}
        f1 = s.get("f1")
        low = ' class="low"' if isinstance(f1, (int, float)) and f1 < 0.5 and s.get("support") else ""
        lines.append(
            f"<tr><td>{_e(c)}</td><td>{_fmt(s.get('precision'))}</td><td>{_fmt(s.get('recall'))}</td>"
            f"<td{low}>{_fmt(f1)}</td><td>{_e(s.get('support', '—'))}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _pct(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{100 * value:.1f}%"
    return "—"


def _trust_section(metrics: Mapping, reliability_png: bytes | None) -> list[str]:
    """Calibration, abstention and OOD separation (core/trust/metrics.py); empty for metrics without."""
    if "coverage" not in metrics:
        return []
    kpis = [
        ("coverage", _pct(metrics.get("coverage"))),
        ("accuracy on accepted", _fmt(metrics.get("accuracy_accepted"))),
        ("abstention", _pct(metrics.get("abstention_rate"))),
        ("ECE before calibration", _fmt(metrics.get("ece_before"))),
        ("ECE after calibration", _fmt(metrics.get("ece_after"))),
    ]
    if metrics.get("n_other"):
        kpis += [
            ("OOD score AUROC", _fmt(metrics.get("ood_auroc"))),
            ("'other' rows without a body part", _pct(metrics.get("other_without_body_part"))),
        ]
    kpi_html = "".join(f'<div class="kpi"><span class="v">{v}</span><span class="k">{k}</span></div>' for k, v in kpis)
    per_class = metrics.get("abstention_per_class") or {}
    table = ["<table><thead><tr><th>true class</th><th>abstained</th></tr></thead><tbody>"]
    table += [f"<tr><td>{_e(c)}</td><td>{_pct(v)}</td></tr>" for c, v in per_class.items()]
    table.append("</tbody></table>")
    notes = (
        '<p class="note">Rows whose truth is a body part: coverage = accepted / all of them; abstention = '
        "abstained (label <code>other</code>) / labelled ok; accuracy on the accepted ones.  ECE: "
        f"{_e(metrics.get('ece_bins', 15))} equal-width confidence bins over {_e(metrics.get('ece_rows', 0))} "
        "ok rows; <em>before</em> undoes the bundle's temperature"
        + (" (no bundle given: not computed)" if metrics.get("ece_before") is None else "")
        + ".  OOD AUROC: <code>ood_score</code> of <code>other</code> rows against body-part rows.</p>"
    )
    out = ["<h2>Trust</h2>", f'<div class="kpis">{kpi_html}</div>', notes, "<h3>Abstention per true class</h3>"]
    out.append("\n".join(table))
    if reliability_png:
        uri = "data:image/png;base64," + base64.b64encode(reliability_png).decode("ascii")
        out += ["<h3>Reliability diagram</h3>", f'<img class="cm" src="{uri}" alt="reliability diagram">']
    return out


def render_html(
    metrics: Mapping,
    rows: Sequence[Mapping],
    confusion_png: bytes,
    thumbnail: Callable[[str], np.ndarray] | None = None,
    title: str = "scanlabel evaluation",
    max_thumbnails: int = 120,
    extra_sections: Mapping[str, Sequence[Mapping]] | None = None,
    reliability_png: bytes | None = None,
) -> str:
    """Build the self-contained report page; separate from :func:`write_report` so it can be tested or
    served without touching disk."""
    cm_uri = "data:image/png;base64," + base64.b64encode(confusion_png).decode("ascii")
    kpis = [
        ("accuracy", _fmt(metrics.get("accuracy"))),
        ("macro-F1", _fmt(metrics.get("macro_f1"))),
        ("rows evaluated", _e(metrics.get("n", "—"))),
        ("without prediction", _e(metrics.get("n_unlabeled", "—"))),
    ]
    kpi_html = "".join(f'<div class="kpi"><span class="v">{v}</span><span class="k">{k}</span></div>' for k, v in kpis)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="generated">generated {generated}</p>',
        f'<div class="kpis">{kpi_html}</div>',
        "<h2>Per-class metrics</h2>",
        _per_class_table(metrics),
        "<h2>Confusion matrix</h2>",
        (
            '<p class="note">rows: true class, columns: predicted class; colour is the fraction of the row, '
            "numbers are counts.</p>"
        ),
        f'<img class="cm" src="{cm_uri}" alt="confusion matrix">',
        *_trust_section(metrics, reliability_png),
        "<h2>Contact sheet</h2>",
        _contact_sheet(rows, thumbnail, max_thumbnails),
    ]
    for section_title, section_rows in (extra_sections or {}).items():
        parts.append(f"<h2>{_e(section_title)}</h2>")
        parts.append(_contact_sheet(list(section_rows), thumbnail, max_thumbnails))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    out_dir: str | Path,
    metrics: dict,
    rows: Sequence[dict],
    thumbnail: Callable[[str], np.ndarray] | None = None,
    title: str = "scanlabel evaluation",
    max_thumbnails: int = 120,
    extra_sections: dict[str, Sequence[dict]] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``confusion_matrix.png`` and ``report.html`` into ``out_dir``.

    ``rows`` carry image_id, uri, true, pred, confidence, status and error (header_body_part is shown when
    present).  ``thumbnail(uri)`` is only called for rows that make it onto a contact sheet, since loading
    full-size X-rays is the expensive part.  ``max_thumbnails`` applies to each sheet separately.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / METRICS_FILE,
        "confusion_matrix": out / CONFUSION_FILE,
        "report": out / REPORT_FILE,
    }

    text = json.dumps(_jsonable(metrics), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    _write_atomic(paths["metrics"], text.encode("utf-8"))

    png = render_confusion_png(metrics, title)
    _write_atomic(paths["confusion_matrix"], png)
    reliability_png = None
    if metrics.get("reliability"):
        reliability_png = render_reliability_png(metrics, title)
        paths["reliability"] = out / RELIABILITY_FILE
        _write_atomic(paths["reliability"], reliability_png)

    page = render_html(
        metrics,
        rows,
        png,
        thumbnail=thumbnail,
        title=title,
        max_thumbnails=max_thumbnails,
        extra_sections=extra_sections,
        reliability_png=reliability_png,
    )
    _write_atomic(paths["report"], page.encode("utf-8"))
    return paths
