"""Weak labels from DICOM headers: what each file's header claims its body part is, read without its pixels.

``scanlabel manifest --root DIR --label-from-header`` lists a tree (:func:`core.io.manifests.build_tree_manifest`)
and gives every row the class its header names (:func:`core.readers.header_map.map_header_fields`): ``label``,
``label_source`` (the attribute that decided) and the raw ``BodyPartExamined`` code string.  Such labels are
wrong for some share of images; docs/weak-labels.md is what to do with them.

Reading
    Only the first :data:`HEAD_BYTES` of a file are fetched and parsed with pydicom's ``stop_before_pixels``;
    a header longer than that (the pixel data tag not yet reached) is read again with a larger prefix, up to
    :data:`MAX_HEAD_BYTES`.  A deflated dataset is read whole (within the readers' size limit) after the same
    inflation guard decoding uses.  Files are read in parallel by a thread pool (I/O bound: a local disk or an
    object store); one row per file, in the listing's order.

Rows
    PNG/JPEG files have no header: ``label`` null, ``format`` set.  A DICOM object outside ``modalities``
    (:mod:`core.readers.scope`, default projection radiography) keeps a null label with ``error`` =
    ``out_of_scope``; an unreadable file gets the error code of :mod:`core.errors` and the job goes on.

Privacy
    Nothing but the mapped class (a closed vocabulary), the name of the attribute it came from, and the
    ``BodyPartExamined``/``Modality`` code strings (:func:`core.readers.privacy.safe_code_string`) is written.
    Study and series descriptions are read to map them and never leave :func:`header_row`; pydicom's warnings
    (which quote values) are silenced while parsing.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from core import errors
from core.io import schema
from core.readers import privacy, scope, sniff_format
from core.readers.base import DEFAULT_MAX_BYTES
from core.readers.dicom import DEFLATED_TS, _guard_deflated, _quiet_pydicom
from core.readers.header_map import HEADER_SOURCES, HeaderMap, map_header_fields
from core.readers.source import read_uri, read_uri_head

HEAD_BYTES = 64 * 1024
MAX_HEAD_BYTES = 16 * 1024 * 1024
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")  # (7FE0,0010/0008/0009) LE


def _read_dataset(uri: str, max_bytes: int):
    """``(format, dataset or None)`` from as few bytes of the file as its header needs."""
    import pydicom

    size = HEAD_BYTES
    while True:
        data = read_uri_head(uri, size)
        fmt = sniff_format(data)
        if fmt != "dicom":
            return fmt, None
        if DEFLATED_TS.encode() in data[:2048]:
            data = read_uri(uri, max_bytes)
            _guard_deflated(data, max_bytes)
            size = len(data) + 1  # the whole file: no further prefix to try
        complete = len(data) < size or any(tag in data for tag in _PIXEL_TAGS)
        if complete or size >= MAX_HEAD_BYTES:
            try:
                ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            except Exception as e:  # noqa: BLE001 - pydicom raises many types on garbage input
                raise errors.ScanError(errors.DECODE_ERROR, f"DICOM header: {type(e).__name__}") from e
            if len(ds) == 0:
                raise errors.ScanError(errors.DECODE_ERROR, "no DICOM data elements")
            return fmt, ds
        size *= 8


def _text(ds, keyword: str) -> str | None:
    value = ds.get(keyword)
    return None if value is None else str(value)


def header_row(uri: str, mapping: HeaderMap | None, modalities: Sequence[str] | None, max_bytes: int) -> dict:
    """The header columns of one manifest row (see :data:`core.io.schema.HEADER_MANIFEST_SCHEMA`)."""
    row: dict[str, Any] = {"format": None, "label": None, "label_source": None, "header_body_part": None}
    row.update(modality=None, error=None)
    try:
        with _quiet_pydicom():
            fmt, ds = _read_dataset(uri, max_bytes)
            row["format"] = fmt
            if ds is None:
                return row
            raw_modality = ds.get("Modality")
            modality = privacy.safe_code_string(raw_modality)
            row["modality"] = modality.upper() if modality else None
            row["header_body_part"] = privacy.safe_code_string(ds.get("BodyPartExamined"))
            unreadable = modality is None and raw_modality is not None and str(raw_modality).strip() != ""
            sop = str(ds.get("SOPClassUID")) if ds.get("SOPClassUID") else None
            if scope.out_of_scope_reason(row["modality"], sop, modalities, modality_unreadable=unreadable):
                row["error"] = errors.OUT_OF_SCOPE
                return row
            fields = {keyword: _text(ds, keyword) for keyword, _ in HEADER_SOURCES}
            label, source = map_header_fields(fields, mapping)
            if label is not None:
                row["label"], row["label_source"] = label, source
    except errors.ScanError as e:
        row["error"] = e.code
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - one bad file must not end the listing
        row["error"] = errors.DECODE_ERROR
    return row


@dataclass(frozen=True)
class HeaderManifestBuild:
    """The manifest and its counts, for the command to print."""

    table: pa.Table
    source_rows: int
    skipped: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # class -> rows
    sources: dict[str, int] = field(default_factory=dict)  # label_source -> rows
    formats: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # error code -> rows
    unlabeled: int = 0  # rows whose label is null (no header, nothing that maps, an error)


def build_header_manifest(
    root: str,
    mapping: HeaderMap | None = None,
    modalities: Sequence[str] | None = scope.DEFAULT_MODALITIES,
    *,
    threads: int = 8,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int], None] | None = None,
) -> HeaderManifestBuild:
    """List ``root`` and label every row from its DICOM header (the module docstring says how)."""
    from core.io.manifests import build_tree_manifest

    listing = build_tree_manifest(root)
    uris = listing.table.column(schema.URI).to_pylist()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        rows = []
        for row in pool.map(lambda u: header_row(u, mapping, modalities, max_bytes), uris):
            rows.append(row)
            if progress is not None:
                progress(len(rows))
    columns = {
        name: listing.table.column(name).to_pylist()
        for name in schema.TREE_MANIFEST_SCHEMA.names
        if name != schema.LABEL
    }
    for name in ("label", "format", "label_source", "header_body_part", "modality", "error"):
        columns[name] = [r[name] for r in rows]
    table = pa.Table.from_pydict(columns, schema=schema.HEADER_MANIFEST_SCHEMA)
    table = schema.validate_manifest(table)
    return HeaderManifestBuild(
        table=table,
        source_rows=listing.source_rows,
        skipped=listing.skipped,
        labels=dict(Counter(r["label"] for r in rows if r["label"])),
        sources=dict(Counter(r["label_source"] for r in rows if r["label_source"])),
        formats=dict(Counter(r["format"] or "unknown" for r in rows)),
        errors=dict(Counter(r["error"] for r in rows if r["error"])),
        unlabeled=sum(r["label"] is None for r in rows),
    )
