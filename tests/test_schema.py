import pyarrow as pa
import pytest

from core.errors import ManifestError
from core.io import schema


def _table(**cols):
    return pa.table(cols)


def test_valid_manifest_passes_and_casts_dictionary_columns():
    t = pa.table({"uri": pa.array(["/a.png", "/b.png"]).dictionary_encode(), "image_id": ["a", "b"]})
    out = schema.validate_manifest(t)
    assert out.column("uri").type == pa.string()


@pytest.mark.parametrize(
    "table, message",
    [
        (pa.table({"uri": pa.array([], pa.string()), "image_id": pa.array([], pa.string())}), "empty"),
        (pa.table({"path": ["/a.png"], "image_id": ["a"]}), "missing required column"),
        (pa.table({"uri": [1, 2], "image_id": ["a", "b"]}), "must be a string column"),
        (pa.table({"uri": ["/a.png", "/b.png"], "image_id": ["a", "a"]}), "duplicate image_id"),
        (pa.table({"uri": ["/a.png", None], "image_id": ["a", "b"]}), "null"),
        (pa.table({"uri": ["/a.png", ""], "image_id": ["a", "b"]}), "empty value"),
    ],
)
def test_bad_manifests_are_refused_with_the_problem_named(table, message):
    with pytest.raises(ManifestError, match=message):
        schema.validate_manifest(table)


def test_label_required_for_training():
    t = pa.table({"uri": ["/a.png"], "image_id": ["a"]})
    with pytest.raises(ManifestError, match="label"):
        schema.validate_manifest(t, require_label=True)


def test_labels_table_conforms_to_schema_with_missing_optionals():
    import datetime as dt

    t = schema.labels_table(
        [
            {
                "image_id": "a",
                "uri": "/a.png",
                "status": "error",
                "error": "not_found",
                "model_id": "m",
                "labeled_at": dt.datetime.now(dt.timezone.utc),
            }
        ]
    )
    assert t.schema == schema.LABELS_SCHEMA
    assert t.column("label").to_pylist() == [None]
