"""The report must be complete, self-contained, safe to open, and survive unreadable images."""

from __future__ import annotations

import base64
import json
import re

import cv2
import numpy as np
import pytest

import core.trust.report
from core.trust.metrics import compute_metrics
from core.trust.report import encode_thumbnail, write_report

CLASSES = ["chest", "hand", "knee"]
_TINY_PNG = cv2.imencode(".png", np.full((4, 4), 200, np.uint8))[1].tobytes()


@pytest.fixture
def real_png():
    """Request this to draw the real matplotlib figure; other tests stub it (it dominates test time)."""


@pytest.fixture(autouse=True)
def _fast_png(request, monkeypatch):
    if "real_png" not in request.fixturenames:
        monkeypatch.setattr(core.trust.report, "render_confusion_png", lambda metrics, title="": _TINY_PNG)


def _row(image_id, true, pred, confidence=0.9, uri=None, status="ok", error=None):
    return {
        "image_id": image_id,
        "uri": uri or f"file:///data/{image_id}.png",
        "true": true,
        "pred": pred,
        "confidence": confidence,
        "status": status,
        "error": error,
    }


@pytest.fixture
def rows():
    return [
        _row("ok-1", "chest", "chest", 0.97),
        _row("bad-1", "chest", "hand", 0.61),
        _row("ok-2", "hand", "hand", 0.88),
        _row("bad-2", "knee", "chest", 0.93),
        _row("ok-3", "knee", "knee", 0.55),
        _row("fail-1", "hand", None, None, status="error", error="decode_error"),
    ]


@pytest.fixture
def metrics(rows):
    return compute_metrics([r["true"] for r in rows], [r["pred"] for r in rows], CLASSES)


def _gray_loader(uri: str) -> np.ndarray:
    y, x = np.mgrid[:300, :200]
    return ((x + y) % 256).astype(np.uint8)


def _data_uris(html: str) -> list[str]:
    return re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', html)


