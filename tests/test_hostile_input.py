"""Hostile and broken input through ``decode_batch``: every row gets the right code, the batch never fails,
and no patient identifier from a DICOM header ever reaches an output column, an error detail or a log."""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from core import errors, readers
from core.labeling.batches import OK, PIXELS, decode_batch
from core.model.preprocess import PreprocessConfig
from core.readers.privacy import PHI_KEYWORDS

CFG = PreprocessConfig(image_size=32)
DATA = Path(pydicom.__file__).parent / "data" / "test_files"


def _decode(paths, **kw) -> dict:
    uris = [str(p) for p in paths]
    return decode_batch({"uri": np.array(uris, dtype=object), "image_id": np.array(uris, dtype=object)}, CFG, **kw)


def _one(path, **kw) -> tuple[str | None, str | None, dict]:
    out = _decode([path], **kw)
    return out["error"][0], out["error_detail"][0], out


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return readers.PNG_MAGIC + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _gradient(h: int = 48, w: int = 64) -> np.ndarray:
    return (np.linspace(0, 1, h * w).reshape(h, w) ** 0.8).astype(np.float32)


def _dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue().replace(DS_PLACEHOLDER.encode(), CANARY.encode())


# --- content ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, make, code",
    [
        ("zero.png", lambda: b"", errors.EMPTY_FILE),
        ("text.png", lambda: b"this is not an image\n" * 10, errors.UNSUPPORTED_FORMAT),
        ("text.dcm", lambda: b"PatientName,DOE^JANE\n" * 10, errors.UNSUPPORTED_FORMAT),
        ("truncated.png", lambda: _png((_gradient() * 255).astype(np.uint8))[:300], errors.DECODE_ERROR),
        ("header_only.png", lambda: _png_header_only(64, 48), errors.DECODE_ERROR),
        ("bomb.png", lambda: _png_header_only(60000, 60000), errors.TOO_LARGE),
        (
            "truncated.jpg",
            lambda: cv2.imencode(".jpg", (_gradient() * 255).astype(np.uint8))[1].tobytes()[:200],
            errors.DECODE_ERROR,
        ),
        ("truncated_header.dcm", lambda: (DATA / "CT_small.dcm").read_bytes()[:1000], errors.DECODE_ERROR),
        ("truncated_pixels.dcm", lambda: (DATA / "CT_small.dcm").read_bytes()[:-3000], errors.DECODE_ERROR),
        ("preamble_only.dcm", lambda: (DATA / "CT_small.dcm").read_bytes()[:132], errors.DECODE_ERROR),
        ("gzipped.dcm.gz", lambda: gzip.compress((DATA / "CT_small.dcm").read_bytes()), errors.UNSUPPORTED_FORMAT),
        ("garbage.dcm", lambda: b"\0" * 128 + b"DICM" + os.urandom(4096), None),  # any code, never a crash
    ],
)
def test_bad_content_gets_its_code(tmp_path, name, make, code):
    p = tmp_path / name
    p.write_bytes(make())
    err, detail, out = _one(p)
    assert not out[OK][0]
    assert err in errors.ALL_CODES, (err, detail)
    if code is not None:
        assert err == code, (err, detail)
    assert not out[PIXELS][0].any()  # failed rows carry a zero image


def test_dicom_header_claiming_huge_dimensions_is_too_large(tmp_path):
    ds = pydicom.dcmread(DATA / "CT_small.dcm")
    ds.Rows, ds.Columns = 60000, 60000  # PixelData itself is still 128x128: no decoder must ever see it
    p = tmp_path / "bomb.dcm"
    p.write_bytes(_dicom_bytes(ds))
    err, detail, _ = _one(p)
    assert err == errors.TOO_LARGE, detail


