"""Scope from the DICOM header (core/readers/scope.py): only projection radiographs reach the model.

Real objects: every DICOM file pydicom and pydicom-data ship (split by hand in tests/dicom_sets.py), through the
real decode path, the real classifier and the real label job on a local Ray.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pydicom
import pytest

from core import errors, readers
from core.io import schema
from core.labeling.batches import OK, BatchClassifier, decode_batch
from core.model.bundle import Bundle
from core.model.preprocess import PreprocessConfig
from core.readers import privacy, scope
from tests.dicom_sets import PYDICOM_ROOT, RADIOGRAPHS, dicom_files, pydicom_data_root

CFG = PreprocessConfig(image_size=64)
CR = "1.2.840.10008.5.1.4.1.1.1"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
MG = "1.2.840.10008.5.1.4.1.1.1.2"
CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
RTDOSE = "1.2.840.10008.5.1.4.1.1.481.2"
DETAIL = re.compile(
    r"^[A-Za-z' \[\]]+: modality ([A-Z0-9_]+|absent|unreadable|not a DICOM defined term), "
    r"SOP class ([A-Za-z0-9 \-]+|unregistered or absent); scope [A-Z0-9_,]+$"
)


# --- the rule --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("modality", "sop", "modalities", "in_scope"),
    [
        ("CR", CR, scope.DEFAULT_MODALITIES, True),
        ("DX", DX, scope.DEFAULT_MODALITIES, True),
        ("RG", CR, scope.DEFAULT_MODALITIES, True),
        (None, CR, scope.DEFAULT_MODALITIES, True),  # no Modality: the SOP class says radiograph
        ("CR", None, scope.DEFAULT_MODALITIES, True),  # no SOP class: Modality decides
        (None, None, scope.DEFAULT_MODALITIES, True),  # nothing to judge by: left to the pixels
        ("CT", CT, scope.DEFAULT_MODALITIES, False),
        ("RTDOSE", RTDOSE, scope.DEFAULT_MODALITIES, False),
        ("OT", SC, scope.DEFAULT_MODALITIES, False),
        (None, SC, scope.DEFAULT_MODALITIES, False),  # a secondary capture can hold anything
        ("CR", SC, scope.DEFAULT_MODALITIES, False),  # even when it claims CR
        ("CR", "1.2.826.0.1.3680043.99.7", scope.DEFAULT_MODALITIES, True),  # private SOP class: Modality decides
        (None, MG, scope.DEFAULT_MODALITIES, False),  # mammography is radiography, but not this bundle's
        ("MG", MG, ("CR", "DX", "MG"), True),
        ("CT", CT, ("CR", "DX", "CT"), True),  # a widened scope: the SOP class no longer has to be radiography
        ("CR", CR, ("CT",), False),
        (None, RTDOSE, ("CR", "CT"), False),  # no Modality and not an image storage class
        ("RTDOSE", RTDOSE, ("*",), True),
        ("CT", CT, None, True),
    ],
)
def test_rule(modality, sop, modalities, in_scope):
    reason = scope.out_of_scope_reason(modality, sop, modalities)
    assert (reason is None) == in_scope, reason
    if reason is not None:
        assert DETAIL.match(reason), reason


def test_unreadable_or_undefined_modality_is_never_echoed():
    reason = scope.out_of_scope_reason(None, CR, scope.DEFAULT_MODALITIES, modality_unreadable=True)
    assert reason is not None and "modality unreadable" in reason
    reason = scope.out_of_scope_reason("AB12345", None, scope.DEFAULT_MODALITIES)  # an ID typed into Modality
    assert reason is not None and "AB12345" not in reason and "not a DICOM defined term" in reason


def test_normalize_modalities():
    assert scope.normalize_modalities(" cr, DX ,cr") == ("CR", "DX")
    assert scope.normalize_modalities(["dx"]) == ("DX",)
    assert scope.normalize_modalities("*") == scope.normalize_modalities("all") == ("*",)
    assert scope.normalize_modalities(None) is None
    for bad in ("C R", "", "CR;DX", ","):
        with pytest.raises(ValueError):
            scope.normalize_modalities(bad)


def test_bundle_modalities(tmp_path):
    old = Bundle(str(tmp_path), "m", ["chest"], CFG, training={"backbone": "x"})
    assert old.modalities == scope.DEFAULT_MODALITIES  # bundles from before scope: projection radiographs
    recorded = Bundle(str(tmp_path), "m", ["chest"], CFG, training={"modalities": ["cr", "MG"]})
    assert recorded.modalities == ("CR", "MG")


# --- every real DICOM object ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus():
    if pydicom_data_root() is None:
        pytest.skip("pydicom-data is not installed (pip install -e '.[dev]'): RG1/RG3 are the real radiographs")
    files = dicom_files()
    names = sorted(files)
    batch = {schema.URI: np.array([str(files[n]) for n in names], dtype=object), schema.IMAGE_ID: np.array(names)}
    return names, files, batch, decode_batch(batch, CFG, modalities=scope.DEFAULT_MODALITIES)


def test_only_radiographs_pass_the_default_scope(corpus):
    names, _, _, out = corpus
    outcome = {n: (bool(ok), code) for n, ok, code in zip(names, out[OK], out["error"], strict=True)}
    assert len(outcome) > 200
    assert {n for n in RADIOGRAPHS if outcome[n] != (True, None)} == set()
    leaked = {n: code for n, (ok, code) in outcome.items() if ok and n not in RADIOGRAPHS}
    assert leaked == {}, f"non-radiographs that would reach the model: {leaked}"
    codes = [code for n, (_, code) in outcome.items() if n not in RADIOGRAPHS]
    # Most are decided from the header; the rest have no header to judge by (DICOMDIRs, fragments).
    assert codes.count(errors.OUT_OF_SCOPE) >= 0.85 * len(codes)
    for name in ("rtdose.dcm", "CT_small.dcm", "MR_small.dcm", "rtstruct.dcm", "test-SR.dcm", "waveform_ecg.dcm"):
        assert outcome[name] == (False, errors.OUT_OF_SCOPE), name
    for name in ("pydicom-data/US1_UNCI.dcm", "pydicom-data/OT-PAL-8-face.dcm", "pydicom-data/MR2_UNCI.dcm"):
        assert outcome[name] == (False, errors.OUT_OF_SCOPE), name


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's complaints about the test files' values
def test_error_detail_names_modality_and_sop_class_never_phi(corpus):
    names, files, _, out = corpus
    checked = 0
    for name, code, detail in zip(names, out["error"], out["error_detail"], strict=True):
        if code != errors.OUT_OF_SCOPE:
            continue
        ds = pydicom.dcmread(files[name], force=True, stop_before_pixels=True)
        lowered = detail.lower()
        for value in privacy.phi_values(ds):
            assert value.lower() not in lowered, (name, detail)
        if "[redacted]" in detail:
            continue  # a PHI value happened to equal a word of the detail (mlut_18: PatientName "Modality^LUT")
        assert DETAIL.match(detail), (name, detail)
        modality = str(ds.get("Modality") or "").strip()
        if modality:
            assert f"modality {modality}," in detail, (name, detail)
        name_of_sop = scope.sop_class_name(ds.get("SOPClassUID"))
        if name_of_sop:
            assert f"SOP class {name_of_sop};" in detail, (name, detail)
        checked += 1
    assert checked > 150


def test_out_of_scope_rows_are_skipped_and_never_classified(corpus, tiny_bundle):
    from core.model.bundle import load_bundle

    names, _, _, out = corpus
    classifier = BatchClassifier(load_bundle(tiny_bundle[0]), batch_size=16)
    calls = []
    predict = classifier.predict
    classifier.predict = lambda pixels: calls.append(len(pixels)) or predict(pixels)
    table = classifier.label_batch(out)
    rows = dict(zip(names, table.to_pylist(), strict=True))
    assert sum(calls) == len(RADIOGRAPHS)  # the model saw the radiographs and nothing else
    for name, row in rows.items():
        if name in RADIOGRAPHS:
            assert row["status"] == "ok" and row["label"] is not None
        else:
            assert row["label"] is None and row["probabilities"] is None, name
        if row["error"] == errors.OUT_OF_SCOPE:
            assert row["status"] == schema.STATUS_SKIPPED


def test_header_decides_before_the_pixels():
    """A dose grid whose pixel data is broken is out of scope, not a decode error: its pixels are never read."""
    data = (PYDICOM_ROOT / "rtdose.dcm").read_bytes()
    broken = data[: len(data) - 2000]
    with pytest.raises(errors.ScanError) as e:
        readers.decode_bytes(broken)
    assert e.value.code == errors.DECODE_ERROR
    with pytest.raises(errors.ScanError) as e:
        readers.decode_bytes(broken, modalities=scope.DEFAULT_MODALITIES)
    assert e.value.code == errors.OUT_OF_SCOPE and "modality RTDOSE" in e.value.message


def test_planted_identifiers_in_an_out_of_scope_object_stay_out_of_error_detail():
    canary = "CANARY-PHI-5521"
    ds = pydicom.dcmread(PYDICOM_ROOT / "CT_small.dcm")
    ds.PatientName, ds.PatientID, ds.StudyDescription = canary, canary, canary
    for modality, expect in ((canary, "not a DICOM defined term"), ("DOE^JANE 1970", "unreadable"), ("CT", "CT")):
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom rightly warns that these are not code strings
            ds.Modality = modality
            ds.save_as(buf)
        with pytest.raises(errors.ScanError) as e:
            readers.decode_bytes(buf.getvalue(), modalities=scope.DEFAULT_MODALITIES)
        assert e.value.code == errors.OUT_OF_SCOPE
        assert canary not in e.value.message and "DOE" not in e.value.message
        assert f"modality {expect}," in e.value.message


def test_modalities_override_in_decode_batch():
    files = dicom_files()
    names = ["CT_small.dcm", "dicomdirtests/77654033/CR1/6154", "rtdose.dcm"]
    batch = {schema.URI: np.array([str(files[n]) for n in names], dtype=object), schema.IMAGE_ID: np.array(names)}
    assert list(decode_batch(batch, CFG, modalities=("CT",))[OK]) == [True, False, False]
    assert list(decode_batch(batch, CFG, modalities=("*",))[OK]) == [True, True, True]
    assert list(decode_batch(batch, CFG)[OK]) == [True, True, True]  # no scope given: none applied
    assert list(decode_batch(batch, CFG, modalities=scope.DEFAULT_MODALITIES)[OK]) == [False, True, False]


def test_sample_archive_dicoms_are_in_scope_and_its_secondary_captures_are_not(tmp_path):
    """The generated archive's radiographs (CR / DX objects) pass the default scope, so training and labeling
    see the same images; its non-radiograph secondary captures are skipped by header, its CR-wrapped ones are
    left to the pixels."""
    from core.synthetic.sample_archive import write_sample_archive

    manifest = pq.read_table(write_sample_archive(tmp_path, 15, seed=21, other_count=12))
    out = decode_batch({k: np.array(manifest.column(k).to_pylist(), dtype=object) for k in (schema.URI,
                        schema.IMAGE_ID)}, CFG, modalities=scope.DEFAULT_MODALITIES)  # fmt: skip
    fmt, label = manifest.column("format").to_pylist(), manifest.column("label").to_pylist()
    outcome = list(zip(fmt, label, out[OK], out["error"], strict=True))
    assert all(ok for f, lab, ok, _ in outcome if lab != "other")  # every body-part row, DICOM included
    assert any(f.startswith("dicom") for f, lab, _, _ in outcome if lab != "other")
    sc = [(ok, e) for f, lab, ok, e in outcome if f == "dicom_sc"]
    cr = [(ok, e) for f, lab, ok, e in outcome if f == "dicom_cr"]
    assert sc and all(e == errors.OUT_OF_SCOPE for _, e in sc)
    assert cr and all(ok for ok, _ in cr)


# --- the label job ---------------------------------------------------------------------------------------------
def test_label_job_scope_and_modalities_override(ray_session, tiny_bundle, small_archive, tmp_path):
    from jobs.cli import main

    files = dicom_files()
    png = next(u for u in pq.read_table(small_archive[1]).column("uri").to_pylist() if u.endswith(".png"))
    uris = {
        "ct": str(files["CT_small.dcm"]),
        "cr": str(files["dicomdirtests/77654033/CR2/6247"]),
        "dose": str(files["rtdose.dcm"]),
        "sc": str(files["SC_rgb_jpeg.dcm"]),
        "png": png,
    }
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"uri": list(uris.values()), "image_id": list(uris)}), manifest)
    common = ["label", "--manifest", str(manifest), "--model", tiny_bundle[0], "--batch-size", "8"]

    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    rows = {r["image_id"]: r for r in pads.dataset(str(tmp_path / "default")).to_table().to_pylist()}
    assert {k: (r["status"], r["error"]) for k, r in rows.items()} == {
        "ct": ("skipped", "out_of_scope"),
        "cr": ("ok", None),
        "dose": ("skipped", "out_of_scope"),
        "sc": ("skipped", "out_of_scope"),
        "png": ("ok", None),  # no header: always in scope (pixel-level abstention is its guard)
    }
    assert "modality RTDOSE" in rows["dose"]["error_detail"]
    assert "SOP class Secondary Capture Image Storage" in rows["sc"]["error_detail"]

    assert main([*common, "--out", str(tmp_path / "ct"), "--modalities", "ct"]) == 0
    rows = {r["image_id"]: r for r in pads.dataset(str(tmp_path / "ct")).to_table().to_pylist()}
    assert rows["ct"]["status"] == "ok" and rows["ct"]["label"] is not None
    assert rows["cr"]["error"] == "out_of_scope" and "scope CT" in rows["cr"]["error_detail"]
    assert rows["png"]["status"] == "ok"


def test_label_refuses_a_malformed_modality_list(tiny_bundle, small_archive, tmp_path, capsys):
    from jobs.cli import main

    out = tmp_path / "labels"
    args = ["label", "--manifest", str(small_archive[1]), "--model", tiny_bundle[0], "--out", str(out)]
    with pytest.raises(SystemExit) as e:
        main([*args, "--modalities", "C R"])
    assert e.value.code == 2 and "not a DICOM modality code" in capsys.readouterr().err
    assert not out.exists()
