"""Reading straight from a PACS: manifests and pixels over DICOMweb, against a real Orthanc (tests/orthanc.py).

Real DICOM (pydicom's and pydicom-data's test objects, the sample archive's DICOMs) goes in with STOW-RS; the
manifest comes out of QIDO-RS (or Orthanc's change log), the pixels out of WADO-RS, and the labels must be the
ones the same files give from disk.  Skipped with the reason where Orthanc or its DICOMweb plugin is missing.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.uid import generate_uid

from core import errors, readers
from core.io import access, dicomweb, schema
from core.io.dicomweb_listing import read_cursor
from tests.dicom_sets import PYDICOM_ROOT, pydicom_data_root

PYDICOM_FILES = [
    "dicomdirtests/77654033/CR1/6154",
    "dicomdirtests/77654033/CR2/6247",
    "dicomdirtests/77654033/CR3/6278",
    "CT_small.dcm",  # out of the bundle's scope: skipped from its header, from disk and server alike
    "MR_small.dcm",
    "JPEG2000.dcm",  # J2K: Orthanc without GDCM answers 500 unless asked for the stored transfer syntax
]
PYDICOM_DATA_FILES = ["RG3_J2KR.dcm", "RG1_J2KI.dcm"]  # real CR radiographs, JPEG 2000


def _manifest(args: list[str]) -> int:
    from jobs.manifest import main

    return main(args)


@pytest.fixture(scope="module")
def uploaded(orthanc, small_archive) -> dict[str, Path]:
    """SOP Instance UID -> the file on disk, for everything this module stored on the server."""
    root, manifest = small_archive
    table = pq.read_table(manifest)
    paths = [Path(u) for u, f in zip(table.column("uri").to_pylist(), table.column("format").to_pylist(), strict=True)
             if f.startswith("dicom")]
    paths += [PYDICOM_ROOT / n for n in PYDICOM_FILES]
    extra = pydicom_data_root()
    paths += [extra / n for n in PYDICOM_DATA_FILES] if extra is not None else []
    uids = orthanc.store(paths)
    return dict(zip(uids, paths, strict=True))


def _server_ids(orthanc) -> set[str]:
    """Every SOP Instance UID on the server, from Orthanc's own REST API (not from the code under test)."""
    import requests

    auth = (orthanc.user, orthanc.password)
    found = requests.get(f"{orthanc.root}/instances", params={"expand": ""}, auth=auth, timeout=10).json()
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in found}


def test_manifest_lists_every_instance_and_nothing_identifying(orthanc, uploaded, tmp_path):
    out = tmp_path / "m.parquet"
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in schema.DICOMWEB_MANIFEST_SCHEMA]
    ids = table.column(schema.IMAGE_ID).to_pylist()
    assert set(ids) == _server_ids(orthanc) and set(uploaded) <= set(ids) and len(ids) == len(set(ids))
    for uri, sop in zip(table.column(schema.URI).to_pylist(), ids, strict=True):
        ref = dicomweb.parse_uri(uri)
        assert uri.startswith(f"dicomweb+{orthanc.dicomweb}/studies/") and ref.sop == sop
    cursor = read_cursor(table.schema)
    assert cursor["server"] == orthanc.dicomweb and cursor["method"] == "full" and cursor["changes_last"] > 0
    # No patient attribute: no name, ID or birth date of any uploaded object appears in the file's bytes.
    raw = out.read_bytes()
    for path in uploaded.values():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 4:
                assert value.encode() not in raw, keyword
    assert orthanc.password.encode() not in raw

    crdx = tmp_path / "crdx.parquet"
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(crdx), "--modalities", "CR,DX"]) == 0
    got = pq.read_table(crdx)
    want = {u for u, p in uploaded.items() if pydicom.dcmread(p, stop_before_pixels=True).Modality in ("CR", "DX")}
    assert set(got.column(schema.IMAGE_ID).to_pylist()) >= want
    assert set(got.column("modality").to_pylist()) <= {"CR", "DX"}