def test_max_pixels_and_max_bytes_are_configurable(tmp_path):
    p = tmp_path / "small.png"
    p.write_bytes(_png((_gradient() * 255).astype(np.uint8)))  # 64x48 = 3072 px
    assert _one(p)[0] is None
    assert _one(p, max_pixels=3000)[0] == errors.TOO_LARGE
    assert _one(p, max_pixels=4000)[0] is None
    assert _decode([p], max_pixels=None)["error"][0] is None  # None: the bundle's cfg.max_pixels
    assert _one(p, max_bytes=100)[0] == errors.TOO_LARGE
    assert (
        decode_batch(
            {"uri": np.array([str(p)]), "image_id": np.array(["x"])}, PreprocessConfig(image_size=32, max_pixels=3000)
        )["error"][0]
        == errors.TOO_LARGE
    )


@pytest.mark.parametrize("depth, channels", [(16, 1), (8, 4), (16, 4), (16, 3)])
def test_deep_and_alpha_pngs_decode(tmp_path, depth, channels):
    g = _gradient()
    scale, dtype = (65535, np.uint16) if depth == 16 else (255, np.uint8)
    img = (g * scale).astype(dtype)
    if channels > 1:
        img = np.dstack([img] * channels)
        if channels == 4:
            img[..., 3] = scale  # opaque alpha
    p = tmp_path / "x.png"
    p.write_bytes(_png(img))
    err, detail, out = _one(p)
    assert err is None, detail
    assert out["source_format"][0] == "png"
    px = out[PIXELS][0][..., 0] / 255  # the compact form holds 8-bit levels
    assert px.max() > 0.9 and px.min() == 0.0


def test_gray_alpha_and_palette_pngs_decode(tmp_path):
    from PIL import Image

    for mode in ("LA", "P"):
        im = Image.fromarray((_gradient() * 255).astype(np.uint8)).convert(mode)
        p = tmp_path / f"{mode}.png"
        im.save(p)
        assert _one(p)[0] is None, mode


def test_cmyk_jpeg_decodes(tmp_path):
    from PIL import Image

    g = (_gradient() * 255).astype(np.uint8)
    im = Image.merge("CMYK", [Image.fromarray(255 - g)] * 3 + [Image.fromarray(np.zeros_like(g))])
    p = tmp_path / "cmyk.jpg"
    im.save(p, "JPEG", quality=95)
    assert p.read_bytes()[:3] == readers.JPEG_MAGIC
    err, detail, out = _one(p)
    assert err is None, detail
    px = out[PIXELS][0][..., 0]
    # bright gradient survives the CMYK round trip: left (dark) to right (bright)
    assert px[16, 4] < px[16, 28]


# --- paths -----------------------------------------------------------------------------------------------------
def test_missing_path_directory_fifo_device_and_nul(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening a FIFO for reading would block forever without O_NONBLOCK
    uris = [tmp_path / "nope.png", tmp_path, fifo, "/dev/zero", f"{tmp_path}/a\0b.png", tmp_path / "nope" / "x"]
    out = _decode(uris)
    assert list(out["error"]) == [
        errors.NOT_FOUND,
        errors.UNSUPPORTED_FORMAT,
        errors.UNSUPPORTED_FORMAT,
        errors.UNSUPPORTED_FORMAT,
        errors.NOT_FOUND,
        errors.NOT_FOUND,
    ]


@contextlib.contextmanager
def _as_unprivileged_user():
    """Drop the effective uid (root bypasses file modes); the real/saved uid stays 0 so it can be restored."""
    if os.geteuid() != 0:
        yield
        return
    nobody = 65534
    os.setegid(nobody)
    os.seteuid(nobody)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_unreadable_file_is_permission_denied(tmp_path):
    # A world-traversable directory: pytest's tmp_path parents are 0700, which would deny the *path* instead.
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="scanlabel-perm-"))
    try:
        base.chmod(0o755)
        png = _png((_gradient() * 255).astype(np.uint8))
        img, readable = base / "locked.png", base / "open.png"
        img.write_bytes(png)
        readable.write_bytes(png)
        img.chmod(0o000)
        readable.chmod(0o644)
        with _as_unprivileged_user():
            try:
                with open(img, "rb"):
                    pass
            except PermissionError:
                pass
            else:
                pytest.skip("this environment grants reads despite mode 000 (e.g. CAP_DAC_OVERRIDE kept)")
            out = _decode([img, readable])
        assert out["error"][0] == errors.PERMISSION_DENIED
        assert out["error"][1] is None  # the same process, same privileges, can read a readable file
    finally:
        for p in base.iterdir():
            p.chmod(0o600)
            p.unlink()
        base.rmdir()


