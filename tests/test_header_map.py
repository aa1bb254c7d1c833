"""The DICOM-header → model-class mapping, its override file, and header_agrees in the labeling output."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from core.labeling.batches import HEADER_CLASS, OK, PIXELS, BatchClassifier
from core.readers import header_map
from core.readers.header_map import DEFAULT_HEADER_MAP, header_agrees, load_header_map, map_header


@pytest.mark.parametrize(
    "body_part, expected",
    [
        ("SKULL", "head"),
        ("HEAD", "head"),
        ("brain", "head"),
        ("CHEST", "chest"),
        ("THORAX", "chest"),
        ("Lung", "chest"),
        ("ABDOMEN", "abdomen"),
        ("ABD", "abdomen"),
        ("PELVIS", "pelvis"),
        ("HIP", "pelvis"),
        ("ARM", "arm"),
        ("HUMERUS", "arm"),
        ("FOREARM", "arm"),
        ("ELBOW", "arm"),
        ("SHOULDER", "arm"),
        ("UPPER ARM", "arm"),
        ("UPPERARM", "arm"),
        ("LEG", "leg"),
        ("FEMUR", "leg"),
        ("KNEE", "leg"),
        ("TIBIA", "leg"),
        ("ANKLE", "leg"),
        ("FOOT", "leg"),
        ("LOWER_LEG", "leg"),
        ("HAND", "hand"),
        ("WRIST", "hand"),
        ("FINGER", "hand"),
        ("L HAND", "hand"),
        ("r-wrist", "hand"),
        # deliberately unmapped or ambiguous: no verdict rather than a wrong one
        ("CSPINE", None),
        ("L SPINE", None),
        ("EXTREMITY", None),
        ("CHESTABDOMEN", None),
        ("CHEST ABDOMEN", None),
        ("HAND WRIST", "hand"),  # two terms, one class
        ("ARM HAND", None),  # two classes
        ("PHANTOM", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_default_body_part_mapping(body_part, expected):
    assert map_header(body_part, None) == expected


def test_sample_archive_headers_all_map_to_their_class():
    from core.synthetic.sample_archive import DICOM_BODY_PART

    for cls, terms in DICOM_BODY_PART.items():
        for term in terms:
            assert map_header(term) == cls


def test_study_description_is_used_only_when_body_part_is_empty():
    assert map_header(None, "XR HAND 3 VIEWS LEFT") == "hand"
    assert map_header("", "CT HEAD WO CONTRAST") == "head"
    assert map_header("CHEST", "XR HAND 3 VIEWS") == "chest"
    assert map_header("EXTREMITY", "XR HAND") is None  # a present but unmapped body part is final
    assert map_header(None, "CT CHEST ABD PELVIS W CONTRAST") is None  # several classes
    assert map_header(None, "LEGACY IMPORT") is None  # words, not substrings


def test_every_default_value_is_a_class_or_none():
    assert set(DEFAULT_HEADER_MAP.values()) <= {*header_map.CLASSES, None}
    assert all(k == header_map.normalise(k) for k in DEFAULT_HEADER_MAP)


def test_load_header_map_overrides_extends_and_removes(tmp_path):
    p = tmp_path / "map.json"
    p.write_text(json.dumps({"extremity": "arm", "Shoulder": None, "skull": "chest", "L-SPINE": "pelvis"}))
    mapping = load_header_map(str(p))
    assert map_header("EXTREMITY", None, mapping) == "arm"
    assert map_header("SHOULDER", None, mapping) is None
    assert map_header("SKULL", None, mapping) == "chest"
    assert map_header("L SPINE", None, mapping) == "pelvis"
    assert map_header("KNEE", None, mapping) == "leg"  # defaults kept
    assert load_header_map(None) == DEFAULT_HEADER_MAP
    assert load_header_map(None) is not DEFAULT_HEADER_MAP  # a copy: callers may mutate it


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"KNEE": "knee"}', "must be one of"),
        ('["KNEE"]', "JSON object"),
        ("{not json", "not valid JSON"),
        ('{"": "leg"}', "non-empty"),
    ],
)
def test_bad_header_map_files_are_refused(tmp_path, content, message):
    p = tmp_path / "map.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_header_map(str(p))


def test_header_agrees_truth_table():
    assert header_agrees("hand", "hand") is True
    assert header_agrees("hand", "arm") is False
    assert header_agrees("hand", None) is None
    assert header_agrees(None, "hand") is None


def test_decode_batch_maps_dicom_headers(tmp_path):
    import io
    import warnings

    import pydicom
    from pydicom.data import get_testdata_file

    from core.labeling.batches import decode_batch
    from core.model.preprocess import PreprocessConfig

    uris = []
    for i, (part, desc) in enumerate([("SKULL", None), ("KNEE", None), (None, "XR WRIST 2V"), ("SPINE", None)]):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
        for kw in ("BodyPartExamined", "StudyDescription"):
            if kw in ds:
                delattr(ds, kw)
        if part:
            ds.BodyPartExamined = part
        if desc:
            ds.StudyDescription = desc
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(buf)
        (tmp_path / f"{i}.dcm").write_bytes(buf.getvalue())
        uris.append(str(tmp_path / f"{i}.dcm"))
    batch = {"uri": np.array(uris, dtype=object), "image_id": np.array(uris, dtype=object)}
    out = decode_batch(batch, PreprocessConfig(image_size=32))
    assert list(out["header_body_part"]) == ["SKULL", "KNEE", None, "SPINE"]
    assert list(out[HEADER_CLASS]) == ["head", "leg", "hand", None]
    override = {**DEFAULT_HEADER_MAP, "SPINE": "abdomen"}
    assert list(decode_batch(batch, PreprocessConfig(image_size=32), header_map=override)[HEADER_CLASS])[3] == "abdomen"


def test_label_batch_computes_header_agrees():
    """label_batch without TensorFlow: a classifier whose predict is a fixed table."""
    clf = object.__new__(BatchClassifier)
    clf.classes = list(header_map.CLASSES)
    clf.bundle = types.SimpleNamespace(model_id="m-test")
    scores = np.eye(len(clf.classes), dtype=np.float32)
    picks = [clf.classes.index(c) for c in ("head", "leg", "hand", "chest")]
    clf.predict = lambda pixels: scores[picks[: len(pixels)]]
    batch = {
        "image_id": np.array(["a", "b", "c", "d", "e"], dtype=object),
        "uri": np.array(["a", "b", "c", "d", "e"], dtype=object),
        PIXELS: np.zeros((5, 4, 4, 3), np.float32),
        OK: np.array([True, True, True, True, False]),
        "error": np.array([None, None, None, None, "decode_error"], dtype=object),
        "error_detail": np.array([None] * 5, dtype=object),
        "source_format": np.array(["dicom", "dicom", "dicom", "png", None], dtype=object),
        "header_body_part": np.array(["SKULL", "HIP", "WRIST", None, "HAND"], dtype=object),
        HEADER_CLASS: np.array(["head", "pelvis", "hand", None, "hand"], dtype=object),
    }
    table = clf.label_batch(batch)
    rows = table.to_pylist() if hasattr(table, "to_pylist") else None
    agrees = [r["header_agrees"] for r in rows] if rows is not None else list(table["header_agrees"])
    assert agrees == [True, False, True, None, None]
