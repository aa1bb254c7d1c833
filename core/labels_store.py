"""The labels dataset on disk or object store: what is done, what to do, and atomic, duplicate-free writes.

Labels are keyed by (``image_id``, ``model_id``).  Part files are written under a hidden temporary name and
renamed into place (a single PUT on object stores), so readers never see half a file.  A run that dies between
writing a replacement row and removing the row it supersedes leaves a duplicate; :func:`compact` removes such
duplicates (newest row wins) and runs at the start and the end of every job, so the dataset heals itself.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core import errors, schema, storage
from core.schema import LABELS_SCHEMA

KEY_COLUMNS = [schema.IMAGE_ID, "model_id", "status", "error", "labeled_at"]


def _fragments(out: str) -> list[tuple[str, pa.Table]]:
    fs, path = storage.resolve(out)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return []
    selector = pafs.FileSelector(path, recursive=False)
    files = sorted(
        f.path
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.base_name.endswith(".parquet") and not f.base_name.startswith((".", "_"))
    )
    return [(p, pq.read_table(p, filesystem=fs, columns=KEY_COLUMNS)) for p in files]


def existing_keys(out: str) -> pa.Table:
    """Key columns of every committed row, plus the part file each lives in."""
    parts = _fragments(out)
    tables = [t.append_column("_file", pa.array([p] * t.num_rows, pa.string())) for p, t in parts]
    if not tables:
        empty = {c: pa.array([], schema.LABELS_SCHEMA.field(c).type) for c in KEY_COLUMNS}
        return pa.table({**empty, "_file": pa.array([], pa.string())})
    return pa.concat_tables(tables)


@dataclass
class Plan:
    todo: pa.Table  # manifest rows to process
    already_ok: int
    permanent_errors: int
    retry: int  # rows with a previous row that this run supersedes


def plan(
    manifest: pa.Table, existing: pa.Table, model_id: str, relabel: bool = False, retry_errors: bool = False
) -> Plan:
    """Decide which manifest rows need work for this model: new rows, transient failures, or all (relabel)."""
    mine = existing.filter(pc.equal(existing.column("model_id"), model_id))
    if relabel:
        prior = mine.column(schema.IMAGE_ID)
        return Plan(manifest, 0, 0, int(pc.sum(pc.is_in(manifest.column(schema.IMAGE_ID), prior)).as_py() or 0))
    ok = pc.equal(mine.column("status"), schema.STATUS_OK)
    is_transient = pc.is_in(mine.column("error"), pa.array(sorted(errors.TRANSIENT)))
    is_transient = pc.fill_null(is_transient, False)
    keep_mask = pc.or_(ok, pc.invert(is_transient)) if not retry_errors else ok
    keep = mine.filter(keep_mask)
    done_ids = keep.column(schema.IMAGE_ID)
    todo = manifest.filter(pc.invert(pc.is_in(manifest.column(schema.IMAGE_ID), done_ids)))
    n_ok = int(pc.sum(pc.is_in(manifest.column(schema.IMAGE_ID), mine.filter(ok).column(schema.IMAGE_ID))).as_py() or 0)
    n_perm = int(pc.sum(pc.is_in(manifest.column(schema.IMAGE_ID), done_ids)).as_py() or 0) - n_ok
    retry = int(pc.sum(pc.is_in(todo.column(schema.IMAGE_ID), mine.column(schema.IMAGE_ID))).as_py() or 0)
    return Plan(todo, n_ok, n_perm, retry)


def _table_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class PartWriter:
    """Buffers label rows and commits them as whole Parquet part files."""

    def __init__(
        self, out: str, run_id: str | None = None, rows_per_file: int = 10_000, schema: pa.Schema | None = None
    ) -> None:
        self.out = str(out)
        self.schema = schema or LABELS_SCHEMA
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.rows_per_file = rows_per_file
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._seq = 0
        self.committed_rows = 0
        self.files: list[str] = []
        storage.makedirs(self.out)

    def add(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.rows_per_file:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer).cast(self.schema)
        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        storage.write_bytes_atomic(storage.join(self.out, name), _table_bytes(table))
        self._seq += 1
        self.files.append(name)
        self.committed_rows += table.num_rows
        self._buffer, self._buffered = [], 0


def remove_stale_temporaries(out: str) -> int:
    """Delete hidden temporaries a killed run left behind (one labeling run per output directory at a time)."""
    fs, path = storage.resolve(out)
    removed = 0
    for f in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        if f.type == pafs.FileType.File and f.base_name.startswith(".tmp-"):
            fs.delete_file(f.path)
            removed += 1
    return removed


def compact(out: str) -> int:
    """Remove duplicate (image_id, model_id) rows, keeping the newest; returns how many rows were dropped.

    Only part files holding a losing row are rewritten, each atomically.
    """
    keys = existing_keys(out)
    if keys.num_rows == 0:
        return 0
    key = pc.binary_join_element_wise(keys.column(schema.IMAGE_ID), keys.column("model_id"), "\x1f")
    if pc.count_distinct(key).as_py() == keys.num_rows:
        return 0
    indexed = keys.append_column("_key", key).append_column("_row", pa.array(range(keys.num_rows)))
    ordered = indexed.sort_by([("_key", "ascending"), ("labeled_at", "descending"), ("_file", "descending")])
    keys_sorted = ordered.column("_key").to_pylist()
    losers_by_file: dict[str, set[int]] = {}
    files = ordered.column("_file").to_pylist()
    # row number within its own file
    within: list[int] = []
    counter: dict[str, int] = {}
    for f in indexed.column("_file").to_pylist():
        within.append(counter.get(f, 0))
        counter[f] = counter.get(f, 0) + 1
    rows = ordered.column("_row").to_pylist()
    prev = None
    for k, f, r in zip(keys_sorted, files, rows, strict=True):
        if k == prev:
            losers_by_file.setdefault(f, set()).add(within[r])
        prev = k
    fs, _ = storage.resolve(out)
    dropped = 0
    for path, losers in losers_by_file.items():
        table = pq.read_table(path, filesystem=fs)
        keep = pa.array([i not in losers for i in range(table.num_rows)])
        kept = table.filter(keep)
        dropped += table.num_rows - kept.num_rows
        uri = f"{out.split('://')[0]}://{path}" if storage.is_remote(out) else path
        if kept.num_rows:
            storage.write_bytes_atomic(uri, _table_bytes(kept))
        else:
            fs.delete_file(path)
    return dropped


def read_labels(out: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = storage.resolve(out)
    return pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=columns)