def test_symlink_and_dotdot_escapes_are_outside_allowed_root(tmp_path):
    root = tmp_path / "archive"
    secret = tmp_path / "other_cohort"
    root.mkdir()
    secret.mkdir()
    png = _png((_gradient() * 255).astype(np.uint8))
    (secret / "x.png").write_bytes(png)
    (root / "ok.png").write_bytes(png)
    (root / "link.png").symlink_to(secret / "x.png")
    (root / "inner_link.png").symlink_to(root / "ok.png")
    (root / "dirlink").symlink_to(secret)
    uris = [
        root / "ok.png",
        root / "link.png",
        f"{root}/../other_cohort/x.png",
        root / "dirlink" / "x.png",
        root / "inner_link.png",
        f"file://{root}/ok.png",
        f"file://{root}/../other_cohort/x.png",
    ]
    out = _decode(uris, allowed_roots=[str(root)])
    assert list(out["error"]) == [
        None,
        errors.OUTSIDE_ALLOWED_ROOT,
        errors.OUTSIDE_ALLOWED_ROOT,
        errors.OUTSIDE_ALLOWED_ROOT,
        None,
        None,
        errors.OUTSIDE_ALLOWED_ROOT,
    ]
    assert all(d is None or str(secret) not in d for d in out["error_detail"])
    assert list(_decode(uris)["error"]) == [None] * len(uris)  # no roots: no restriction


def test_allowed_root_is_rechecked_after_open(tmp_path):
    """read_uri re-checks the opened descriptor, so a symlink swapped in after check_allowed is still refused."""
    root = tmp_path / "archive"
    root.mkdir()
    (tmp_path / "x.png").write_bytes(_png((_gradient() * 255).astype(np.uint8)))
    (root / "swapped.png").symlink_to(tmp_path / "x.png")
    with pytest.raises(errors.ScanError) as e:
        readers.read_uri(str(root / "swapped.png"), allowed_roots=[str(root)])
    assert e.value.code == errors.OUTSIDE_ALLOWED_ROOT


