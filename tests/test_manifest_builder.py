"""`scanlabel manifest` on the real NIH ChestX-ray14 table format and on real file trees."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import ManifestError
from core.io.manifests import (
    NIH_LABEL,
    build_nih_manifest,
    build_tree_manifest,
    classify_file,
    read_nih_rows,
    write_manifest,
)
from core.synthetic.phantoms import CLASSES
from jobs.cli import main

NIH_CSV = Path(__file__).parent / "data" / "nih_Data_Entry_2017_head300.csv"


def _raw_lines() -> list[str]:
    return NIH_CSV.read_text().splitlines()


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- NIH ------------------------------------------------------------------------------------------------------


def test_fixture_is_the_real_format():
    """The fixture must keep the quirk the parser exists for: 11 fields under a header of 9 names."""
    header, *rows = list(csv.reader(NIH_CSV.open(newline="")))
    assert len(rows) == 300
    assert "OriginalImage[Width,Height]" in ",".join(header)
    assert len(header) == 11 and all(len(r) >= 11 for r in rows)


def test_nih_manifest_rows_ids_uris_and_label(tmp_path):
    build = build_nih_manifest(str(NIH_CSV), "s3://hospital-archive/nih/images")
    t = build.table
    assert t.num_rows == 300 and build.source_rows == 300 and build.dropped_missing == 0
    ids = t.column("image_id").to_pylist()
    expected_ids = [line.split(",", 1)[0] for line in _raw_lines()[1:]]
    assert ids == expected_ids
    assert ids[:3] == ["00000001_000.png", "00000001_001.png", "00000001_002.png"]
    assert t.column("uri").to_pylist()[0] == "s3://hospital-archive/nih/images/00000001_000.png"
    assert set(t.column("label").to_pylist()) == {NIH_LABEL} and NIH_LABEL in CLASSES

    local = build_nih_manifest(str(NIH_CSV), str(tmp_path / "images")).table
    assert local.column("uri").to_pylist()[1] == os.path.join(str(tmp_path / "images"), "00000001_001.png")

    # a relative images root still gives absolute URIs: jobs run from another working directory
    rel = build_nih_manifest(str(NIH_CSV), "images").table
    assert all(os.path.isabs(u) for u in rel.column("uri").to_pylist())


def test_nih_manifest_column_types_and_no_patient_id():
    t = build_nih_manifest(str(NIH_CSV), "/data/nih").table
    types = {f.name: f.type for f in t.schema}
    for name in ("finding_labels", "patient_sex", "view_position", "uri", "image_id", "label"):
        assert pa.types.is_string(types[name]), name
    for name in ("follow_up", "patient_age", "original_width", "original_height"):
        assert pa.types.is_integer(types[name]), name
    for name in ("pixel_spacing_x", "pixel_spacing_y"):
        assert pa.types.is_floating(types[name]), name
    assert not any("patient_id" in c.lower().replace(" ", "_") for c in t.column_names)
    assert set(t.column("patient_sex").to_pylist()) <= {"M", "F"}
    assert set(t.column("view_position").to_pylist()) <= {"PA", "AP"}


def test_nih_eleven_field_rows_map_by_position():
    """Compare against the raw CSV line: width/height and spacing x/y come from fields 8-11, not shifted."""
    t = build_nih_manifest(str(NIH_CSV), "/data/nih").table
    rows = {r["image_id"]: r for r in t.to_pylist()}
    for line in (_raw_lines()[1], _raw_lines()[3], _raw_lines()[-1]):
        f = line.split(",")
        r = rows[f[0]]
        assert r["finding_labels"] == f[1]
        assert r["follow_up"] == int(f[2])
        assert r["patient_age"] == int(f[4])
        assert (r["patient_sex"], r["view_position"]) == (f[5], f[6])
        assert (r["original_width"], r["original_height"]) == (int(f[7]), int(f[8]))
        assert (r["pixel_spacing_x"], r["pixel_spacing_y"]) == (float(f[9]), float(f[10]))
        assert "patient_id" not in r and len(r) == 12  # 11 CSV fields - Patient ID + uri + label
    first = rows["00000001_000.png"]
    assert (first["original_width"], first["original_height"]) == (2682, 2749)
    assert first["pixel_spacing_x"] == pytest.approx(0.143)


def test_nih_trailing_empty_field_quoted_header_and_age_strings(tmp_path):
    """Other copies of the table: a trailing comma on every line, a quoted header, DICOM-style ages."""
    variant = tmp_path / "variant.csv"
    variant.write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        '"OriginalImage[Width,Height]","OriginalImagePixelSpacing[x,y]",\n'
        "00000001_000.png,Cardiomegaly,0,1,058Y,M,PA,2682,2749,0.143,0.143,\n"
        "00000002_000.png,No Finding,0,2,006M,F,AP,2500,2048,0.171,0.168,\n"
    )
    rows = read_nih_rows(str(variant))
    assert [r["patient_age"] for r in rows] == [58, 0]
    assert rows[1]["pixel_spacing_y"] == pytest.approx(0.168)
    assert all("Patient ID" not in r and "patient_id" not in r for r in rows)


@pytest.mark.parametrize(
    "body, message",
    [
        ("00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143\n", "expected 11 fields"),
        ("00000001_000.png,Cardio,megaly,0,1,58,M,PA,2682,2749,0.143,0.143\n", "does not line up"),
        ("00000001_000.png,Cardiomegaly,zero,1,58,M,PA,2682,2749,0.143,0.143\n", "follow_up"),
        ("../../etc/passwd,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143\n", "plain file name"),
    ],
)
def test_nih_misaligned_or_bad_rows_are_refused_with_line_number(tmp_path, body, message):
    header = _raw_lines()[0]
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n" + body)
    with pytest.raises(ManifestError, match=message) as e:
        read_nih_rows(str(bad))
    assert ":2:" in str(e.value)


def test_non_nih_csv_is_refused(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("uri,image_id\n/a.png,a\n")
    with pytest.raises(ManifestError, match="not an NIH ChestX-ray14"):
        build_nih_manifest(str(other), "/data")


def test_nih_check_exists_drops_and_counts_missing(tmp_path):
    images = tmp_path / "images"
    ids = [line.split(",", 1)[0] for line in _raw_lines()[1:]]
    for name in ids[:-7]:
        _write(images / name)
    build = build_nih_manifest(str(NIH_CSV), str(images), check_exists=True)
    assert build.table.num_rows == 293 and build.dropped_missing == 7
    assert set(build.missing_examples) <= set(ids[-7:]) and build.missing_examples
    assert not (set(build.table.column("image_id").to_pylist()) & set(ids[-7:]))

    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="none of the 300"):
        build_nih_manifest(str(NIH_CSV), str(tmp_path / "empty"), check_exists=True)
    with pytest.raises(ManifestError, match="does not exist"):
        build_nih_manifest(str(NIH_CSV), str(tmp_path / "nope"), check_exists=True)


# --- file trees -----------------------------------------------------------------------------------------------


@pytest.fixture()
def tree(tmp_path) -> Path:
    root = tmp_path / "archive"
    _write(root / "chest" / "a.png", b"12345")
    _write(root / "chest" / "2024" / "b.JPG")
    _write(root / "head" / "c.dcm")
    _write(root / "head" / "series1" / "IM0001")  # extension-less DICOM
    _write(root / "head" / "1.2.840.10008.5.1.4.1.1.2.999")  # named by SOP Instance UID
    _write(root / "top.jpeg")
    # not images / not to be labeled
    _write(root / ".DS_Store")
    _write(root / "chest" / ".tmp-123-a.png")
    _write(root / ".snapshot" / "chest" / "old.png")
    _write(root / "head" / "DICOMDIR")
    _write(root / "notes.txt")
    _write(root / "manifest.parquet")
    return root


def test_tree_manifest_lists_nested_images_and_skips_the_rest(tree):
    build = build_tree_manifest(str(tree))
    t = build.table
    ids = t.column("image_id").to_pylist()
    assert sorted(ids) == sorted(
        [
            "chest/a.png",
            "chest/2024/b.JPG",
            "head/c.dcm",
            "head/series1/IM0001",
            "head/1.2.840.10008.5.1.4.1.1.2.999",
            "top.jpeg",
        ]
    )
    assert build.skipped == {"hidden": 3, "not_an_image": 1, "unsupported_extension": 2}
    assert build.source_rows == 12
    uris = dict(zip(ids, t.column("uri").to_pylist(), strict=True))
    assert uris["chest/2024/b.JPG"] == str(tree / "chest" / "2024" / "b.JPG")
    assert all(os.path.isabs(u) and os.path.exists(u) for u in uris.values())
    sizes = dict(zip(ids, t.column("size_bytes").to_pylist(), strict=True))
    assert sizes["chest/a.png"] == 5 and pa.types.is_integer(t.schema.field("size_bytes").type)
    assert "label" not in t.column_names  # no label invented unless asked for


def test_tree_manifest_label_from_parent(tree):
    build = build_tree_manifest(str(tree), label_from_parent=True)
    labels = dict(zip(build.table.column("image_id").to_pylist(), build.table.column("label").to_pylist(), strict=True))
    assert labels["chest/a.png"] == "chest"
    assert labels["head/c.dcm"] == "head"
    assert labels["chest/2024/b.JPG"] == "2024"  # the immediate parent, as documented
    assert labels["top.jpeg"] is None and build.unlabeled == 1


def test_tree_manifest_image_ids_are_stable_when_the_archive_moves(tree, tmp_path):
    before = build_tree_manifest(str(tree)).table.column("image_id").to_pylist()
    moved = tmp_path / "moved"
    tree.rename(moved)
    assert build_tree_manifest(str(moved) + "/").table.column("image_id").to_pylist() == before


def test_tree_manifest_refusals(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_tree_manifest(str(tmp_path / "nope"))
    _write(tmp_path / "only" / ".hidden.png")
    _write(tmp_path / "only" / "x.txt")
    with pytest.raises(ManifestError, match="no image files"):
        build_tree_manifest(str(tmp_path / "only"))


@pytest.mark.parametrize(
    "rel, reason",
    [
        ("a/b.png", None),
        ("a/b.DICOM", None),
        ("a/b", None),
        ("a/.b.png", "hidden"),
        (".cache/b.png", "hidden"),
        ("a/DICOMDIR", "not_an_image"),
        ("a/b.png.part", "unsupported_extension"),
    ],
)
def test_classify_file(rel, reason):
    assert classify_file(rel) == reason


# --- writing and the CLI --------------------------------------------------------------------------------------


def test_write_manifest_is_atomic_and_validated(tmp_path):
    out = tmp_path / "sub" / "m.parquet"
    table = build_nih_manifest(str(NIH_CSV), "/data").table
    assert write_manifest(table, str(out)) == str(out)
    assert pq.read_table(out).equals(table)
    assert [p.name for p in out.parent.iterdir()] == ["m.parquet"]  # no temporary left behind
    dup = pa.table({"uri": ["/a", "/b"], "image_id": ["x", "x"]})
    with pytest.raises(ManifestError, match="duplicate"):
        write_manifest(dup, str(tmp_path / "dup.parquet"))
    assert not (tmp_path / "dup.parquet").exists()


def test_cli_nih_and_root(tree, tmp_path, capsys):
    nih_out = tmp_path / "nih.parquet"
    rc = main(["manifest", "--nih-csv", str(NIH_CSV), "--images-root", "s3://bucket/nih", "--out", str(nih_out)])
    assert rc == 0
    t = pq.read_table(nih_out)
    assert t.num_rows == 300 and "Patient ID" not in t.column_names and "patient_id" not in t.column_names

    tree_out = tmp_path / "tree.parquet"
    assert main(["manifest", "--root", str(tree), "--out", str(tree_out), "--label-from-parent"]) == 0
    t = pq.read_table(tree_out)
    assert t.num_rows == 6 and "label" in t.column_names
    out = capsys.readouterr().out
    assert "300 rows" in out and "skipped" in out


def test_cli_refusals(tmp_path, capsys):
    assert main(["manifest", "--nih-csv", str(NIH_CSV), "--out", str(tmp_path / "m.parquet")]) == 2
    assert "--images-root" in capsys.readouterr().err
    assert main(["manifest", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "m.parquet")]) == 2
    assert not (tmp_path / "m.parquet").exists()
    with pytest.raises(SystemExit):
        main(["manifest", "--out", str(tmp_path / "m.parquet")])  # neither --nih-csv nor --root


def test_python_dash_m_entry_point(tmp_path):
    from jobs.manifest import main as module_main

    out = tmp_path / "m.parquet"
    assert module_main(["--nih-csv", str(NIH_CSV), "--images-root", str(tmp_path), "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == 300
