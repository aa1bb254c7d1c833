"""Real archives end to end on a real local Ray: a hostile corpus labelled by the real job, one row per manifest row
with the right status and code, and a planted patient-identifier canary found in no output file and no log."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pydicom

from jobs.cli import main
from tests.test_hostile_input import CANARY, _canary_variants, _png_header_only

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _corpus(root: Path, outside: Path, archive_manifest: str) -> tuple[list[str], dict[str, tuple[str, str | None]]]:
    """Files plus the (status, error) each must end with; None = any code the readers choose."""
    uris: list[str] = []
    expect: dict[str, tuple[str, str | None]] = {}

    def add(path: Path, status: str, code: str | None) -> None:
        uris.append(str(path))
        expect[str(path)] = (status, code)

    grad = (np.linspace(0, 1, 64 * 48).reshape(48, 64) * 255).astype(np.uint8)
    (root / "zero.png").write_bytes(b"")
    add(root / "zero.png", "error", "empty_file")
    (root / "text.png").write_text("not an image\n" * 5)
    add(root / "text.png", "error", "unsupported_format")
    (root / "truncated.png").write_bytes(cv2.imencode(".png", grad)[1].tobytes()[:200])
    add(root / "truncated.png", "error", "decode_error")
    (root / "bomb.png").write_bytes(_png_header_only(60000, 60000))
    add(root / "bomb.png", "error", "too_large")
    cv2.imwrite(str(root / "deep.png"), (grad.astype(np.uint16) * 257))
    add(root / "deep.png", "ok", None)
    cv2.imwrite(str(root / "rgba.png"), cv2.cvtColor(grad, cv2.COLOR_GRAY2BGRA))
    add(root / "rgba.png", "ok", None)
    truncated_dcm = (PYDICOM_FILES / "CT_small.dcm").read_bytes()[:-3000]
    (root / "truncated.dcm").write_bytes(truncated_dcm)
    add(root / "truncated.dcm", "error", "decode_error")
    add(root / "missing.png", "error", "not_found")
    (outside / "secret.png").write_bytes(cv2.imencode(".png", grad)[1].tobytes())
    os.symlink(outside / "secret.png", root / "escape.png")
    add(root / "escape.png", "error", "outside_allowed_root")
    add(root / ".." / outside.name / "secret.png", "error", "outside_allowed_root")
    for name, data in _canary_variants().items():
        (root / f"phi_{name}").write_bytes(data)
        add(root / f"phi_{name}", "ok" if name in ("intact.dcm", "no_extension") else "any", None)
    pyd = root / "pydicom"
    pyd.mkdir()
    for src in sorted(PYDICOM_FILES.iterdir()):
        if src.is_file():
            shutil.copyfile(src, pyd / src.name)
            add(pyd / src.name, "any", None)
    add(pyd / "rtplan.dcm", "skipped", "no_pixels")
    for uri in pq.read_table(archive_manifest).column("uri").to_pylist()[:10]:
        shutil.copyfile(uri, root / os.path.basename(uri))
        add(root / os.path.basename(uri), "ok", None)
    return list(dict.fromkeys(uris)), expect


def test_hostile_corpus_one_row_each_right_codes_no_phi(ray_session, tiny_bundle, small_archive, tmp_path, capfd):
    root, outside = tmp_path / "corpus", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    uris, expect = _corpus(root, outside, str(small_archive[1]))
    manifest = tmp_path / "manifest.parquet"
    table = pa.table(
        {
            "uri": uris,
            "image_id": [f"row-{i:04d}" for i in range(len(uris))],
            "site": ["north"] * len(uris),
            "patient_name": [CANARY] * len(uris),  # a manifest column not listed in --keep-columns: never copied
        }
    )
    pq.write_table(table, manifest)
    bundle, _ = tiny_bundle
    out = tmp_path / "labels"
    rc = main(
        [
            "label",
            "--manifest",
            str(manifest),
            "--model",
            bundle,
            "--out",
            str(out),
            "--batch-size",
            "16",
            "--allowed-root",
            str(root),
            "--keep-columns",
            "site",
            # Every decoder path on every object, not only projection radiographs: scope is tested below.
            "--modalities",
            "*",
        ]
    )
    assert rc == 0
    result = pads.dataset(str(out)).to_table()
    assert result.num_rows == len(uris) and len(set(result.column("image_id").to_pylist())) == len(uris)
    assert set(result.column("site").to_pylist()) == {"north"} and "patient_name" not in result.column_names
    by_uri = {r["uri"]: r for r in result.to_pylist()}
    for uri, (status, code) in expect.items():
        row = by_uri[uri]
        assert row["status"] in ("ok", "error", "skipped")
        if status != "any":
            assert row["status"] == status, (uri, row["status"], row["error"])
        if code is not None:
            assert row["error"] == code, (uri, row["error"])
        if row["status"] == "ok":
            assert row["error"] is None and row["label"] is not None
        else:
            assert row["error"] and row["label"] is None
    pyd = [r for r in by_uri.values() if r["uri"].startswith(str(root / "pydicom"))]
    assert sum(r["status"] == "ok" for r in pyd) >= 0.6 * len(pyd)  # most of pydicom's own test files decode

    # The canary: in no output file (Parquet, run summary), no captured output, no Ray log.
    captured = capfd.readouterr()
    assert CANARY not in captured.out and CANARY not in captured.err
    needle = CANARY.encode()
    for path in out.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    import ray._private.worker as rw

    logs = Path(rw._global_node.get_session_dir_path()) / "logs"
    for path in logs.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert needle not in path.read_bytes(), path

    # --max-error-rate: the run writes what it did, then exits non-zero with a clear message.
    out2 = tmp_path / "labels2"
    rc = main(
        [
            "label",
            "--manifest",
            str(manifest),
            "--model",
            bundle,
            "--out",
            str(out2),
            "--batch-size",
            "16",
            "--allowed-root",
            str(root),
            "--max-error-rate",
            "0.05",
        ]
    )
    assert rc == 3
    assert "max-error-rate" in capfd.readouterr().err
    result2 = pads.dataset(str(out2)).to_table()
    assert result2.num_rows == len(uris)
    # The default scope (projection radiography) skips the CT-based canary files and pydicom's CT/MR/US/RT/SC
    # objects from their headers; their error_detail names the modality and never the planted identifier.
    by_uri2 = {r["uri"]: r for r in result2.to_pylist()}
    for name in ("intact.dcm", "no_extension", "sr.dcm"):
        row = by_uri2[str(root / f"phi_{name}")]
        assert (row["status"], row["error"]) == ("skipped", "out_of_scope"), (name, row)
        assert "modality CT" in row["error_detail"] and CANARY not in row["error_detail"]
    assert by_uri2[str(root / "pydicom" / "CT_small.dcm")]["error"] == "out_of_scope"
    for path in out2.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path


def test_bad_allowed_root_is_refused_before_any_work(tiny_bundle, small_archive, tmp_path, capfd):
    bundle, _ = tiny_bundle
    out = tmp_path / "labels"
    rc = main(
        [
            "label",
            "--manifest",
            str(small_archive[1]),
            "--model",
            bundle,
            "--out",
            str(out),
            "--allowed-root",
            str(tmp_path / "no-such-dir"),
        ]
    )
    assert rc == 2 and not out.exists()
