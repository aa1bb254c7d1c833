"""Every Parquet schema scanlabel reads or writes lives here.

Keeping them in one module means the sample writer, the manifest builders, the labeling job and the evaluator
cannot drift apart on a column name or type.  Validation of an incoming manifest is also here so a bad
manifest is refused before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import ManifestError

# --- manifest -----------------------------------------------------------------------------------------------
URI = "uri"
IMAGE_ID = "image_id"
LABEL = "label"

MANIFEST_REQUIRED = {URI: pa.string(), IMAGE_ID: pa.string()}
MANIFEST_OPTIONAL = {LABEL: pa.string()}

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(URI, pa.string(), nullable=False),
        pa.field(IMAGE_ID, pa.string(), nullable=False),
        pa.field(LABEL, pa.string()),
    ]
)

# Manifests the project writes itself: the base columns plus what each source has worth keeping.
SAMPLE_MANIFEST_SCHEMA = pa.schema(
    [
        *MANIFEST_SCHEMA,
        pa.field("format", pa.string()),
        pa.field("header_body_part", pa.string()),
        pa.field("header_wrong", pa.bool_()),
    ]
)

# NIH ChestX-ray14 Data_Entry_2017: "Patient ID" is deliberately absent (a patient identifier).
NIH_MANIFEST_SCHEMA = pa.schema(
    [
        *MANIFEST_SCHEMA,
        pa.field("finding_labels", pa.string()),
        pa.field("follow_up", pa.int32()),
        pa.field("patient_age", pa.int32()),
        pa.field("patient_sex", pa.string()),
        pa.field("view_position", pa.string()),
        pa.field("original_width", pa.int32()),
        pa.field("original_height", pa.int32()),
        pa.field("pixel_spacing_x", pa.float64()),
        pa.field("pixel_spacing_y", pa.float64()),
    ]
)

# Manifests listed from a DICOMweb server (core/io/dicomweb_listing.py): image_id is the SOP Instance UID, uri a
# dicomweb+http(s)://.../studies/S/series/R/instances/I address; Modality is the only header attribute kept (no
# patient attribute, no study date).  The listing's cursor for the next incremental run is JSON in the file's
# metadata under DICOMWEB_META_KEY.
DICOMWEB_MANIFEST_SCHEMA = pa.schema([*MANIFEST_SCHEMA, pa.field("modality", pa.string())])
DICOMWEB_META_KEY = "scanlabel.dicomweb"

TREE_MANIFEST_SCHEMA = pa.schema([*MANIFEST_SCHEMA, pa.field("size_bytes", pa.int64())])

# Header-labelled manifests (``scanlabel manifest --root DIR --label-from-header``, core/readers/header.py): a tree
# listing whose ``label`` is what the DICOM header claims (weak labels, docs/weak-labels.md).  Only closed
# vocabularies and code strings: ``label_source`` (one of LABEL_SOURCES: which attribute decided),
# ``header_body_part`` and ``modality`` (code strings, as the labels schema keeps them), ``format`` (sniffed from
# the content) and ``error`` (a code of core/errors.py when the header could not be read or is out of scope).
LABEL_SOURCES = ("body_part_examined", "study_description", "series_description")
HEADER_MANIFEST_SCHEMA = pa.schema(
    [
        *TREE_MANIFEST_SCHEMA,
        pa.field("format", pa.string()),
        pa.field("label_source", pa.string()),
        pa.field("header_body_part", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("error", pa.string()),
    ]
)

# --- labels (the labeling job's output) -----------------------------------------------------------------------
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_SKIPPED = "skipped"
STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_SKIPPED)

LABELS_SCHEMA = pa.schema(
    [
        pa.field(IMAGE_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field(LABEL, pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("probabilities", pa.list_(pa.float32())),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("error_detail", pa.string()),
        pa.field("source_format", pa.string()),
        pa.field("header_body_part", pa.string()),  # raw DICOM BodyPartExamined (a code string, not PHI)
        pa.field("header_class", pa.string()),  # that header mapped onto a model class (core/readers/header_map.py)
        pa.field("header_agrees", pa.bool_()),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("labeled_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # Trust (docs/trust.md): how far the image lies from what the model was trained on (higher = farther; null
        # unless ok), and why an ok row was labelled "other" instead of a body part (null when it was not).
        pa.field("ood_score", pa.float32()),
        pa.field("abstain_reason", pa.string()),
    ]
)
# The body parts a model can name: the vocabulary of phantoms, header maps, reviews and every label column.
BODY_PARTS = ("head", "chest", "abdomen", "pelvis", "arm", "leg", "hand")
# The label an abstained row gets, and the values of ``abstain_reason``.
OTHER_LABEL = "other"
ABSTAIN_OOD = "out_of_distribution"
ABSTAIN_LOW_CONFIDENCE = "low_confidence"
ABSTAIN_REASONS = (ABSTAIN_OOD, ABSTAIN_LOW_CONFIDENCE)
LABEL_COLUMNS = tuple(LABELS_SCHEMA.names)

# --- out-of-fold predictions (``scanlabel train --noisy-labels``, core/training/noisy.py) ---------------------------
# What one fold's model predicts for the rows it did not train on: softmax outputs in the run's class order, or the
# row's error code when it did not decode.
HOLDOUT_PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field(IMAGE_ID, pa.string(), nullable=False),
        pa.field("probabilities", pa.list_(pa.float32())),
        pa.field("error", pa.string()),
    ]
)
# The rows confident learning found mislabelled, most certain first (written beside the pruned training manifest).
LABEL_ISSUES_SCHEMA = pa.schema(
    [
        pa.field(IMAGE_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field(LABEL, pa.string(), nullable=False),  # the header's class
        pa.field("predicted", pa.string(), nullable=False),  # the out-of-fold model's class
        pa.field("label_quality", pa.float32()),  # out-of-fold probability of the header's class
    ]
)

# --- the audit of header labels (``scanlabel audit``, core/trust/audit.py) --------------------------------------
# One row per image whose header class and model class disagree, most confident model first.
AUDIT_SCHEMA = pa.schema(
    [
        pa.field("rank", pa.int32(), nullable=False),
        pa.field(IMAGE_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field("header_class", pa.string(), nullable=False),
        pa.field("label_source", pa.string()),
        pa.field("header_body_part", pa.string()),
        pa.field(LABEL, pa.string(), nullable=False),  # the model's class
        pa.field("confidence", pa.float32()),
        pa.field("model_id", pa.string(), nullable=False),
    ]
)


def _is_stringlike(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


def validate_manifest(table: pa.Table, *, require_label: bool = False) -> pa.Table:
    """Refuse a manifest that would make the job lose or mislabel rows, naming the problem.

    Returns the table with ``uri``/``image_id``/``label`` cast to plain strings (dictionary-encoded columns
    from pandas round trips are common in the wild).
    """
    if table.num_rows == 0:
        raise ManifestError("manifest is empty: it has no rows")
    required = dict(MANIFEST_REQUIRED)
    if require_label:
        required[LABEL] = pa.string()
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ManifestError(f"manifest is missing required column(s) {missing}; it has {table.column_names}")
    for name in [*required, *(c for c in MANIFEST_OPTIONAL if c in table.column_names)]:
        col = table.column(name)
        if not _is_stringlike(col.type) and not pa.types.is_null(col.type):
            raise ManifestError(f"manifest column {name!r} must be a string column, found {col.type}")
        table = table.set_column(table.schema.get_field_index(name), name, col.cast(pa.string()))
    for name in (URI, IMAGE_ID):
        nulls = table.column(name).null_count
        if nulls:
            raise ManifestError(f"manifest column {name!r} has {nulls} null value(s)")
        empties = pc.sum(pc.equal(pc.utf8_length(table.column(name)), 0)).as_py() or 0
        if empties:
            raise ManifestError(f"manifest column {name!r} has {empties} empty value(s)")
    if require_label and table.column(LABEL).null_count:
        raise ManifestError(f"manifest column 'label' has {table.column(LABEL).null_count} null value(s)")
    ids = table.column(IMAGE_ID)
    unique = pc.count_distinct(ids).as_py()
    if unique != table.num_rows:
        counts = pc.value_counts(ids)
        dupes = [v["values"].as_py() for v in counts if v["counts"].as_py() > 1][:5]
        raise ManifestError(f"manifest has {table.num_rows - unique} duplicate image_id value(s), e.g. {dupes}")
    return table


def empty_labels_table() -> pa.Table:
    return LABELS_SCHEMA.empty_table()


def labels_schema(keep: pa.Schema | None = None) -> pa.Schema:
    """LABELS_SCHEMA plus the manifest columns a user asked to carry over (``--keep-columns``)."""
    if keep is None or len(keep) == 0:
        return LABELS_SCHEMA
    clash = [f.name for f in keep if f.name in LABEL_COLUMNS]
    if clash:
        raise ManifestError(f"--keep-columns {clash} collide with labels columns of the same name")
    return pa.schema([*LABELS_SCHEMA, *keep])


def labels_table(rows: Iterable[dict] | dict[str, list] | pa.Table, keep: pa.Schema | None = None) -> pa.Table:
    """Build a labels table that conforms exactly to LABELS_SCHEMA (missing optional columns become null)."""
    if isinstance(rows, pa.Table):
        target = labels_schema(keep)
        return rows.select(target.names).cast(target)
    if isinstance(rows, dict):
        cols = rows
        n = len(next(iter(cols.values()))) if cols else 0
    else:
        rows = list(rows)
        n = len(rows)
        cols = {name: [r.get(name) for r in rows] for name in LABEL_COLUMNS}
    arrays = []
    for field in LABELS_SCHEMA:
        values = cols.get(field.name)
        arrays.append(pa.array(values if values is not None else [None] * n, type=field.type))
    return pa.Table.from_arrays(arrays, schema=LABELS_SCHEMA)