def _decode(b64: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    return img


def _html(paths) -> str:
    return paths["report"].read_text(encoding="utf-8")


def test_writes_all_files_and_metrics_round_trip(tmp_path, metrics, rows, real_png):
    out = tmp_path / "nested" / "report"
    paths = write_report(out, metrics, rows, thumbnail=_gray_loader)
    assert set(paths) == {"metrics", "confusion_matrix", "report"}
    assert paths["metrics"] == out / "metrics.json"
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    assert json.loads(paths["metrics"].read_text()) == metrics
    # atomic writes leave no temp files behind
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json", "report.html"]


def test_confusion_png_decodes_with_sensible_size(tmp_path, metrics, rows, real_png):
    paths = write_report(tmp_path, metrics, rows)
    img = cv2.imread(str(paths["confusion_matrix"]), cv2.IMREAD_COLOR)
    assert img is not None
    h, w = img.shape[:2]
    assert 300 <= h <= 3000 and 300 <= w <= 3000
    assert img.std() > 10  # not a blank canvas


def test_html_has_metrics_classes_and_embedded_matrix(tmp_path, metrics, rows):
    html = _html(write_report(tmp_path, metrics, rows, thumbnail=_gray_loader, title="Nightly <eval>"))
    assert html.startswith("<!DOCTYPE html>")
    for c in CLASSES:
        assert f"<td>{c}</td>" in html
    assert f"{metrics['accuracy']:.3f}" in html
    assert f"{metrics['macro_f1']:.3f}" in html
    assert "Nightly &lt;eval&gt;" in html and "<eval>" not in html
    assert 'class="cm" src="data:image/png;base64,' in html
    # self-contained: nothing fetched from elsewhere, nothing executed
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert "<script" not in html.lower() and "<link" not in html.lower()


def test_misclassified_first_with_red_border_and_captions(tmp_path, metrics, rows):
    html = _html(write_report(tmp_path, metrics, rows, thumbnail=_gray_loader))
    pos = {r["image_id"]: html.index(f'<span class="id">{r["image_id"]}</span>') for r in rows}
    wrong, right = ["bad-2", "bad-1", "fail-1"], ["ok-3", "ok-2", "ok-1"]
    assert max(pos[i] for i in wrong) < min(pos[i] for i in right)
    # most confident mistake first; rows without prediction last among mistakes; least confident correct first
    assert [i for i, _ in sorted(pos.items(), key=lambda kv: kv[1])] == wrong + right
    kinds = re.findall(r'<figure class="thumb (\w+)"', html)
    assert kinds == ["wrong"] * 3 + ["right"] * 3
    assert "figure.thumb.wrong{border-color:#d32f2f}" in html
    assert "pred: chest (0.93) / true: knee" in html
    assert "pred: — [error, decode_error] / true: hand" in html


def test_one_img_per_thumbnail_plus_matrix_and_downscaled(tmp_path, metrics, rows):
    html = _html(write_report(tmp_path, metrics, rows, thumbnail=_gray_loader))
    assert html.count("<img ") == len(rows) + 1
    thumbs = [_decode(b) for b in _data_uris(html)][1:]  # first is the confusion matrix
    assert len(thumbs) == len(rows)
    assert all(t.shape[:2] == (128, 85) for t in thumbs)  # 300x200 -> long side 128, aspect kept


def test_max_thumbnails_limits_and_only_loads_shown(tmp_path, metrics, rows):
    calls = []

    def loader(uri):
        calls.append(uri)
        return _gray_loader(uri)

    html = _html(write_report(tmp_path, metrics, rows, thumbnail=loader, max_thumbnails=2))
    assert html.count("<img ") == 2 + 1
    assert len(calls) == 2
    assert "bad-2" in html and "bad-1" in html and "ok-1" not in html
    assert "showing 2 of 6" in html


def test_malicious_image_id_is_escaped(tmp_path, metrics):
    evil = '<script>alert("x")</script>'
    rows = [_row(evil, "chest", "hand", uri='x" onerror="alert(1)')]
    html = _html(write_report(tmp_path, metrics, rows, thumbnail=_gray_loader))
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'onerror="' not in html


def test_raising_loader_gives_placeholder_not_error(tmp_path, metrics, rows):
    def loader(uri):
        if "bad-1" in uri:
            raise OSError("disk <gone>")
        return _gray_loader(uri)

    html = _html(write_report(tmp_path, metrics, rows, thumbnail=loader))
    assert html.count('<div class="placeholder">') == 1
    assert "OSError: disk &lt;gone&gt;" in html
    assert html.count("<img ") == len(rows) - 1 + 1


@pytest.mark.parametrize("result", [None, np.zeros((0, 5), np.uint8), np.zeros((4, 4, 7), np.uint8)])
def test_unusable_loader_results_give_placeholders(tmp_path, metrics, rows, result):
    html = _html(write_report(tmp_path, metrics, rows, thumbnail=lambda uri: result))
    assert html.count('<div class="placeholder">') == len(rows)
    assert html.count("<img ") == 1


def test_no_loader_gives_placeholders(tmp_path, metrics, rows):
    html = _html(write_report(tmp_path, metrics, rows))
    assert html.count('<div class="placeholder">') == len(rows)
    assert "no thumbnail loader" in html


def test_extra_sections_rendered_and_escaped(tmp_path, metrics, rows):
    disagree = [dict(rows[0], header_body_part="knee")]
    html = _html(
        write_report(
            tmp_path,
            metrics,
            rows,
            thumbnail=_gray_loader,
            extra_sections={"header <disagreements>": disagree},
        )
    )
    assert "<h2>header &lt;disagreements&gt;</h2>" in html
    assert "header: knee" in html
    assert html.index("header &lt;disagreements&gt;") > html.index("Contact sheet")
    assert html.count("<img ") == len(rows) + 1 + 1


def test_rewrite_overwrites_and_nan_metrics_stay_valid_json(tmp_path, metrics, rows, real_png):
    write_report(tmp_path, metrics, rows)
    bad = dict(metrics, macro_f1=float("nan"), extra=np.float32(0.5))
    paths = write_report(tmp_path, bad, rows[:1])
    loaded = json.loads(paths["metrics"].read_text())
    assert loaded["macro_f1"] is None and loaded["extra"] == 0.5
    assert "showing 1 of 1" in _html(paths)


def test_empty_rows_and_classes(tmp_path, real_png):
    m = compute_metrics([], [], [])
    paths = write_report(tmp_path, m, [])
    assert cv2.imread(str(paths["confusion_matrix"])) is not None
    assert "showing 0 of 0" in _html(paths)


@pytest.mark.parametrize(
    ("img", "shape"),
    [
        (np.full((50, 40), 7, np.uint8), (50, 40)),  # small: never upscaled
        (np.arange(400 * 600, dtype=np.uint16).reshape(400, 600), (85, 128)),  # 16-bit: stretched
        (np.zeros((256, 256, 1), np.uint8), (128, 128)),
        (np.zeros((256, 128, 3), np.uint8), (128, 64, 3)),
        (np.zeros((64, 64, 4), np.uint8), (64, 64, 4)),
        (np.random.default_rng(0).random((200, 200)), (128, 128)),  # float
    ],
)
def test_encode_thumbnail_shapes(img, shape):
    uri = encode_thumbnail(img)
    assert uri.startswith("data:image/png;base64,")
    decoded = _decode(uri.split(",", 1)[1])
    assert decoded.shape == shape
    assert decoded.dtype == np.uint8


def test_encode_thumbnail_keeps_rgb_order():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255  # pure red in RGB
    bgr = _decode(encode_thumbnail(rgb).split(",", 1)[1])
    assert bgr[0, 0].tolist() == [0, 0, 255]