def test_labels_from_the_server_equal_labels_from_disk(ray_session, tiny_bundle, orthanc, uploaded, tmp_path):
    from cluster.label import run_label
    from core.labeling.options import LabelOptions

    bundle, _ = tiny_bundle
    web = tmp_path / "web.parquet"
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(web)]) == 0
    web_table = pq.read_table(web)
    web_table = web_table.filter(pa.compute.is_in(web_table.column(schema.IMAGE_ID), pa.array(list(uploaded))))
    # One run over both copies (one Ray Data pipeline, not two): the disk rows' image_id gets a prefix.
    both = tmp_path / "both.parquet"
    disk_rows = {schema.URI: [str(p) for p in uploaded.values()], schema.IMAGE_ID: [f"disk:{u}" for u in uploaded]}
    pq.write_table(pa.concat_tables([web_table.select([schema.URI, schema.IMAGE_ID]), pa.table(disk_rows)]), both)
    out = tmp_path / "labels"
    summary = run_label(LabelOptions(manifest=str(both), model=bundle, out=str(out), batch_size=8))
    assert summary.done == 2 * len(uploaded)
    rows = pq.read_table(out).to_pylist()
    labels = {
        "web": {r[schema.IMAGE_ID]: r for r in rows if not r[schema.IMAGE_ID].startswith("disk:")},
        "disk": {r[schema.IMAGE_ID][5:]: r for r in rows if r[schema.IMAGE_ID].startswith("disk:")},
    }
    assert labels["web"].keys() == labels["disk"].keys() == uploaded.keys()
    statuses = set()
    for sop, d in labels["disk"].items():
        w = labels["web"][sop]
        statuses.add(d["status"])
        assert (w["status"], w["error"], w["label"], w["source_format"]) == (
            d["status"], d["error"], d["label"], d["source_format"]
        ), sop
        if d["probabilities"] is not None:
            np.testing.assert_allclose(w["probabilities"], d["probabilities"], atol=1e-6)
    assert statuses >= {schema.STATUS_OK, schema.STATUS_SKIPPED}  # radiographs labelled, CT/MR out of scope

    # The credentials never reached a row, a label file or Ray's logs (workers read them from the environment).
    secret = orthanc.password.encode()
    session_dir = Path(ray_session._private.worker._global_node.get_session_dir_path())
    written = [p for p in out.rglob("*") if p.is_file()]
    written += [p for p in (session_dir / "logs").rglob("*") if p.is_file()]
    assert written and not [p for p in written if secret in p.read_bytes()]


