"""The labels dataset on disk or object store: what is done, what to do, and atomic, duplicate-free writes.

Labels are keyed by (``image_id``, ``model_id``).  Part files are written under a hidden temporary name and
renamed into place (a single PUT on object stores), so readers never see half a file.  A run that dies between
writing a replacement row and removing the row it supersedes leaves a duplicate; :func:`compact` removes such
duplicates (newest row wins) and runs at the start and the end of every job, so the dataset heals itself.

Compaction decides on content, never on positions: per duplicated key it picks one winning row identity
(``labeled_at``, part file name, and a hash of the row's content where those tie), and each part file it
rewrites is re-read right before the rewrite and filtered by that identity.  A row is therefore removed only
when a strictly newer row of its key was seen, so however compactions and writers interleave (two runs, a
zombie run that lost its lease), the newest row of every key survives.  The writer-side discipline (one run
at a time) is the lease in ``core/labeling/lease.py``, whose docstring states the whole commit protocol.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core import errors, killpoints
from core.io import schema, storage
from core.io.schema import LABELS_SCHEMA

KEY_COLUMNS = [schema.IMAGE_ID, "model_id", "status", "error", "labeled_at"]


QUARANTINE_DIR = "_quarantine"  # bad part files moved aside by --quarantine-bad-parts (ignored by readers)


class CorruptPart(ValueError):
    """Part files of a labels dataset that are not readable labels parts (truncated, or another table's Parquet).

    Raised before anything is written: planning around a file it cannot read would relabel its images and leave
    the bad file to break every reader, and skipping it silently would hide whatever else it held."""

    exit_code = 2

    def __init__(self, out: str, bad: list[tuple[str, str]]) -> None:
        self.out, self.bad = out, bad
        listed = "; ".join(f"{path} ({reason})" for path, reason in bad)
        super().__init__(
            f"labels dataset {out} has {len(bad)} part file(s) that are not readable labels parts: {listed}. "
            f"Nothing was written. `scanlabel label --quarantine-bad-parts` moves them into {QUARANTINE_DIR}/ inside "
            "the dataset and labels again every image left without a row (docs/faults.md, \"A corrupted labels "
            "dataset\")"
        )


def _part_files(fs: pafs.FileSystem, path: str) -> list[str]:
    selector = pafs.FileSelector(path, recursive=False)
    return sorted(
        f.path
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.base_name.endswith(".parquet") and not f.base_name.startswith((".", "_"))
    )


def _scan(out: str) -> tuple[list[tuple[str, pa.Table]], list[tuple[str, str]]]:
    """Every part file's key columns, and the files that are not readable labels parts (with the reason)."""
    fs, path = storage.resolve(out)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return [], []
    parts, bad = [], []
    for p in _part_files(fs, path):
        try:
            table = _read_if_present(fs, p, KEY_COLUMNS)
        except (OSError, pa.ArrowInvalid) as e:
            if storage.is_unavailable(e):
                raise
            bad.append((p, _reason(e)))
            continue
        if table is not None:  # a concurrent compaction may delete a file between listing and reading
            parts.append((p, table))
    return parts, bad


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    missing = re.search(r"No match for FieldRef\.Name\(([^)]*)\)", text)
    if missing:
        return f"not a labels part: no {missing.group(1)} column"
    return text[:200]


def _fragments(out: str) -> list[tuple[str, pa.Table]]:
    parts, bad = _scan(out)
    if bad:
        raise CorruptPart(out, bad)
    return parts


def quarantine_bad_parts(out: str, log: Callable[[str], None] = print) -> list[str]:
    """Move every unreadable part file into ``_quarantine/`` inside the dataset; returns their names.

    Only the lease holder calls this.  The rows such a file held are unknown (it cannot be read), so the next plan
    simply finds its images without a row and labels them again; the file itself is kept for a person to look at.
    """
    _, bad = _scan(out)
    folder = storage.join(out, QUARANTINE_DIR)
    moved = []
    for path, reason in bad:
        name = path.rsplit("/", 1)[-1]
        storage.makedirs(folder)
        fs, target = storage.resolve(storage.join(folder, name))
        fs.move(path, target)  # same file system; on S3 a copy then a delete: killed between, it is moved again
        log(f"[label] quarantined {name} ({reason}) into {folder}")
        moved.append(name)
    return moved


def _read_if_present(fs: pafs.FileSystem, path: str, columns: list[str] | None = None) -> pa.Table | None:
    """One part file, or None if it is gone.

    Read through a single open handle: reading by path opens the file again for the data after the footer,
    and a compaction replacing the file in between makes footer and pages disagree.  Locally one handle pins
    one version; an object store's ranged reads can still straddle a replacement, which shows as a decode
    error, so a failed read is retried on a fresh handle.
    """
    for attempt in range(5):
        try:
            with fs.open_input_file(path) as f:
                return pq.read_table(f, columns=columns)
        except (OSError, pa.ArrowInvalid):
            if fs.get_file_info(path).type == pafs.FileType.NotFound:
                return None
            if attempt == 4:
                raise
    return None


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
        self,
        out: str,
        run_id: str | None = None,
        rows_per_file: int = 10_000,
        schema: pa.Schema | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.out = str(out)
        self.guard = guard  # runs before each commit: a run that lost the dataset's lease stops committing
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
        if self.guard is not None:
            self.guard()
        table = pa.concat_tables(self._buffer).cast(self.schema)
        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        killpoints.reached("parts.commit")
        storage.write_bytes_atomic(storage.join(self.out, name), _table_bytes(table))
        killpoints.reached("parts.committed")
        self._seq += 1
        self.files.append(name)
        self.committed_rows += table.num_rows
        self._buffer, self._buffered = [], 0


TEMPORARY_DIRS = ("", "_runs")  # where a holder writes through temporaries: the parts, and the run summaries


def remove_stale_temporaries(out: str) -> int:
    """Delete hidden temporaries a killed run left behind (beside the parts and the run summaries); only the
    lease holder calls this (core/labeling/lease.py), so no live writer's temporary is removed under it."""
    fs, root = storage.resolve(out)
    removed = 0
    for sub in TEMPORARY_DIRS:
        path = f"{root}/{sub}" if sub else root
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            continue
        for f in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
            if f.type == pafs.FileType.File and f.base_name.startswith(".tmp-"):
                killpoints.reached("store.temporaries")
                fs.delete_file(f.path)
                removed += 1
    return removed


# A key's winning row: (labeled_at in µs, part file base name, content hash only where those two tie).  A plain
# tuple: a relabel makes one per row.
_Winner = tuple[int, str, "str | None"]


@dataclass
class CompactionPlan:
    """The winning row identity of every duplicated key, and the part files holding a losing row."""

    winners: dict[tuple[str, str], _Winner] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _row_digest(table: pa.Table, i: int) -> str:
    row = table.slice(i, 1).to_pylist()[0]
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()


def _plan_without_ties(dups: pa.Table) -> CompactionPlan | None:
    """The usual case in plain Arrow kernels (a relabel duplicates every row): newest labeled_at, then greatest
    part file name; None when two rows of a key share both, and only their content can decide."""
    d = pa.table(
        {
            "k": pc.binary_join_element_wise(dups.column(schema.IMAGE_ID), dups.column("model_id"), "\x1f"),
            "i": dups.column(schema.IMAGE_ID),
            "m": dups.column("model_id"),
            "at": dups.column("labeled_at").cast(pa.int64()),
            "base": pc.replace_substring_regex(dups.column("_file"), "^.*/", ""),
            "file": dups.column("_file"),
        }
    ).sort_by([("k", "ascending"), ("at", "descending"), ("base", "descending")])
    k, at, base = d.column("k"), d.column("at"), d.column("base")
    same_key = pc.equal(k.slice(1), k.slice(0, len(k) - 1))
    tie = pc.and_(
        same_key,
        pc.and_(pc.equal(at.slice(1), at.slice(0, len(k) - 1)), pc.equal(base.slice(1), base.slice(0, len(k) - 1))),
    )
    if pc.any(tie).as_py():
        return None
    first = pa.concat_arrays([pa.array([True]), pc.invert(same_key).combine_chunks()])
    files = sorted(set(d.filter(pc.invert(first)).column("file").to_pylist()))
    w = d.filter(first)
    cols = [w.column(c).to_pylist() for c in ("i", "m", "at", "base")]
    return CompactionPlan({(i, m): (t, b, None) for i, m, t, b in zip(*cols, strict=True)}, files)


def plan_compaction(out: str) -> CompactionPlan:
    """Decide, from one listing, which row of each duplicated (image_id, model_id) wins: the newest
    ``labeled_at``, then the greatest part file name, then the greatest content hash (a total order that does
    not depend on where a row sits, so every compactor that sees the same rows picks the same winner)."""
    keys = existing_keys(out)
    if keys.num_rows == 0:
        return CompactionPlan()
    key = pc.binary_join_element_wise(keys.column(schema.IMAGE_ID), keys.column("model_id"), "\x1f")
    counts = pa.table({"k": key}).group_by("k").aggregate([("k", "count")])
    dup_keys = counts.filter(pc.greater(counts.column("k_count"), 1)).column("k")
    if len(dup_keys) == 0:
        return CompactionPlan()
    dups = keys.filter(pc.is_in(key, dup_keys))
    fast = _plan_without_ties(dups)
    if fast is not None:
        return fast
    ids = dups.column(schema.IMAGE_ID).to_pylist()
    mids = dups.column("model_id").to_pylist()
    ats = dups.column("labeled_at").cast(pa.int64()).to_pylist()
    paths = dups.column("_file").to_pylist()
    bases = [p.rsplit("/", 1)[-1] for p in paths]
    ident = list(zip(ids, mids, ats, bases, strict=True))
    seen: dict[tuple, int] = {}
    for x in ident:
        seen[x] = seen.get(x, 0) + 1
    digests: list[str | None] = [None] * len(ident)
    tied = {x for x, n in seen.items() if n > 1}  # same key, time and file: only the content can decide
    if tied:
        fs, _ = storage.resolve(out)
        for path in sorted({p for x, p in zip(ident, paths, strict=True) if x in tied}):
            full = _read_if_present(fs, path)
            if full is None:
                continue
            base = path.rsplit("/", 1)[-1]
            f_ids = full.column(schema.IMAGE_ID).to_pylist()
            f_mids = full.column("model_id").to_pylist()
            f_ats = full.column("labeled_at").cast(pa.int64()).to_pylist()
            pending = [n for n, x in enumerate(ident) if x in tied and paths[n] == path]
            by_ident: dict[tuple, list[str]] = {}
            for r in range(full.num_rows):
                x = (f_ids[r], f_mids[r], f_ats[r], base)
                if x in tied:
                    by_ident.setdefault(x, []).append(_row_digest(full, r))
            for x, ds in by_ident.items():
                ds.sort()
                slots = [n for n in pending if ident[n] == x]
                for n, d in zip(slots, ds, strict=False):
                    digests[n] = d
    winners: dict[tuple[str, str], tuple] = {}
    for n, (i, m, at, base) in enumerate(ident):
        cand = (at, base, digests[n] or "")
        if (i, m) not in winners or cand > winners[(i, m)]:
            winners[(i, m)] = cand
    files = set()
    for n, (i, m, at, base) in enumerate(ident):
        w = winners[(i, m)]
        if (at, base) != w[:2] or seen[ident[n]] > 1:
            files.add(paths[n])  # holds a losing row (or several rows tied with the winner)
    plan = CompactionPlan(
        {k: (at, base, d or None) for k, (at, base, d) in winners.items()},
        sorted(files),
    )
    return plan


def apply_compaction(out: str, plan: CompactionPlan, guard: Callable[[], None] | None = None) -> int:
    """Rewrite each planned part file from a fresh read, keeping every row that is not a planned loser.

    Rows are matched by identity, so a file another compactor rewrote in the meantime is filtered correctly
    (rows are never added to an existing part file, so a fresh read holds only rows the plan has seen); a file
    left with no row is deleted.  ``guard`` runs before each change (the lease check of a labeling run).
    """
    fs, _ = storage.resolve(out)
    dropped = 0
    for path in plan.files:
        table = _read_if_present(fs, path)
        if table is None:
            continue  # another compactor emptied it: its rows lost to rows that still exist
        base = path.rsplit("/", 1)[-1]
        ids = table.column(schema.IMAGE_ID).to_pylist()
        mids = table.column("model_id").to_pylist()
        ats = table.column("labeled_at").cast(pa.int64()).to_pylist()
        kept_winner: set[tuple[str, str]] = set()
        keep = []
        for r in range(table.num_rows):
            k = (ids[r], mids[r])
            w = plan.winners.get(k)
            ok = w is None or (
                (ats[r], base) == w[:2] and k not in kept_winner and (w[2] is None or _row_digest(table, r) == w[2])
            )
            if ok and w is not None:
                kept_winner.add(k)
            keep.append(ok)
        kept = table.filter(pa.array(keep, pa.bool_()))
        if kept.num_rows == table.num_rows:
            continue
        if guard is not None:
            guard()
        dropped += table.num_rows - kept.num_rows
        uri = f"{out.split('://')[0]}://{path}" if storage.is_remote(out) else path
        if kept.num_rows:
            killpoints.reached("compact.rewrite")
            storage.write_bytes_atomic(uri, _table_bytes(kept))
        else:
            killpoints.reached("compact.delete")
            try:
                fs.delete_file(path)
            except FileNotFoundError:
                pass
    return dropped


def compact(out: str, guard: Callable[[], None] | None = None) -> int:
    """Remove duplicate (image_id, model_id) rows, keeping the newest; returns how many rows were dropped.

    Only part files holding a losing row are rewritten, each atomically, each from a fresh read (see
    :func:`apply_compaction`), so this is safe against a concurrent writer or compactor.
    """
    return apply_compaction(out, plan_compaction(out), guard)


def read_labels(out: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = storage.resolve(out)
    return pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=columns)