def test_one_bad_row_never_fails_the_batch(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_png((_gradient() * 255).astype(np.uint8)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    out = _decode([good, bad, tmp_path / "missing", DATA / "rtplan.dcm", DATA / "CT_small.dcm"])
    assert list(out[OK]) == [True, False, False, False, True]
    assert list(out["error"])[2:4] == [errors.NOT_FOUND, errors.NO_PIXELS]
    assert list(out["source_format"]) == ["png", None, None, None, "dicom"]


# --- privacy ---------------------------------------------------------------------------------------------------
CANARY = "CANARY-PHI-7731"
DS_PLACEHOLDER = "987654321987654"  # same length as CANARY


def _canary_dataset():
    from pydicom.datadict import dictionary_VR
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(DATA / "CT_small.dcm")
    for kw in PHI_KEYWORDS:
        vr = dictionary_VR(kw)
        if vr == "SQ":
            item = Dataset()
            item.PatientID = CANARY
            item.IssuerOfPatientID = CANARY
            setattr(ds, kw, [item])
        elif vr in ("US", "SS", "UL", "SL", "FL", "FD"):
            continue
        elif vr == "DS":
            ds.add_new(kw, vr, DS_PLACEHOLDER)  # pydicom cannot hold an invalid DS: patched in the bytes
        else:
            ds.add_new(kw, vr, CANARY)  # invalid for DA/TM/UI/AS: pydicom's complaints must not leak either
    ds.BodyPartExamined = "SKULL"
    return ds


@pytest.fixture
def canary_files(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom rightly objects to canary dates and counts: that's the point
        files = _canary_variants()
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return paths


def _canary_variants() -> dict[str, bytes]:
    intact = _dicom_bytes(_canary_dataset())
    assert intact.count(CANARY.encode()) >= len(PHI_KEYWORDS) - 5
    files = {
        "intact.dcm": intact,
        "truncated_pixels.dcm": intact[:-5000],
        "truncated_header.dcm": intact[: intact.index(CANARY.encode()) + 40],
        "no_extension": intact,
    }
    ds = _canary_dataset()
    ds.NumberOfFrames = DS_PLACEHOLDER  # becomes CANARY in the bytes: unparseable, in a field we do read
    files["bad_frames.dcm"] = _dicom_bytes(ds)
    ds = _canary_dataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC: no decoder
    ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    files["no_decoder.dcm"] = _dicom_bytes(ds)
    ds = _canary_dataset()
    del ds.PixelData
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # an SR: no pixels, skipped
    files["sr.dcm"] = _dicom_bytes(ds)
    return files


def test_no_phi_in_outputs_error_details_warnings_or_logs(canary_files, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _decode(canary_files)
    codes = dict(zip([p.name for p in canary_files], out["error"], strict=True))
    assert codes["intact.dcm"] is None and codes["no_extension"] is None
    assert codes["truncated_pixels.dcm"] == errors.DECODE_ERROR
    assert codes["truncated_header.dcm"] == errors.DECODE_ERROR
    assert codes["bad_frames.dcm"] == errors.DECODE_ERROR
    assert codes["no_decoder.dcm"] == errors.UNSUPPORTED_FORMAT
    assert codes["sr.dcm"] == errors.NO_PIXELS
    assert out["header_body_part"][0] == "SKULL" and out["header_class"][0] == "head"
    for column, values in out.items():
        if column == PIXELS:
            continue
        for v in values:
            assert CANARY not in str(v), (column, v)
    assert not any(CANARY in r.getMessage() for r in caplog.records)
    assert not any(CANARY in str(w.message) for w in caught)
    captured = capfd.readouterr()
    assert CANARY not in captured.out and CANARY not in captured.err


def test_reader_metadata_is_an_allow_list(canary_files):
    meta = readers.read_image(str(canary_files[0])).meta
    assert CANARY not in repr(meta)
    assert "study_description" not in meta  # free text: used for header_class only, never carried
    assert set(meta) <= {
        "source_format", "rows", "columns", "frames", "frame_index", "photometric", "transfer_syntax",
        "voi_applied", "header_body_part", "header_class", "modality", "sop_class",
    }  # fmt: skip


def test_free_text_body_part_is_not_echoed(tmp_path):
    ds = pydicom.dcmread(DATA / "CT_small.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.BodyPartExamined = "Smith, John: left hand"  # not a code string: dropped from output, still mapped
    p = tmp_path / "x.dcm"
    p.write_bytes(_dicom_bytes(ds))
    out = _decode([p])
    assert out["header_body_part"][0] is None
    assert out["header_class"][0] == "hand"


def test_privacy_helpers():
    from core.readers.privacy import phi_values, safe_code_string, scrub

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _canary_dataset()
        ds.PatientName = "Doe^Jane"
    values = phi_values(ds)
    assert CANARY in values and "Doe^Jane" in values and "Jane" in values
    assert "Doe" not in values  # under 4 characters: too short to scrub without mangling every message
    assert scrub(f"failed for {CANARY.lower()} / doe^jane", values) == "failed for [redacted] / [redacted]"
    assert safe_code_string(" SKULL ") == "SKULL" and safe_code_string("L-HAND_2") == "L-HAND_2"
    assert safe_code_string("Doe, Jane") is None and safe_code_string("x" * 40) is None
    assert safe_code_string(None) is None
