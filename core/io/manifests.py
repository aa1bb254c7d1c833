"""Build scanlabel manifests from what archives actually ship: the NIH ChestX-ray14 table, or a tree of files.

Every downstream job starts from a Parquet manifest, so getting one right matters more than getting it fast:
an archive's metadata table has quirks (NIH's header splits two columns on a comma), and a file tree has
noise (hidden files, half-written temporaries, DICOMDIR indexes).  Both builders return a table that has
already passed :func:`core.io.schema.validate_manifest`, and :func:`write_manifest` writes it atomically so a
nightly job never picks up a half-written manifest.

Privacy: nothing that identifies a patient is copied into a manifest.  NIH's ``Patient ID`` column is dropped
(it is a research pseudonym, but still a key that links every study of one person).

No Ray here: this runs on a laptop, in a job, or on a Ray head alike.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core import killpoints
from core.errors import ManifestError
from core.io import schema, storage

# --- NIH ChestX-ray14 ---------------------------------------------------------------------------------------

# Every NIH ChestX-ray14 image is a frontal chest radiograph (PA or AP), so the body-part label is known.
NIH_LABEL = "chest"

# The header as NIH publishes it, in order.  Two names contain a comma *inside brackets* and are written
# without quotes, so each of them spans two physical fields: the header splits into 11 fields and every data
# row has 11 (some releases add a trailing empty 12th).  Each logical column maps to the output column(s) of
# its physical fields; ``None`` means "read, then drop".
_NIH_COLUMNS: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    ("Image Index", ("image_id",)),
    ("Finding Labels", ("finding_labels",)),
    ("Follow-up #", ("follow_up",)),
    ("Patient ID", (None,)),  # patient identifier: never written to a manifest
    ("Patient Age", ("patient_age",)),
    ("Patient Gender", ("patient_sex",)),
    ("View Position", ("view_position",)),
    ("OriginalImage[Width,Height]", ("original_width", "original_height")),
    ("OriginalImagePixelSpacing[x,y]", ("pixel_spacing_x", "pixel_spacing_y")),
)
NIH_FIELD_COUNT = sum(len(outs) for _, outs in _NIH_COLUMNS)  # 11

NIH_MANIFEST_SCHEMA = schema.NIH_MANIFEST_SCHEMA

# Output column -> converter.  Columns not listed are kept as strings.
_INT_COLUMNS = {"follow_up", "original_width", "original_height"}
_FLOAT_COLUMNS = {"pixel_spacing_x", "pixel_spacing_y"}

# Current copies of the table hold plain integer ages; older copies hold DICOM Age Strings (nnnD / nnnW /
# nnnM / nnnY, e.g. "058Y").  Both are accepted; days, weeks and months are floored to whole years.
_AGE_RE = re.compile(r"^(\d{1,3})\s*([DWMY]?)$", re.IGNORECASE)
_AGE_DIVISOR = {"": 1, "Y": 1, "M": 12, "W": 52, "D": 365}

# --- file trees ---------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})
# The index file of DICOM media (PS3.10): extension-less like the images beside it, but it holds no pixels.
_NON_IMAGE_NAMES = frozenset({"dicomdir"})
# DICOM files are often named by their SOP Instance UID ("1.2.840.113619.2.55.3.2831164355.320"): digits
# and dots only, so the "extension" is just the last UID component.  Such names count as extension-less.
_UID_NAME_RE = re.compile(r"^[0-9]+(\.[0-9]+)+$")

TREE_MANIFEST_SCHEMA = schema.TREE_MANIFEST_SCHEMA


@dataclass(frozen=True)
class ManifestBuild:
    """A validated manifest plus what was left out of it and why, so the CLI can say so instead of hiding it."""

    table: pa.Table
    source_rows: int  # data rows in the CSV, or files listed under the root
    dropped_missing: int = 0  # rows whose image file was not found (only with check_exists)
    missing_examples: tuple[str, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files not listed (tree builder)
    unlabeled: int = 0  # rows without a label (tree builder, files directly under the root)


# --- NIH ------------------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"\s+", "", name).lower()


def _logical_header(fields: list[str]) -> list[str]:
    """Re-join header fields that a bracketed, unquoted comma split apart ("OriginalImage[Width" + "Height]")."""
    names: list[str] = []
    pending: str | None = None
    for f in fields:
        pending = f if pending is None else f"{pending},{f}"
        if pending.count("[") <= pending.count("]"):
            names.append(pending.strip())
            pending = None
    if pending is not None:
        names.append(pending.strip())
    return names


def _check_nih_header(fields: list[str], source: str) -> int:
    """Refuse anything that is not the NIH table, so columns are never mapped by position onto the wrong data.

    Returns how many extra *named* columns follow the known ones (their fields are then allowed to be
    non-empty); unnamed trailing columns ("" or pandas' "Unnamed: 11") expect empty fields.
    """
    names = _logical_header(fields)
    expected = [name for name, _ in _NIH_COLUMNS]
    if [_norm(n) for n in names[: len(expected)]] != [_norm(n) for n in expected]:
        raise ManifestError(
            f"{source}: not an NIH ChestX-ray14 Data_Entry table; expected the header to start with "
            f"{expected}, found {names[: len(expected)]}"
        )
    extra = [n for n in names[len(expected) :] if n and not n.lower().startswith("unnamed")]
    return len(extra)


def _parse_int(value: str, column: str, line: int, source: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            as_float = float(value)
        except ValueError:
            as_float = None
        if as_float is not None and as_float.is_integer():
            return int(as_float)
        raise ManifestError(f"{source}:{line}: column {column!r} is not an integer: {value!r}") from None


def _parse_float(value: str, column: str, line: int, source: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ManifestError(f"{source}:{line}: column {column!r} is not a number: {value!r}") from None


def _parse_age(value: str, line: int, source: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    m = _AGE_RE.match(value)
    if not m:
        raise ManifestError(f"{source}:{line}: column 'patient_age' is not an age: {value!r}")
    return int(m.group(1)) // _AGE_DIVISOR[m.group(2).upper()]


def _check_file_name(name: str, line: int, source: str) -> str:
    """An Image Index is joined under the images root, so it must be a bare file name that cannot escape it."""
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ManifestError(f"{source}:{line}: 'Image Index' must be a plain file name, found {name!r}")
    return name


def read_nih_rows(csv_uri: str) -> list[dict]:
    """Parse the NIH Data_Entry CSV into dicts keyed by manifest column names (Patient ID already dropped).

    Parsing is by *position* because the header cannot be parsed by name (see ``_NIH_COLUMNS``).  A row with
    too few fields, or a non-empty field beyond the known ones, is refused with its line number: either means
    the positions no longer line up and every later column would be silently wrong.
    """
    text = storage.read_bytes(csv_uri).decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(f"{csv_uri}: the CSV is empty") from None
    extra_named = _check_nih_header(header, csv_uri)
    outputs = [out for _, outs in _NIH_COLUMNS for out in outs]
    rows: list[dict] = []
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) < NIH_FIELD_COUNT:
            raise ManifestError(
                f"{csv_uri}:{line}: expected {NIH_FIELD_COUNT} fields (the bracketed header names hold two "
                f"values each), found {len(fields)}"
            )
        trailing = fields[NIH_FIELD_COUNT + extra_named :]
        if any(f.strip() for f in trailing):
            raise ManifestError(
                f"{csv_uri}:{line}: unexpected non-empty field(s) after column {NIH_FIELD_COUNT}: {trailing}; "
                "the row does not line up with the NIH header"
            )
        row: dict = {}
        for out, raw in zip(outputs, fields[:NIH_FIELD_COUNT], strict=True):
            if out is None:
                continue  # Patient ID: read past, never kept
            if out == "image_id":
                row[out] = _check_file_name(raw, line, csv_uri)
            elif out == "patient_age":
                row[out] = _parse_age(raw, line, csv_uri)
            elif out in _INT_COLUMNS:
                row[out] = _parse_int(raw, out, line, csv_uri)
            elif out in _FLOAT_COLUMNS:
                row[out] = _parse_float(raw, out, line, csv_uri)
            else:
                row[out] = raw.strip() or None
        rows.append(row)
    return rows


def _list_names(root: str) -> set[str] | None:
    """Names of the files directly under ``root`` in one listing (None if the root does not exist).

    One paginated LIST per 1000 objects is far cheaper than one HEAD request per image on an object store.
    """
    fs, path = storage.resolve(root)
    path = path.rstrip("/") or "/"
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    return {posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.File}


def build_nih_manifest(csv_uri: str, images_root: str, *, check_exists: bool = False) -> ManifestBuild:
    """Turn NIH ChestX-ray14's Data_Entry_2017.csv into a manifest whose URIs point into ``images_root``.

    ``images_root`` is the folder (local or ``s3://``/``gs://``) that holds the PNGs side by side, as NIH
    distributes them after unpacking ``images_*.tar.gz``.  With ``check_exists`` rows whose file is not
    there are dropped (and counted) rather than left to fail one by one in the labeling job.
    """
    if not storage.is_remote(images_root) and not str(images_root).startswith("file://"):
        images_root = os.path.abspath(images_root)  # manifests carry absolute URIs, whatever the caller's cwd
    rows = read_nih_rows(csv_uri)
    if not rows:
        raise ManifestError(f"{csv_uri}: the CSV has a header but no data rows")
    source_rows = len(rows)
    dropped: list[str] = []
    if check_exists:
        present = _list_names(images_root)
        if present is None:
            raise ManifestError(f"images root {images_root} does not exist")
        kept = [r for r in rows if r["image_id"] in present]
        dropped = [r["image_id"] for r in rows if r["image_id"] not in present]
        if not kept:
            raise ManifestError(
                f"none of the {source_rows} images listed in {csv_uri} were found under {images_root} "
                "(are the images in sub-folders? --images-root must be the folder that holds the PNGs)"
            )
        rows = kept
    # Image Index is a bare file name (checked while parsing), so joining the root once is the same as joining
    # it per row, and 112k storage.join calls are a noticeable part of the run time.
    prefix = storage.join(images_root, "")
    columns: dict[str, list] = {name: [r.get(name) for r in rows] for name in NIH_MANIFEST_SCHEMA.names}
    columns[schema.URI] = [prefix + r["image_id"] for r in rows]
    columns[schema.LABEL] = [NIH_LABEL] * len(rows)
    table = pa.Table.from_pydict(columns, schema=NIH_MANIFEST_SCHEMA)
    table = schema.validate_manifest(table, require_label=True)
    return ManifestBuild(
        table=table,
        source_rows=source_rows,
        dropped_missing=len(dropped),
        missing_examples=tuple(dropped[:5]),
    )


# --- file trees -----------------------------------------------------------------------------------------------


def classify_file(relative_path: str) -> str | None:
    """Why a file under the root is not an image to label (None when it is one).

    Hidden files and anything inside hidden folders are skipped: they are OS/editor droppings (``.DS_Store``)
    or temporaries that scanlabel's own atomic writers create and rename (``.tmp-…``), and a half-written
    file must never be labeled.
    """
    parts = relative_path.split("/")
    if any(p.startswith(".") for p in parts):
        return "hidden"
    name = parts[-1]
    if name.lower() in _NON_IMAGE_NAMES:
        return "not_an_image"
    suffix = posixpath.splitext(name)[1].lower()
    if suffix in IMAGE_EXTENSIONS or not suffix or _UID_NAME_RE.match(name):
        return None
    return "unsupported_extension"


def build_tree_manifest(root: str, *, label_from_parent: bool = False) -> ManifestBuild:
    """List every image under ``root`` (local folder, ``s3://`` or ``gs://`` prefix) into a manifest.

    ``image_id`` is the path relative to the root: unique within the tree and stable across re-listings and
    across moving the whole archive, so labels already computed for it are recognised on the next run.
    With ``label_from_parent`` the label is the name of the file's folder (``root/chest/x.png`` -> chest), the
    usual layout of a curated training set; files directly under the root then get no label.
    """
    fs, base = storage.resolve(root)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"manifest root {root} does not exist")
    if info.type != pafs.FileType.Directory:
        raise ManifestError(f"manifest root {root} is a file, not a folder")
    prefix = base if base.endswith("/") else base + "/"
    parsed = urlparse(str(root))
    remote = storage.is_remote(root)
    query = f"?{parsed.query}" if remote and parsed.query else ""

    entries = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True)) if i.type == pafs.FileType.File]
    skipped: dict[str, int] = {}
    columns: dict[str, list] = {schema.URI: [], schema.IMAGE_ID: [], schema.LABEL: [], "size_bytes": []}
    unlabeled = 0
    for entry in sorted(entries, key=lambda e: e.path):
        if not entry.path.startswith(prefix):
            raise ManifestError(f"listing of {root} returned {entry.path!r}, which is outside it")
        rel = entry.path[len(prefix) :]
        reason = classify_file(rel)
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        columns[schema.URI].append(f"{parsed.scheme}://{entry.path}{query}" if remote else entry.path)
        columns[schema.IMAGE_ID].append(rel)
        parent = posixpath.dirname(rel)
        label = posixpath.basename(parent) if parent else None
        unlabeled += label is None
        columns[schema.LABEL].append(label)
        columns["size_bytes"].append(int(entry.size) if entry.size is not None else None)
    if not columns[schema.URI]:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) or "no files at all"
        raise ManifestError(f"no image files found under {root} ({detail})")
    table = pa.Table.from_pydict(columns, schema=TREE_MANIFEST_SCHEMA)
    if not label_from_parent:
        table = table.drop_columns([schema.LABEL])
        unlabeled = 0
    table = schema.validate_manifest(table)
    return ManifestBuild(table=table, source_rows=len(entries), skipped=skipped, unlabeled=unlabeled)


# --- output ---------------------------------------------------------------------------------------------------


def write_manifest(table: pa.Table, out: str) -> str:
    """Validate, then write ``out`` so that a reader sees the old manifest or the new one, never a partial one.

    Validation happens here too (not only in the builders) because this is the last point before a bad table
    would reach every job that reads the manifest.
    """
    table = schema.validate_manifest(table)
    fs, path = storage.resolve(out)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        raise ManifestError(
            f"--out {out} is a folder; give a file name such as {storage.join(out, 'manifest.parquet')}"
        )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes_atomic(out, sink.getvalue().to_pybytes())
    return out


def write_empty_manifest(table: pa.Table, out: str) -> str:
    """Write a zero-row manifest (an incremental listing that found nothing new keeps its cursor this way).

    :func:`write_manifest` refuses it because labeling refuses it: a nightly script skips ``label`` for it."""
    if table.num_rows:
        raise ValueError("write_empty_manifest is for zero-row tables")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes_atomic(out, sink.getvalue().to_pybytes())
    return out


def read_manifest(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A manifest as stored; a missing or unreadable file is a :class:`~core.errors.ManifestError`, before any work."""
    fs, path = storage.resolve(uri)
    try:
        table = pq.read_table(path, filesystem=fs, columns=columns)
    except FileNotFoundError as e:
        raise ManifestError(f"manifest {uri} does not exist") from e
    except (pa.ArrowInvalid, OSError) as e:
        if storage.is_unavailable(e):  # not the manifest's fault: the same run succeeds once the store is back
            raise storage.StoreUnavailable(f"manifest {uri} unreadable, the object store kept failing: {e}") from e
        raise ManifestError(f"manifest {uri} is not a readable Parquet file: {e}") from e
    killpoints.reached("manifest.read")
    return table
