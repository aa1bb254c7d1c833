"""Manifests from a DICOMweb server: a QIDO-RS walk, and the incremental listing a nightly job needs.

The walk goes study -> series -> instances rather than one flat instance query, because servers cap query
results silently (Orthanc's ``LimitFindInstances``, a cloud archive's default of 1,000) and some ignore
``limit``/``offset``: every series query is checked against the ``NumberOfSeriesRelatedInstances`` the server
reported for that series, so a truncated answer becomes an error instead of a quietly short manifest, and
:func:`_paged` stops on a page that repeats an earlier one instead of looping forever.

Incremental listing (see docs/dicomweb.md, "Nightly runs"): QIDO-RS has no "arrived since", so

* on Orthanc the change log (``/changes``, an arrival-ordered sequence that survives restarts) is walked from
  the sequence number the previous manifest recorded: exact, and it catches late arrivals of old studies;
* elsewhere (or when the change log was reset) studies are searched by StudyDate from the previous manifest's
  listing date minus an overlap, and instances already in the previous manifest are dropped by SOP Instance
  UID.  The labeling job's resume skips any instance already labeled, so re-listing costs nothing.

The manifest holds ``uri``, ``image_id`` (the SOP Instance UID) and ``modality``: no patient attribute, no
study date.  The listing's cursor lives in the Parquet file's metadata (:data:`core.io.schema.DICOMWEB_META_KEY`).
No Ray here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from core import errors
from core.errors import ManifestError
from core.io import dicomweb, schema
from core.io.dicomweb import HttpOptions, InstanceRef

log = logging.getLogger(__name__)

# DICOM JSON tags (PS3.18 F.2): the attributes the walk reads, and nothing identifying.
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
MODALITY, N_SERIES_INSTANCES = "00080060", "00201209"
PAGE_SIZE = 1000
MAX_PAGES = 100_000
CHANGES_PAGE = 1000

METHOD_FULL = "full"
METHOD_CHANGES = "orthanc_changes"
METHOD_STUDY_DATE = "study_date"


def _value(item: dict, tag: str) -> str | int | None:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _paged(url: str, params: dict, options: HttpOptions, key: str, page_size: int = PAGE_SIZE) -> list[dict]:
    """Every result of a QIDO query, paging with limit/offset and guarding against servers that don't.

    * a page longer than ``limit``: the server ignores ``limit`` and sent everything; take it and stop;
    * a page whose results were all seen before: the server ignores ``offset``; stop rather than loop;
    * a short page ends the walk.  A silent cap is caught by the caller's count check, not here."""
    seen: dict[str, dict] = {}
    offset = 0
    for _ in range(MAX_PAGES):
        page = dicomweb.get_json(url, options, {**params, "limit": page_size, "offset": offset})
        if not isinstance(page, list):
            raise ManifestError(f"{url}: QIDO-RS answered with something other than a JSON array")
        fresh = 0
        for item in page:
            k = _value(item, key)
            if k is not None and k not in seen:
                seen[str(k)] = item
                fresh += 1
        if len(page) > page_size or len(page) < page_size:
            break
        if fresh == 0:
            log.warning("%s ignores the QIDO offset parameter; listing stops after %d results", url, len(seen))
            break
        offset += len(page)
    return list(seen.values())


@dataclass
class Listing:
    """What a listing found, and what the next incremental listing starts from."""

    refs: list[tuple[InstanceRef, str | None]]  # (instance, modality)
    method: str
    listed_through: str  # YYYYMMDD: the day this listing ran (UTC), for the next study-date window
    changes_last: int | None = None  # Orthanc change-log sequence number seen before the listing began
    notes: list[str] = field(default_factory=list)


def _study_params(modalities: Sequence[str], study_date: str | None) -> dict:
    params: dict = {"includefield": STUDY_UID}
    if modalities:
        params["ModalitiesInStudy"] = ",".join(modalities)  # one parameter, comma-separated (PS3.18 8.3.4.1)
    if study_date:
        params["StudyDate"] = study_date
    return params


def _study_instances(base: str, study_uid: str, options: HttpOptions, wanted: set[str]) -> list:
    """(instance, modality) of one study's matching series, each series' count checked against the server's."""
    out: list[tuple[InstanceRef, str | None]] = []
    series_url = f"{base}/studies/{study_uid}/series"
    series_fields = {"includefield": f"{MODALITY},{N_SERIES_INSTANCES}"}
    for series in _paged(series_url, series_fields, options, SERIES_UID):
        modality = _value(series, MODALITY)
        if wanted and str(modality or "").upper() not in wanted:
            continue
        series_uid = str(_value(series, SERIES_UID))
        instances = _paged(f"{series_url}/{series_uid}/instances", {"includefield": SOP_UID}, options, SOP_UID)
        expected = _value(series, N_SERIES_INSTANCES)
        if expected is not None and len(instances) < int(expected):
            raise ManifestError(
                f"the server listed {len(instances)} of the {expected} instances it reports for one series: "
                "it caps query results (e.g. Orthanc's LimitFindInstances); raise the cap or the page size"
            )
        for item in instances:
            ref = InstanceRef(base, study_uid, series_uid, str(_value(item, SOP_UID)))
            out.append((ref, str(modality) if modality else None))
    return out


