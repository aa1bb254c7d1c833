"""`scanlabel review`: the worst-first queue (checked in a real headless browser), the CSV round trip, and
corrections becoming a training manifest that training's own reader accepts."""

from __future__ import annotations

import csv
import io
import re

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import errors
from core.io import schema
from core.io.manifests import read_manifest
from core.training.data import labelled_rows
from core.trust import review
from tests.browser import CHROMIUM, LOADED_IMAGES, probed_dom, screenshot

CANARY = "CANARY-PHI-4471"


@pytest.fixture
def labelled(small_archive, tmp_path):
    """A labels dataset over real archive images: some header disagreements, abstentions, errors, a canary
    in a kept manifest column, and an image_id that a spreadsheet would run as a formula."""
    _, manifest = small_archive
    m = pq.read_table(manifest).slice(0, 24).to_pylist()
    rng = np.random.default_rng(4)
    rows = []
    for i, r in enumerate(m):
        conf = float(rng.uniform(0.5, 1.0))
        row = {
            schema.IMAGE_ID: r["image_id"] if i != 5 else "=HYPERLINK(\"http://x\")",
            schema.URI: r["uri"],
            schema.LABEL: r["label"],
            "confidence": conf,
            "probabilities": [conf] + [0.0] * 6,
            "status": "ok",
            "model_id": "m-1",
            "labeled_at": 1_700_000_000_000_000,
            "ood_score": float(rng.normal()),
            "header_body_part": "CHEST" if i in (3, 7) else None,
            "header_class": "chest" if i in (3, 7) else None,
            "header_agrees": False if i in (3, 7) else None,
        }
        if i in (3, 7):
            row[schema.LABEL] = "leg"
        if i in (1, 9, 11):
            row.update({schema.LABEL: "other", "abstain_reason": "low_confidence", "confidence": 0.3})
        if i in (20, 21):
            row.update({schema.LABEL: None, "confidence": None, "probabilities": None, "status": "error"})
            row.update({"error": "decode_error"})
        rows.append(row)
    table = schema.labels_table(rows).append_column("patient_name", pa.array([CANARY] * len(rows)))
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    pq.write_table(table, labels_dir / "part-0.parquet")
    return str(labels_dir), rows, str(manifest)


def test_queue_is_worst_first(labelled):
    labels_dir, rows, _ = labelled
    queue = review.build_queue(labels_dir, limit=None)
    assert len(queue) == 22  # the two error rows have no label to correct
    reasons = [r["review_reason"] for r in queue]
    assert reasons[:2] == [review.HEADER_DISAGREES] * 2
    assert reasons[2:5] == [review.ABSTAINED] * 3
    assert set(reasons[5:]) == {review.LOW_CONFIDENCE}
    rest = [r["confidence"] for r in queue[5:]]
    assert rest == sorted(rest)
    assert [r["rank"] for r in queue] == list(range(1, 23))
    assert len(review.build_queue(labels_dir, limit=4)) == 4


def test_manifest_restricts_and_its_labels_are_compared(labelled, tmp_path):
    labels_dir, rows, _ = labelled
    chosen = [rows[0], rows[2], rows[3]]
    truth = ["hand" if rows[0][schema.LABEL] != "hand" else "head", rows[2][schema.LABEL], "chest"]
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"uri": [r["uri"] for r in chosen], "image_id": [r["image_id"] for r in chosen],
                             "label": truth}), manifest)  # fmt: skip
    queue = review.build_queue(labels_dir, str(manifest))
    assert [(r["image_id"], r["review_reason"]) for r in queue] == [
        (rows[3]["image_id"], review.HEADER_DISAGREES),
        (rows[0]["image_id"], review.MANIFEST_DISAGREES),
        (rows[2]["image_id"], review.LOW_CONFIDENCE),
    ]
    assert queue[1]["manifest_label"] == truth[0]


def test_review_files_carry_no_phi_and_neutralise_formulas(labelled, tmp_path):
    from jobs.cli import main

    labels_dir, rows, _ = labelled
    out = tmp_path / "review"
    assert main(["review", "--labels", labels_dir, "--out", str(out)]) == 0
    text = (out / "review.csv").read_text()
    page = (out / "review.html").read_text()
    assert CANARY not in text and CANARY not in page and "patient_name" not in text
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == list(review.CSV_COLUMNS)
    assert all(r["corrected_label"] == "" for r in parsed)
    formula = next(r for r in parsed if "HYPERLINK" in r["image_id"])
    assert formula["image_id"].startswith("'=")  # a spreadsheet shows it as text instead of running it
    assert "<script" not in page.lower() and len(re.findall(r'<img src="data:image/png;base64,', page)) == 22


