"""Weak labels from DICOM headers (docs/weak-labels.md): the header manifest on pydicom's own files, training on
noisy header labels on a real local Ray, the audit (checked in a real headless browser), and bad inputs."""

from __future__ import annotations

import csv
import json
import re
import shutil

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq
import pytest

from core import errors
from core.io import schema
from core.io.manifests import read_manifest
from core.synthetic.sample_archive import DICOM_FORMATS, write_sample_archive
from tests.browser import CHROMIUM, LOADED_IMAGES, probed_dom, screenshot

CANARY = "CANARYPHI4471"


def _testfile(name: str) -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available (pydicom-data)")
    return path


@pytest.fixture(scope="module")
def dicom_tree(tmp_path_factory):
    """pydicom's real radiographs and CT, variants of RG1 with edited headers (PHI canaries in every patient
    and description attribute), a header-only truncation, a broken file and a PNG."""
    import pydicom

    root = tmp_path_factory.mktemp("tree")
    (root / "cr").mkdir()
    (root / "misc").mkdir()
    rg1, rg3, ct = _testfile("RG1_UNCR.dcm"), _testfile("RG3_UNCR.dcm"), _testfile("CT_small.dcm")
    shutil.copy(rg1, root / "cr" / "rg1.dcm")  # CR, BodyPartExamined CHEST
    shutil.copy(rg3, root / "cr" / "rg3.dcm")  # CR, BodyPartExamined EXTREMITY (deliberately unmapped)
    shutil.copy(ct, root / "misc" / "ct.dcm")  # CT: outside the default scope

    def variant(name: str, **attrs) -> None:
        ds = pydicom.dcmread(rg1)
        ds.PatientName = f"{CANARY}^NAME"
        ds.PatientID = f"{CANARY}ID"
        ds.InstitutionName = f"{CANARY} HOSPITAL"
        for keyword, value in attrs.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(root / "cr" / name)

    variant("study.dcm", BodyPartExamined=None, StudyDescription=f"XR HAND 2 VIEWS {CANARY}")
    variant("series.dcm", BodyPartExamined="", StudyDescription=None, SeriesDescription=f"PA WRIST {CANARY}")
    variant("none.dcm", BodyPartExamined=None, StudyDescription=None, SeriesDescription=None)
    variant("skull.dcm", BodyPartExamined="SKULL")
    data = (root / "cr" / "skull.dcm").read_bytes()
    (root / "cr" / "truncated.dcm").write_bytes(data[:40_000])  # header intact, pixels cut: still labelled
    (root / "misc" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    cv2.imwrite(str(root / "misc" / "photo.png"), np.full((32, 32), 128, np.uint8))
    return root


def _rows(path) -> dict[str, dict]:
    return {r["image_id"]: r for r in pq.read_table(path).to_pylist()}


def test_header_manifest_labels_sources_nulls_and_errors(dicom_tree, tmp_path, capsys):
    from jobs.cli import main

    header_map = tmp_path / "map.json"
    header_map.write_text(json.dumps({"EXTREMITY": "leg"}))
    out = tmp_path / "header.parquet"
    rc = main(["manifest", "--root", str(dicom_tree), "--label-from-header", "--header-map", str(header_map),
               "--out", str(out), "--threads", "3"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    table = read_manifest(str(out))
    assert table.schema.names == schema.HEADER_MANIFEST_SCHEMA.names
    rows = _rows(out)
    got = {k: (r["label"], r["label_source"], r["error"]) for k, r in rows.items()}
    assert got == {
        "cr/rg1.dcm": ("chest", "body_part_examined", None),
        "cr/rg3.dcm": ("leg", "body_part_examined", None),  # only through the --header-map override
        "cr/study.dcm": ("hand", "study_description", None),
        "cr/series.dcm": ("hand", "series_description", None),
        "cr/none.dcm": (None, None, None),
        "cr/skull.dcm": ("head", "body_part_examined", None),
        "cr/truncated.dcm": ("head", "body_part_examined", None),
        "misc/ct.dcm": (None, None, errors.OUT_OF_SCOPE),
        "misc/broken.dcm": (None, None, errors.DECODE_ERROR),
        "misc/photo.png": (None, None, None),
    }
    assert rows["cr/rg3.dcm"]["header_body_part"] == "EXTREMITY" and rows["cr/rg1.dcm"]["modality"] == "CR"
    assert rows["misc/photo.png"]["format"] == "png" and rows["misc/ct.dcm"]["modality"] == "CT"
    assert "6 labelled from the header, 4 with a null label" in printed
    assert "body_part_examined 4" in printed and "decode_error 1" in printed and "out_of_scope 1" in printed
    # Privacy: no header text but the code strings reaches the file (descriptions are mapped, never written).
    assert CANARY.encode() not in out.read_bytes() and CANARY not in printed
    assert "WRIST" not in out.read_bytes().decode("latin-1") and "VIEWS" not in out.read_bytes().decode("latin-1")
    # Without the override EXTREMITY maps nowhere; with '*' the CT is read and its (absent) body part is null.
    rc = main(["manifest", "--root", str(dicom_tree), "--label-from-header", "--modalities", "*",
               "--out", str(tmp_path / "all.parquet")])  # fmt: skip
    assert rc == 0
    rows = _rows(tmp_path / "all.parquet")
    assert rows["cr/rg3.dcm"]["label"] is None and rows["misc/ct.dcm"]["error"] is None


@pytest.mark.parametrize(
    "content, message",
    [
        ('["SKULL"]', "expected a JSON object"),
        ('{"SKULL": "knee"}', "must be one of"),
        ('{"SKULL": 3}', "must be one of"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_header_map_is_refused_before_any_work(dicom_tree, tmp_path, capsys, content, message):
    from jobs.cli import main

    bad = tmp_path / "map.json"
    bad.write_text(content)
    out = tmp_path / "m.parquet"
    rc = main(
        ["manifest", "--root", str(dicom_tree), "--label-from-header", "--header-map", str(bad), "--out", str(out)]
    )
    assert rc == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_sample_archive_header_noise_and_confusions(tmp_path):
    m = write_sample_archive(tmp_path / "a", 60, seed=2, formats=sorted(DICOM_FORMATS), header_noise=0.3,
                             confusions={"arm": "hand", "abdomen": "pelvis"})  # fmt: skip
    rows = pq.read_table(m).to_pylist()
    wrong = [r for r in rows if r["header_wrong"]]
    assert len(wrong) == 18 and all(r["format"] in DICOM_FORMATS for r in rows)
    for r in wrong:
        assert r["header_body_part"] not in {"HEAD", "SKULL"} or r["label"] != "head"
        if r["label"] == "arm":
            assert r["header_body_part"] == "HAND"
        if r["label"] == "abdomen":
            assert r["header_body_part"] == "PELVIS"
    with pytest.raises(ValueError, match="confusions"):
        write_sample_archive(tmp_path / "b", 5, confusions={"arm": "knee"})
    with pytest.raises(ValueError, match="header_noise"):
        write_sample_archive(tmp_path / "b", 5, header_noise=1.5)


# --- training on header labels --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_archive(tmp_path_factory):
    """Two classes of DICOM phantoms (100 each), 20 % wrong headers, listed with --label-from-header, plus a PNG
    (a null label)."""
    from core.io.manifests import write_manifest
    from core.readers.header import build_header_manifest

    root = tmp_path_factory.mktemp("noisy")
    archive = write_sample_archive(root / "archive", 200, seed=5, classes=("chest", "hand"),
                                   formats=sorted(DICOM_FORMATS), header_noise=0.2)  # fmt: skip
    cv2.imwrite(str(root / "archive" / "images" / "extra.png"), np.full((64, 64), 90, np.uint8))
    header = root / "header.parquet"
    write_manifest(build_header_manifest(str(root / "archive" / "images")).table, str(header))
    return root, archive, header


def test_noisy_training_on_ray_prunes_wrong_headers_and_records_the_noise(noisy_archive, ray_session, capsys):
    from jobs.cli import main

    root, archive, header = noisy_archive
    out = root / "model"
    # Fold models good enough to beat chance cost ~8 epochs at this size; the final model's quality is not checked.
    rc = main(["train", "--noisy-labels", "--folds", "2", "--fold-epochs", "8", "--manifest", str(header),
               "--out", str(out), "--backbone", "compact_resnet", "--weights", "none", "--image-size", "48",
               "--epochs", "1", "--batch-size", "8", "--lr", "2e-2", "--patience", "8",
               "--storage", str(root / "ray")])  # fmt: skip
    printed = capsys.readouterr()
    assert rc == 0, printed.err[-2000:]
    training = json.loads((out / "training.json").read_text())
    weak = training["weak_labels"]
    assert weak["header_derived"] is True and weak["manifest"] == str(header)
    assert weak["unlabeled_rows"] == 1 and weak["trainable_rows"] == 200 and weak["recipe"]["folds"] == 2
    matrix = np.asarray(weak["noise_matrix"]["joint"])
    assert weak["noise_matrix"]["classes"] == ["chest", "hand"] and matrix.shape == (2, 2)
    assert matrix.sum() == pytest.approx(1.0, abs=1e-3)
    issues = pq.read_table(weak["label_issues"]).to_pylist()
    assert weak["pruned"] == len(issues) > 0
    counts = training["class_counts"]
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 200 - weak["pruned"]
    # Better than chance: the flagged rows hold more wrong headers than a random draw (20 %) would (measured
    # without Ray, same recipe: 30 of the 40 wrong headers among 69 flagged rows).
    # The header manifest's image_id is the path under the listed root: the sample's file name.
    wrong = {r["uri"].rsplit("/", 1)[1] for r in pq.read_table(archive).to_pylist() if r["header_wrong"]}
    flagged = {r["image_id"] for r in issues}
    precision = len(flagged & wrong) / len(flagged)
    recall = len(flagged & wrong) / len(wrong)
    assert precision > 0.3 and recall > 0.3, (precision, recall, len(flagged), len(wrong))
    assert 0.0 < weak["estimated_noise_rate"] < 0.6


def test_weak_fold_models_prune_nothing(noisy_archive, tmp_path):
    """Fold models that disagree with most headers (out-of-fold probabilities drawn so here) say more about
    themselves than the headers: the estimate exceeds WEAK_FOLDS_NOISE, nothing is pruned and the final model
    gets every labelled row."""
    from core.io import storage
    from core.training import TrainConfig
    from core.training.noisy import HOLDOUT_FILE, LABEL_ISSUES, WEAK_FOLDS_NOISE, train_noisy

    _, _, header = noisy_archive
    rng = np.random.default_rng(0)
    final = {}

    def chance_level(cfg, name):
        if name == "final":
            final["rows"] = read_manifest(cfg.manifest).num_rows
            return None
        held = read_manifest(cfg.holdout_manifest)
        ids = held.column("image_id").to_pylist()
        probs = []
        for label in held.column("label").to_pylist():  # classes ["chest", "hand"]; 65 % disagree
            p = float(rng.uniform(0.6, 0.9))
            agree = rng.random() >= 0.65
            probs.append([p, 1 - p] if (label == "chest") == agree else [1 - p, p])
        table = pa.table({"image_id": ids, "probabilities": probs, "error": [None] * len(ids)},
                         schema=schema.HOLDOUT_PREDICTIONS_SCHEMA)  # fmt: skip
        storage.resolve(cfg.out)[0].create_dir(storage.resolve(cfg.out)[1])
        pq.write_table(table, storage.join(cfg.out, HOLDOUT_FILE))

    cfg = TrainConfig(manifest=str(header), out=str(tmp_path / "m"), noisy_labels=True, folds=2)
    _, info = train_noisy(cfg, chance_level, str(tmp_path / "work"), log=lambda m: None)
    assert info["estimated_noise_rate"] > WEAK_FOLDS_NOISE and info["flagged"] > 0
    assert info["pruned"] == 0 and info["pruning_skipped"] and final["rows"] == 200
    assert pq.read_table(tmp_path / "work" / LABEL_ISSUES).num_rows == info["flagged"]


def test_noisy_training_refuses_untrainable_manifests(noisy_archive, tmp_path, capsys):
    from jobs.cli import main

    root, archive, header = noisy_archive
    base = ["--out", str(tmp_path / "m"), "--backbone", "compact_resnet", "--weights", "none",
            "--storage", str(tmp_path / "ray")]  # fmt: skip
    t = pq.read_table(header)
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(t.set_column(t.schema.get_field_index("label"), "label", pa.nulls(t.num_rows, pa.string())), nulls)
    few = tmp_path / "few.parquet"
    labels = ["hand" if i < 4 else "chest" for i in range(t.num_rows)]
    pq.write_table(t.set_column(t.schema.get_field_index("label"), "label", pa.array(labels)), few)
    cases = [
        (["--manifest", str(nulls), "--noisy-labels"], "no trainable rows"),
        (["--manifest", str(few), "--noisy-labels", "--folds", "3"], "too few header-labelled rows"),
        (["--manifest", str(header), "--noisy-labels", "--folds", "1"], "--folds must be at least 2"),
        (["--manifest", str(header), "--folds", "3"], "go with --noisy-labels"),
    ]
    for args, message in cases:
        assert main(["train", *args, *base]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "ray").exists()


# --- the audit ------------------------------------------------------------------------------------------------


@pytest.fixture
def audited(small_archive, tmp_path):
    """A header manifest of the sample archive (its real headers, 15 % wrong) and a labels dataset whose model
    gives the true class (confidence drawn at random), so the audit must list exactly the wrong headers."""
    from core.io.manifests import write_manifest
    from core.readers.header import build_header_manifest

    archive, manifest = small_archive
    header = tmp_path / "header.parquet"
    write_manifest(build_header_manifest(str(archive)).table, str(header))
    truth = pq.read_table(manifest).to_pylist()
    rng = np.random.default_rng(1)
    rows = []
    for r in truth:
        conf = float(rng.uniform(0.4, 1.0))
        rows.append({schema.IMAGE_ID: f"images/{r['uri'].rsplit('/', 1)[1]}", schema.URI: r["uri"],
                     schema.LABEL: r["label"], "confidence": conf, "status": "ok", "model_id": "m-1",
                     "labeled_at": 1_700_000_000_000_000})  # fmt: skip
    rows[0].update({schema.LABEL: "other", "abstain_reason": "low_confidence"})
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    pq.write_table(schema.labels_table(rows), labels_dir / "part-0.parquet")
    wrong = {f"images/{r['uri'].rsplit('/', 1)[1]}" for r in truth[1:] if r["header_wrong"]}
    return str(labels_dir), str(header), wrong, tmp_path


def test_audit_lists_the_disagreements_and_feeds_review_apply(audited, capsys):
    from jobs.cli import main

    labels_dir, header, wrong, tmp = audited
    out = tmp / "audit"
    assert main(["audit", "--labels", labels_dir, "--manifest", header, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pq.read_table(out / "audit.parquet")
    assert table.schema.equals(schema.AUDIT_SCHEMA)
    flagged = table.to_pylist()
    assert {r["image_id"] for r in flagged} == wrong and wrong
    conf = [r["confidence"] for r in flagged]
    assert conf == sorted(conf, reverse=True) and [r["rank"] for r in flagged] == list(range(1, len(flagged) + 1))
    assert all(r["header_class"] != r["label"] and r["label_source"] == "body_part_examined" for r in flagged)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["disagree"] == len(wrong) and summary["per_label_source"]["body_part_examined"]["disagree"] == len(
        wrong
    )
    per_class = summary["per_header_class"]
    assert sum(v["disagree"] for v in per_class.values()) == len(wrong)
    assert summary["compared"] == sum(v["compared"] for v in per_class.values())
    assert "estimated wrong headers" in printed
    # A reviewer confirms the model on the first two rows; review --apply turns that into a training manifest.
    rows = list(csv.DictReader(open(out / "audit.csv")))
    assert len(rows) == len(wrong) and rows[0]["corrected_label"] == ""
    rows[0]["corrected_label"], rows[1]["corrected_label"] = rows[0]["label"], rows[1]["label"]
    with open(out / "audit.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # The base is a training manifest: the header-labelled rows (what --noisy-labels writes as pruned_manifest).
    base = tmp / "train.parquet"
    t = pq.read_table(header)
    pq.write_table(t.filter(pa.compute.is_valid(t.column("label"))), base)
    corrected = tmp / "corrections.parquet"
    rc = main(["review", "--apply", str(out / "audit.csv"), "--out", str(corrected), "--base-manifest", str(base)])
    assert rc == 0
    fixed = dict(
        zip(*(read_manifest(str(corrected)).column(c).to_pylist() for c in ("image_id", "label")), strict=True)
    )
    assert fixed[rows[0]["image_id"]] == rows[0]["label"] and fixed[rows[1]["image_id"]] == rows[1]["label"]


def test_audit_refuses_a_manifest_without_labels(audited, capsys):
    from jobs.cli import main

    labels_dir, header, _, tmp = audited
    plain = tmp / "plain.parquet"
    pq.write_table(pq.read_table(header).drop_columns(["label"]), plain)
    assert main(["audit", "--labels", labels_dir, "--manifest", str(plain), "--out", str(tmp / "a")]) == 2
    assert "no label column" in capsys.readouterr().err
    assert main(["audit", "--labels", str(tmp / "nowhere"), "--manifest", header, "--out", str(tmp / "a")]) == 2


def test_audit_page_in_a_real_headless_browser(audited):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): the page cannot be rendered here")
    from core.trust.audit import write_audit

    labels_dir, header, wrong, tmp = audited
    out = tmp / "audit"
    write_audit(labels_dir, header, str(out))
    page = out / "audit.html"
    assert "<script" not in page.read_text().lower()
    shot = tmp / "shot.png"
    screenshot(page, shot, 1000)
    gray = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2GRAY)
    assert gray.std() > 20, "the page rendered blank"
    rows = "document.querySelectorAll('table.shares tr').length"
    dom = probed_dom(page, tmp, {"loaded": LOADED_IMAGES, "rows": rows}, 1000)
    loaded = re.search(r'data-loaded="(\d+)"', dom)
    assert loaded and int(loaded.group(1)) == len(wrong), dom[:500]
    assert int(re.search(r'data-rows="(\d+)"', dom).group(1)) >= 3  # the two share tables have rows