def test_pixels_and_errors_of_single_instances(orthanc, uploaded):
    """WADO-RS returns the instance as stored (a J2K one too); a missing one is not_found."""
    sop, path = next((u, p) for u, p in uploaded.items() if p.name == "JPEG2000.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    uri = dicomweb.InstanceRef(orthanc.dicomweb, ds.StudyInstanceUID, ds.SeriesInstanceUID, sop).uri
    from_server = readers.read_image(uri)
    from_disk = readers.read_image(str(path))
    np.testing.assert_array_equal(from_server.pixels, from_disk.pixels)
    from core.model.preprocess import PreprocessConfig, preprocess_file  # the training loader's decode

    cfg = PreprocessConfig(image_size=64)
    np.testing.assert_array_equal(preprocess_file(uri, cfg)[0], preprocess_file(str(path), cfg)[0])
    missing = dicomweb.InstanceRef(orthanc.dicomweb, ds.StudyInstanceUID, ds.SeriesInstanceUID, "1.2.3.4").uri
    with pytest.raises(errors.ScanError) as e:
        readers.read_uri(missing)
    assert e.value.code == errors.NOT_FOUND


def _copy_with_new_uids(path: Path, study_date: str) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyDate = study_date
    return ds


def test_night_two_lists_only_what_arrived(orthanc, uploaded, tmp_path):
    night1 = tmp_path / "night1.parquet"
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(night1)]) == 0
    first = set(pq.read_table(night1).column(schema.IMAGE_ID).to_pylist())

    template = next(p for p in uploaded.values() if p.name.endswith(".dcm") and "sample" not in p.name)
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    fresh = [_copy_with_new_uids(template, today) for _ in range(2)]
    late = _copy_with_new_uids(template, "20050101")  # an old study arriving late (a prior exam imported)
    orthanc.store_datasets([*fresh, late])
    new = {str(d.SOPInstanceUID) for d in [*fresh, late]}

    by_changes = tmp_path / "night2-changes.parquet"
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(by_changes), "--since-manifest", str(night1)]) == 0
    table = pq.read_table(by_changes)
    assert set(table.column(schema.IMAGE_ID).to_pylist()) == new
    assert read_cursor(table.schema)["method"] == "orthanc_changes"

    # Study-date windows (any server): the new studies dated today, not the late arrival dated 2005, and none of
    # night one's instances (de-duplicated by SOP Instance UID against the previous manifest).
    by_date = tmp_path / "night2-date.parquet"
    args = ["--dicomweb", orthanc.dicomweb, "--out", str(by_date), "--since-manifest", str(night1)]
    assert _manifest([*args, "--incremental-method", "study_date"]) == 0
    got = set(pq.read_table(by_date).column(schema.IMAGE_ID).to_pylist())
    assert got == {str(d.SOPInstanceUID) for d in fresh} and not got & first

    # Night three, nothing new: an empty manifest that still carries the cursor forward.
    night3 = tmp_path / "night3.parquet"
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(night3), "--since-manifest", str(by_changes)]) == 0
    quiet = pq.read_table(night3)
    assert quiet.num_rows == 0
    assert read_cursor(quiet.schema)["changes_last"] >= read_cursor(table.schema)["changes_last"]


def test_server_stopped_mid_run_then_rerun_completes(ray_session, tiny_bundle, orthanc, uploaded, tmp_path):
    from cluster.label import run_label
    from core.labeling.options import LabelOptions

    bundle, _ = tiny_bundle
    manifest = tmp_path / "m.parquet"
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(manifest), "--modalities", "CR,DX"]) == 0
    n = pq.read_table(manifest).num_rows
    out = str(tmp_path / "labels")

    def stop_once_planned(line: str) -> None:  # after the preflight and the plan, before any image is fetched
        if line.startswith("[label]") and "to do" in line:
            orthanc.stop()

    try:
        opts = LabelOptions(manifest=str(manifest), model=bundle, out=out, batch_size=8)
        first = run_label(opts, log=stop_once_planned)
    finally:
        orthanc.start()
    assert first.done == n and first.failed == n and set(first.errors) == {errors.SERVER_UNAVAILABLE}
    again = run_label(LabelOptions(manifest=str(manifest), model=bundle, out=out, batch_size=8))
    assert again.todo == n and again.failed == 0  # server_unavailable is transient: retried
    rows = pq.read_table(out).to_pylist()
    listed = set(pq.read_table(manifest).column(schema.IMAGE_ID).to_pylist())
    assert len(rows) == n and {r[schema.IMAGE_ID] for r in rows} == listed
    assert all(r["status"] != schema.STATUS_ERROR for r in rows)


def test_wrong_credentials_are_refused_before_any_work(orthanc, uploaded, tiny_bundle, tmp_path, monkeypatch, capsys):
    from jobs.label import main as label_main

    manifest = tmp_path / "m.parquet"
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(manifest)]) == 0
    monkeypatch.setenv("SCANLABEL_DICOMWEB_PASSWORD", "not-the-password")
    assert _manifest(["--dicomweb", orthanc.dicomweb, "--out", str(tmp_path / "again.parquet")]) == 2
    assert not (tmp_path / "again.parquet").exists()
    out = tmp_path / "labels"
    bundle, _ = tiny_bundle
    assert label_main(["--manifest", str(manifest), "--model", bundle, "--out", str(out)]) == 2
    assert not out.exists()  # refused before the lease, the plan or any fetch
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "SCANLABEL_DICOMWEB_USER" in err and "not-the-password" not in err


