"""The run history of a labels dataset: every ``_runs/<run_id>.json`` side by side, as a table and as plots.

Each labeling run leaves one summary (cluster/label.py); nights only make sense next to each other - a drop in
throughput, a rise in errors or abstentions, a shifted body-part mix - so this reads them all back.
"""

from __future__ import annotations

import html
import io
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from core.io import storage
from core.trust.drift import accepted_mix

log = logging.getLogger("scanlabel.runs")
RUNS_DIR = "_runs"


def load_runs(labels: str) -> list[dict[str, Any]]:
    """Every run summary of the dataset (local or object store), oldest first; unreadable files are skipped
    with a warning rather than hiding the rest of the history."""
    fs, path = storage.resolve(storage.join(labels, RUNS_DIR))
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        if fs.get_file_info(storage.resolve(labels)[1]).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"no labels dataset at {labels}")
        return []
    runs = []
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".json") or info.base_name.startswith("."):
            continue
        try:
            with fs.open_input_stream(info.path) as f:
                data = json.loads(f.read())
        except (OSError, ValueError) as e:
            log.warning("skipped unreadable run summary %s (%s)", info.base_name, type(e).__name__)
            continue
        if isinstance(data, dict) and "run_id" in data:
            runs.append(data)
    runs.sort(key=lambda r: float(r.get("finished_at") or 0))
    return runs


def _when(run: dict[str, Any]) -> str:
    ts = run.get("finished_at")
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M") if ts else "?"


def _errors(run: dict[str, Any]) -> str:
    errs = run.get("errors") or {}
    return " ".join(f"{k}={v}" for k, v in sorted(errs.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def _duration(seconds: float | None) -> str:
    from core.progress import format_duration

    return format_duration(seconds) if seconds else "-"


def drift_text(run: dict[str, Any]) -> str:
    drift = run.get("drift")
    if not drift:
        return "-"
    if drift.get("flagged"):
        return "DRIFT: " + ",".join(drift.get("reasons") or [])
    if not drift.get("reference_runs"):
        return "reference"
    checks = drift.get("checks") or {}
    if checks and all(c.get("status") == "insufficient" for c in checks.values()):
        return "n/a (few rows)"
    return "ok"


COLUMNS = (
    ("when (UTC)", _when),
    ("run_id", lambda r: str(r.get("run_id", ""))),
    ("model_id", lambda r: str(r.get("model_id", ""))),
    ("manifest", lambda r: str(r.get("manifest_rows", ""))),
    ("to_do", lambda r: str(r.get("todo", ""))),
    ("done", lambda r: str(r.get("done", ""))),
    ("ok", lambda r: str(r.get("ok", ""))),
    ("abstained", lambda r: str(r.get("abstained", "-"))),
    ("errors", _errors),
    ("img/s", lambda r: f"{float(r.get('images_per_s') or 0):.1f}"),
    ("duration", lambda r: _duration(r.get("seconds"))),
    ("drift", drift_text),
)


def table_rows(runs: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[fn(r) for _, fn in COLUMNS] for r in runs]


def format_table(runs: Sequence[dict[str, Any]]) -> str:
    header = [name for name, _ in COLUMNS]
    rows = table_rows(runs)
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def render_plots(runs: Sequence[dict[str, Any]]) -> dict[str, bytes]:
    """PNG bytes of the three history plots, keyed by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{_when(r)}\n{str(r.get('run_id', ''))[:8]}" for r in runs]
    x = list(range(len(runs)))
    flagged = [bool((r.get("drift") or {}).get("flagged")) for r in runs]
    out: dict[str, bytes] = {}

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(runs) + 3), 3.6))
    ax.bar(x, [int(r.get("done") or 0) for r in runs], color="#4c78a8", label="rows labelled")
    ax.set_ylabel("rows labelled")
    ax2 = ax.twinx()
    ax2.plot(x, [float(r.get("images_per_s") or 0) for r in runs], "o-", color="#f58518", label="images/s")
    ax2.set_ylabel("images/s")
    ax2.set_ylim(bottom=0)
    ax.set_xticks(x, names, fontsize=7)
    ax.set_title("Rows and throughput per run")
    fig.legend(loc="upper left", fontsize=8)
    out["rows_throughput.png"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(runs) + 3), 3.6))
    err = [int(r.get("failed") or 0) / max(int(r.get("done") or 0), 1) for r in runs]
    abst = [int(r.get("abstained") or 0) / max(int(r.get("ok") or 0), 1) for r in runs]
    ax.plot(x, err, "o-", color="#e45756", label="error rate (failed / done)")
    ax.plot(x, abst, "s-", color="#72b7b2", label="abstention rate (abstained / ok)")
    for i, f in enumerate(flagged):
        if f:
            first = i == flagged.index(True)
            ax.axvspan(i - 0.4, i + 0.4, color="#ffbf00", alpha=0.25, label="drift flagged" if first else None)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xticks(x, names, fontsize=7)
    ax.set_title("Error and abstention rates per run")
    ax.legend(fontsize=8)
    out["rates.png"] = _png(fig)
    plt.close(fig)

    mixes = [accepted_mix(r) for r in runs]
    classes = sorted({k for m in mixes for k in m})
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(runs) + 3), 3.8))
    bottom = [0.0] * len(runs)
    cmap = plt.get_cmap("tab10")
    for i, cls in enumerate(classes):
        frac = [m.get(cls, 0) / max(sum(m.values()), 1) for m in mixes]
        ax.bar(x, frac, bottom=bottom, color=cmap(i % 10), label=cls)
        bottom = [b + f for b, f in zip(bottom, frac, strict=True)]
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xticks(x, [n + (" *" if f else "") for n, f in zip(names, flagged, strict=True)], fontsize=7)
    ax.set_title("Body-part mix per run (accepted labels; * = drift flagged)")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    out["body_part_mix.png"] = _png(fig)
    plt.close(fig)
    return out


def render_html(labels: str, runs: Sequence[dict[str, Any]], images: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in COLUMNS)
    body = []
    for run, row in zip(runs, table_rows(runs), strict=True):
        cls = ' class="drift"' if (run.get("drift") or {}).get("flagged") else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    figures = "".join(f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}"></figure>' for name in images)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>scanlabel runs</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; }}
tr.drift td {{ background: #fff3c4; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Run history</h1>
<p>Labels dataset <code>{html.escape(labels)}</code>: {len(runs)} run(s). Drift compares each run with the
last earlier runs of the same model (see docs/nightly.md, "Drift").</p>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
{figures}
</body></html>
"""


def write_report(labels: str, runs: Sequence[dict[str, Any]], out_dir: str) -> Path:
    """``runs.html`` and its PNGs in ``out_dir`` (a local folder)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = render_plots(runs) if runs else {}
    for name, data in images.items():
        (out / name).write_bytes(data)
    page = out / "runs.html"
    tmp = out / ".runs.html.tmp"
    tmp.write_text(render_html(labels, runs, list(images)), encoding="utf-8")
    tmp.replace(page)
    return page