def walk(base: str, options: HttpOptions, modalities: Sequence[str] = (), study_date: str | None = None) -> list:
    """(instance, modality) for every instance of every matching study; studies are walked
    ``options.concurrency`` at a time (each costs 1 + 1 per series requests, mostly round trips)."""
    wanted = {m.upper() for m in modalities}
    studies = _paged(f"{base}/studies", _study_params(modalities, study_date), options, STUDY_UID)
    uids = [str(_value(study, STUDY_UID)) for study in studies]

    def one(uid: str) -> list:
        return _study_instances(base, uid, options, wanted)

    return [item for found in dicomweb.in_order(one, uids, options.concurrency) for item in found]


# --- Orthanc's change log ------------------------------------------------------------------------------------


def orthanc_root(base: str, options: HttpOptions) -> str | None:
    """The Orthanc REST root behind a DICOMweb root (``.../dicom-web`` -> ``...``), or None if not Orthanc."""
    root = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    try:
        info = dicomweb.get_json(f"{root}/system", options, accept="application/json")
    except errors.ScanError:
        return None
    if isinstance(info, dict) and "ApiVersion" in info and "DicomAet" in info:
        return root
    return None


def changes_last(root: str, options: HttpOptions) -> int:
    data = dicomweb.get_json(f"{root}/changes", options, {"last": ""}, accept="application/json")
    return int(data.get("Last", 0)) if isinstance(data, dict) else 0


def _new_instance_ids(root: str, since: int, options: HttpOptions) -> tuple[list[str], int] | None:
    """Orthanc ids of instances that arrived after ``since``, and the new cursor; None if the log has a gap."""
    ids: list[str] = []
    cursor = since
    for _ in range(MAX_PAGES):
        page = dicomweb.get_json(f"{root}/changes", options, {"since": cursor, "limit": CHANGES_PAGE},
                                 accept="application/json")
        if not isinstance(page, dict):
            raise ManifestError(f"{root}/changes did not answer with a change list")
        changes = page.get("Changes") or []
        if cursor == since and changes and int(changes[0]["Seq"]) > since + 1:
            return None  # entries were deleted from the log: it no longer says everything that arrived
        ids.extend(c["ID"] for c in changes if c.get("ChangeType") == "NewInstance")
        cursor = max(cursor, int(page.get("Last", cursor)))
        if page.get("Done", True) or not changes:
            return ids, cursor
    raise ManifestError(f"{root}/changes did not finish after {MAX_PAGES} pages")


def _resolve_orthanc(root: str, base: str, ids: Sequence[str], options: HttpOptions) -> list:
    """Orthanc instance ids -> (InstanceRef, modality), parents cached; a deleted instance is skipped."""
    series_cache: dict[str, tuple[str, str, str | None]] = {}
    study_cache: dict[str, str] = {}
    out = []
    for oid in dict.fromkeys(ids):
        try:
            inst = dicomweb.get_json(f"{root}/instances/{oid}", options, accept="application/json")
            sid = inst["ParentSeries"]
            if sid not in series_cache:
                series = dicomweb.get_json(f"{root}/series/{sid}", options, accept="application/json")
                stid = series["ParentStudy"]
                if stid not in study_cache:
                    study = dicomweb.get_json(f"{root}/studies/{stid}", options, accept="application/json")
                    study_cache[stid] = study["MainDicomTags"]["StudyInstanceUID"]
                tags = series["MainDicomTags"]
                series_cache[sid] = (study_cache[stid], tags["SeriesInstanceUID"], tags.get("Modality"))
        except errors.ScanError as e:
            if e.code == errors.NOT_FOUND:
                continue  # deleted since it arrived
            raise
        study_uid, series_uid, modality = series_cache[sid]
        out.append((InstanceRef(base, study_uid, series_uid, inst["MainDicomTags"]["SOPInstanceUID"]), modality))
    return out


# --- the listing a command asks for --------------------------------------------------------------------------


def _today() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")


def _window_start(listed_through: str, overlap_days: int) -> str:
    day = dt.datetime.strptime(listed_through, "%Y%m%d") - dt.timedelta(days=overlap_days)
    return day.strftime("%Y%m%d")