def test_a_server_that_caps_results_is_an_error_not_a_short_manifest(uploaded, tmp_path):
    """Orthanc's LimitFindInstances truncates a query silently; the walk checks each series' reported count."""
    from tests.conftest import free_port
    from tests.orthanc import Orthanc

    capped = Orthanc(tmp_path / "capped", free_port(), free_port(), "u", "p", limit_find_instances=2)
    capped.start()
    try:
        template = next(iter(uploaded.values()))
        series = [_copy_with_new_uids(template, "20240101") for _ in range(4)]
        for ds in series[1:]:
            ds.StudyInstanceUID, ds.SeriesInstanceUID = series[0].StudyInstanceUID, series[0].SeriesInstanceUID
        capped.store_datasets(series)
        env = {"SCANLABEL_DICOMWEB_USER": "u", "SCANLABEL_DICOMWEB_PASSWORD": "p"}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            assert _manifest(["--dicomweb", capped.dicomweb, "--out", str(tmp_path / "m.parquet")]) == 2
    finally:
        capped.stop()


def test_uris_credentials_and_roots(tmp_path):
    ref = dicomweb.parse_uri("dicomweb+https://pacs:8443/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4")
    assert (ref.base, ref.study, ref.series, ref.sop) == ("https://pacs:8443/dicom-web", "1.2", "1.2.3", "1.2.3.4")
    assert ref.uri == "dicomweb+https://pacs:8443/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4"
    for bad in ("dicomweb+https://pacs/dicom-web/studies/1.2", "dicomweb+ftp://pacs/studies/1/series/2/instances/3"):
        with pytest.raises(errors.ScanError):
            dicomweb.parse_uri(bad)
    with pytest.raises(ValueError, match="credentials in the URL"):
        dicomweb.check_base_url("https://user:secret@pacs/dicom-web")
    assert dicomweb.HttpOptions().verify() is True  # TLS verification unless a deployment turns it off

    secret = tmp_path / "creds.json"
    secret.write_text('{"token": "abc"}')
    creds = dicomweb.credentials_from_env({dicomweb.ENV_CREDENTIALS_FILE: str(secret)})
    assert creds.token == "abc" and "abc" not in repr(creds)
    assert dicomweb.credentials_from_env({"SCANLABEL_DICOMWEB_USER": "u"}).username == "u"

    roots = ["dicomweb+https://pacs/dicom-web"]
    assert access.is_allowed(ref.uri.replace("pacs:8443", "pacs"), roots)
    assert not access.is_allowed(ref.uri.replace("pacs:8443", "evil"), roots)
    assert not access.is_allowed(ref.uri, roots)  # another port is another server


def test_decode_batch_bounds_requests_in_flight(orthanc, uploaded):
    """The prefetch window: results in order, whatever the window."""
    uris = []
    for sop, path in list(uploaded.items())[:6]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uris.append(dicomweb.InstanceRef(orthanc.dicomweb, ds.StudyInstanceUID, ds.SeriesInstanceUID, sop).uri)
    for window in (1, 3, 10):
        got = list(dicomweb.in_order(lambda u: dicomweb.fetch_instance(u, 1 << 26), uris, window))
        assert [pydicom.dcmread(__import__("io").BytesIO(b)).SOPInstanceUID for b in got] == [
            dicomweb.parse_uri(u).sop for u in uris
        ]
    assert os.environ["SCANLABEL_DICOMWEB_PASSWORD"] == orthanc.password