def _fill(csv_path, corrections: dict[int, str]) -> None:
    """What a reviewer does: type labels into corrected_label of some rows (by rank) and save."""
    rows = list(csv.DictReader(open(csv_path, newline="")))
    for r in rows:
        if int(r["rank"]) in corrections:
            r["corrected_label"] = corrections[int(r["rank"])]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_apply_turns_corrections_into_a_training_manifest(labelled, tmp_path, capsys):
    from jobs.cli import main

    labels_dir, rows, base = labelled
    out = tmp_path / "review"
    review.write_review(labels_dir, str(out), thumbnail=lambda uri: np.zeros((8, 8), np.uint8))
    queue = list(csv.DictReader(open(out / "review.csv")))
    formula_rank = next(int(r["rank"]) for r in queue if "HYPERLINK" in r["image_id"])
    _fill(out / "review.csv", {1: "Chest ", 2: "chest", 3: "other", formula_rank: "hand"})
    corrected = tmp_path / "train_v2.parquet"
    rc = main(["review", "--apply", str(out / "review.csv"), "--out", str(corrected), "--base-manifest", base])
    assert rc == 0, capsys.readouterr().err
    table = read_manifest(str(corrected))
    assert table.schema.equals(schema.MANIFEST_SCHEMA)
    by_id = dict(zip(table.column("image_id").to_pylist(), table.column("label").to_pylist(), strict=True))
    for rank, label in ((1, "chest"), (2, "chest"), (3, "other")):
        assert by_id[queue[rank - 1]["image_id"]] == label
    assert by_id['=HYPERLINK("http://x")'] == "hand"  # the quote added for spreadsheets is gone again
    base_rows = pq.read_table(base).num_rows
    assert table.num_rows == base_rows + 1  # three replaced base rows, one new id (the formula one)
    # What `scanlabel train` does with a manifest: every row usable, nothing unmapped.
    usable = labelled_rows(table)
    assert len(usable) == table.num_rows and not usable.unmapped
    assert "3 replaced, 1 added" in capsys.readouterr().out


def test_apply_refuses_unknown_labels_and_writes_nothing(labelled, tmp_path, capsys):
    from jobs.cli import main

    labels_dir, _, _ = labelled
    out = tmp_path / "review"
    review.write_review(labels_dir, str(out), thumbnail=None)
    target = tmp_path / "c.parquet"
    rc = main(["review", "--apply", str(out / "review.csv"), "--out", str(target)])
    assert rc == 2 and "no corrected_label filled in" in capsys.readouterr().err
    _fill(out / "review.csv", {1: "knee", 2: "chest", 4: "thorax"})
    rc = main(["review", "--apply", str(out / "review.csv"), "--out", str(target)])
    err = capsys.readouterr().err
    assert rc == 2 and "'knee'" in err and "'thorax'" in err and "line 2" in err and "allowed: abdomen" in err
    assert not target.exists()
    with pytest.raises(errors.ManifestError, match="lacks column"):
        bad = tmp_path / "bad.csv"
        bad.write_text("image_id,label\nx,chest\n")
        review.apply_corrections(str(bad), str(target))


def test_review_page_in_a_real_headless_browser(labelled, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): the page cannot be rendered here")
    labels_dir, _, _ = labelled
    out = tmp_path / "review"
    review.write_review(labels_dir, str(out))
    page = out / "review.html"
    shot = tmp_path / "shot.png"
    screenshot(page, shot, 1400)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (1400, 1280)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert gray.std() > 20, "the page rendered blank"
    # The thumbnails really decoded in the browser: a copy of the page with a probe script (the page itself has
    # none) writes the number of loaded, non-empty images into the DOM that --dump-dom prints.
    dom = probed_dom(page, tmp_path, {"loaded": LOADED_IMAGES}, 1400)
    loaded = re.search(r'data-loaded="(\d+)"', dom)
    assert loaded and int(loaded.group(1)) == 22, dom[:500]
    # ...and they are on screen: the screenshot holds the thumbnails' grey-level detail, not just text on white.
    first_row = gray[150:1400]
    assert len(np.unique(first_row)) > 100