def list_instances(
    base: str,
    options: HttpOptions,
    *,
    modalities: Sequence[str] = (),
    study_date: str | None = None,
    previous: dict | None = None,
    method: str = "auto",
    overlap_days: int = 2,
) -> Listing:
    """A full listing, or (with ``previous``, the cursor of the last manifest) only what arrived since."""
    root = orthanc_root(base, options)
    last = None
    if root:
        try:
            last = changes_last(root, options)  # taken first: arrivals during the walk are listed again next time
        except errors.ScanError:
            root = None  # an Orthanc whose REST API is closed to us: list it like any other server
    through = _today()
    if previous is None:
        return Listing(walk(base, options, modalities, study_date), METHOD_FULL, through, last)
    prev_last = previous.get("changes_last")
    if method in ("auto", METHOD_CHANGES) and root and prev_last is not None and last is not None:
        if last >= prev_last:
            found = _new_instance_ids(root, int(prev_last), options)
            if found is not None:
                ids, cursor = found
                refs = _resolve_orthanc(root, base, ids, options)
                if modalities:
                    wanted = {m.upper() for m in modalities}
                    refs = [(r, m) for r, m in refs if str(m or "").upper() in wanted]
                return Listing(refs, METHOD_CHANGES, through, cursor)
        note = "Orthanc's change log was reset or trimmed since the previous manifest; fell back to study dates"
        if method == METHOD_CHANGES:
            raise ManifestError(note)
    elif method == METHOD_CHANGES:
        raise ManifestError("the orthanc_changes method needs an Orthanc server and a previous Orthanc cursor")
    else:
        note = ""
    window = f"{_window_start(previous['listed_through'], overlap_days)}-"
    listing = Listing(walk(base, options, modalities, window), METHOD_STUDY_DATE, through, last)
    if note:
        listing.notes.append(note)
    return listing


def to_table(listing: Listing, base: str, previous_ids: pa.Array | None = None) -> pa.Table:
    """The manifest table (schema from core.io.schema), new instances only when ``previous_ids`` is given."""
    seen: dict[str, tuple[InstanceRef, str | None]] = {}
    for ref, modality in listing.refs:
        seen.setdefault(ref.sop, (ref, modality))
    table = pa.table(
        {
            schema.URI: [r.uri for r, _ in seen.values()],
            schema.IMAGE_ID: list(seen),
            schema.LABEL: [None] * len(seen),
            "modality": [m for _, m in seen.values()],
        },
        schema=schema.DICOMWEB_MANIFEST_SCHEMA,
    )
    if previous_ids is not None and table.num_rows:
        table = table.filter(pc.invert(pc.is_in(table.column(schema.IMAGE_ID), previous_ids)))
    meta = {
        "server": base,
        "method": listing.method,
        "listed_through": listing.listed_through,
        "changes_last": listing.changes_last,
    }
    return table.replace_schema_metadata({schema.DICOMWEB_META_KEY: json.dumps(meta)})


def read_cursor(table_schema: pa.Schema) -> dict | None:
    raw = (table_schema.metadata or {}).get(schema.DICOMWEB_META_KEY.encode())
    return json.loads(raw) if raw else None


_DATE_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$|^\d{8}$")


def check_study_date(text: str | None) -> str | None:
    """``--study-date``: a DICOM date range (``YYYYMMDD-YYYYMMDD``, either end open, or one day)."""
    if text is None:
        return None
    value = text.strip().replace("/", "")
    if not _DATE_RANGE.match(value) or value == "-":
        raise ValueError(f"--study-date {text!r}: expected YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
    return value


class ListingFailed(RuntimeError):
    """The server stopped answering (or refused a request) in the middle of a listing."""


@dataclass(frozen=True)
class DicomwebManifest:
    table: pa.Table  # with the cursor in its metadata
    listing: Listing
    listed: int  # instances the listing returned, before de-duplication against the previous manifest


def build_dicomweb_manifest(
    url: str,
    options: HttpOptions,
    *,
    modalities: Sequence[str] = (),
    study_date: str | None = None,
    since_manifest: pa.Table | None = None,
    method: str = "auto",
    overlap_days: int = 2,
) -> DicomwebManifest:
    """List a DICOMweb server into a manifest table: everything (filtered), or what arrived since a manifest."""
    base = dicomweb.check_base_url(url)
    dicomweb.check_access(base, options)
    previous = previous_ids = None
    if since_manifest is not None:
        previous = read_cursor(since_manifest.schema)
        if previous is None:
            raise ManifestError("--since-manifest is not a manifest listed from a DICOMweb server (no cursor in it)")
        if previous.get("server") != base:
            raise ManifestError(f"--since-manifest was listed from {previous.get('server')}, not {base}")
        if study_date:
            raise ManifestError("--study-date and --since-manifest exclude each other (the window comes from it)")
        previous_ids = since_manifest.column(schema.IMAGE_ID).combine_chunks()
    try:
        listing = list_instances(
            base, options, modalities=modalities, study_date=check_study_date(study_date), previous=previous,
            method=method, overlap_days=overlap_days,
        )
    except errors.ScanError as e:  # the server failed mid-listing: nothing is written, the previous cursor stands
        raise ListingFailed(f"listing {base} failed ({e}); no manifest was written, run it again") from e
    return DicomwebManifest(to_table(listing, base, previous_ids), listing, len(listing.refs))
