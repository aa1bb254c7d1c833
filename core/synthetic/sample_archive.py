"""Write a small synthetic X-ray archive with a ground-truth manifest.

The labeling job must be demonstrable and testable without real patient data, and it must cope with what
real archives contain: several image encodings side by side, DICOM in both photometric polarities, rescale
intercepts, and BodyPartExamined headers that are sometimes simply wrong.  This module produces exactly that,
reproducibly from a seed, so a demo run and a regression test see byte-identical inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from core.io import schema
from core.synthetic.non_radiographs import OTHER_KINDS, render_other_sample
from core.synthetic.phantoms import CLASSES, render_phantom

FORMATS = ("png8", "png16", "jpeg", "dicom_mono2", "dicom_mono1")
DICOM_FORMATS = frozenset({"dicom_mono2", "dicom_mono1"})
_EXTENSIONS = {"png8": ".png", "png16": ".png", "jpeg": ".jpg", "dicom_mono2": ".dcm", "dicom_mono1": ".dcm"}

# Encodings of the non-radiograph (``other``) rows.  Gray and colour rasters, as photographs, scans and
# screenshots arrive; ``dicom_sc`` is a secondary capture (Modality OT, or US for ultrasound, CT for
# cross-sections) that header scope should skip; ``dicom_cr`` is a CR object whose pixels are not a radiograph,
# which only pixel-level abstention can catch.
OTHER_FORMATS = ("png8", "jpeg", "png_rgb", "jpeg_rgb", "dicom_sc", "dicom_cr")
OTHER_DICOM_FORMATS = frozenset({"dicom_sc", "dicom_cr"})
_EXTENSIONS.update({"png_rgb": ".png", "jpeg_rgb": ".jpg", "dicom_sc": ".dcm", "dicom_cr": ".dcm"})
# Share of ``dicom_cr`` other rows whose (protocol-driven) BodyPartExamined names a body part anyway.
OTHER_HEADER_FRACTION = 0.5

# DICOM BodyPartExamined defined terms per class; the first is the usual one.  Real archives use "SKULL" and
# "HEAD" interchangeably, so both occur.
DICOM_BODY_PART: dict[str, tuple[str, ...]] = {
    "head": ("HEAD", "SKULL"),
    "chest": ("CHEST",),
    "abdomen": ("ABDOMEN",),
    "pelvis": ("PELVIS",),
    "arm": ("ARM",),
    "leg": ("LEG",),
    "hand": ("HAND",),
}

# Share of DICOM files whose BodyPartExamined names another class, as happens with protocol-driven headers.
WRONG_HEADER_FRACTION = 0.15

MIN_SIDE, MAX_SIDE = 256, 448
_STORED_MAX = 4095  # 12-bit detector range used for DICOM and the 12-bit flavour of 16-bit PNG

SAMPLE_MANIFEST_SCHEMA = schema.SAMPLE_MANIFEST_SCHEMA

_UID_NAMESPACE = "scanlabel-sample-archive"


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per image, so image ``index`` is the same whatever ``count`` was requested."""
    return np.random.default_rng([int(seed), int(index)])


def render_sample(
    seed: int, index: int, label: str, side_scale: float = 1.0
) -> tuple[np.ndarray, np.random.Generator]:
    """Re-create the phantom that :func:`write_sample_archive` stored for ``index``, for checks and debugging.

    Returns the float image (MONOCHROME2 sense, [0, 1]) and the generator positioned just after rendering,
    which the writer goes on to use for encoding choices.  ``side_scale`` multiplies the drawn height and width
    (:data:`MIN_SIDE`..:data:`MAX_SIDE`): the same draws, a smaller or larger image.
    """
    rng = sample_rng(seed, index)
    h = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    w = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    if side_scale != 1.0:
        h, w = max(16, round(h * side_scale)), max(16, round(w * side_scale))
    return render_phantom(label, rng, h, w), rng


def _quantize(img: np.ndarray, maxval: int, dtype: type) -> np.ndarray:
    return np.rint(img * np.float32(maxval)).astype(dtype)


def _uid_maker(seed: int, key: str) -> Callable[[str], str]:
    """UIDs derived from the seed and the row, never from the clock, so files are reproducible."""

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[_UID_NAMESPACE, str(seed), key, kind])

    return uid


def _new_dataset(sop_class: str, modality: str, uid: Callable[[str], str], instance_number: int) -> Dataset:
    """File meta plus the study/series/patient modules every object of the archive shares."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.Modality = modality
    ds.Manufacturer = "scanlabel synthetic phantom"
    ds.StudyDescription = "SYNTHETIC PHANTOM"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    # Obviously synthetic, non-identifying patient module; no dates at all so files are reproducible.
    ds.PatientName = "ANON"
    ds.PatientID = "PHANTOM"
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    return ds


def _set_mono12(ds: Dataset, stored: np.ndarray, *, monochrome1: bool, intercept: int) -> None:
    """12-bit grayscale pixel module with rescale and a window around the bulk of the data."""
    h, w = stored.shape
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    # A window around the bulk of the data, in rescaled units, as a modality would set it.
    lo, hi = np.percentile(stored[::4, ::4], (1, 99))
    ds.WindowCenter = round(float(lo + hi) / 2 + intercept, 1)
    ds.WindowWidth = max(1.0, round(float(hi - lo), 1))
    ds.PixelData = stored.tobytes()


def _write_dicom(
    path: Path,
    img: np.ndarray,
    *,
    monochrome1: bool,
    body_part: str,
    seed: int,
    index: int,
    rng: np.random.Generator,
) -> None:
    stored = _quantize(1.0 - img if monochrome1 else img, _STORED_MAX, np.uint16)
    intercept = -1024 if rng.random() < 0.5 else 0
    cr = rng.random() < 0.4
    sop_class = ComputedRadiographyImageStorage if cr else DigitalXRayImageStorageForPresentation
    ds = _new_dataset(sop_class, "CR" if cr else "DX", _uid_maker(seed, str(index)), index + 1)
    if not cr:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.BodyPartExamined = body_part
    _set_mono12(ds, stored, monochrome1=monochrome1, intercept=intercept)
    ds.save_as(path, enforce_file_format=True)


def _write_other_dicom(
    path: Path,
    pixels: np.ndarray,
    fmt: str,
    kind: str,
    *,
    body_part: str | None,
    seed: int,
    index: int,
    rng: np.random.Generator,
) -> None:
    """A non-radiograph as DICOM: a secondary capture (out of scope by header) or a CR object (in scope)."""
    uid = _uid_maker(seed, f"other-{index}")
    if fmt == "dicom_cr":
        gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        monochrome1 = rng.random() < 0.3
        img = gray.astype(np.float32) / 255.0
        stored = _quantize(1.0 - img if monochrome1 else img, _STORED_MAX, np.uint16)
        ds = _new_dataset(ComputedRadiographyImageStorage, "CR", uid, index + 1)
        ds.ImageType = ["DERIVED", "PRIMARY"]
        if body_part is not None:
            ds.BodyPartExamined = body_part
        _set_mono12(ds, stored, monochrome1=monochrome1, intercept=-1024 if rng.random() < 0.5 else 0)
    elif fmt == "dicom_sc":
        if kind == "ultrasound":
            ds = _new_dataset(UltrasoundImageStorage, "US", uid, index + 1)
        else:
            ds = _new_dataset(SecondaryCaptureImageStorage, "CT" if kind == "cross_section" else "OT", uid, index + 1)
            ds.ConversionType = "WSD"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        h, w = pixels.shape[:2]
        ds.Rows, ds.Columns = h, w
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        if pixels.ndim == 3:
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
        else:
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    else:
        raise ValueError(f"not an other-row DICOM format: {fmt!r}")
    ds.save_as(path, enforce_file_format=True)


def _write_image(path: Path, fmt: str, img: np.ndarray, rng: np.random.Generator) -> None:
    if fmt == "png8":
        ok = cv2.imwrite(str(path), _quantize(img, 255, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    elif fmt == "png16":
        maxval = _STORED_MAX if rng.random() < 0.5 else 65535
        ok = cv2.imwrite(str(path), _quantize(img, maxval, np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    elif fmt == "jpeg":
        quality = int(rng.integers(85, 96))
        ok = cv2.imwrite(str(path), _quantize(img, 255, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        raise ValueError(f"not an OpenCV format: {fmt!r}")
    if not ok:
        raise OSError(f"OpenCV could not write {path}")


def _write_other_image(path: Path, fmt: str, pixels: np.ndarray, rng: np.random.Generator) -> None:
    """8-bit raster of a non-radiograph: gray formats store luma, RGB formats three channels (BGR on disk)."""
    if fmt in ("png8", "jpeg"):
        out = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    elif fmt in ("png_rgb", "jpeg_rgb"):
        out = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    else:
        raise ValueError(f"not an other-row raster format: {fmt!r}")
    if fmt.startswith("jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if not cv2.imwrite(str(path), out, params):
        raise OSError(f"OpenCV could not write {path}")


def other_format_for_index(seed: int, index: int) -> str:
    """Encoding of ``other`` row ``index``: every block of ``len(OTHER_FORMATS)`` rows holds each format once,
    so formats stay balanced and row ``index`` does not depend on how many rows were asked for."""
    block, pos = divmod(int(index), len(OTHER_FORMATS))
    order = np.random.default_rng([int(seed), 0x07E4, 0xF0F0, block]).permutation(len(OTHER_FORMATS))
    return OTHER_FORMATS[int(order[pos])]


def other_image_id(seed: int, index: int, kind: str) -> str:
    """Kind in the id (``s3-other-ultrasound-000007``) so per-kind results can be read off any report
    (:func:`core.synthetic.non_radiographs.kind_of_image_id` reads it back)."""
    return f"s{seed}-other-{kind}-{index:06d}"


def _other_count(count: int, other_count: int | None, other_fraction: float | None) -> int:
    if other_count is not None and other_fraction is not None:
        raise ValueError("give other_count or other_fraction, not both")
    if other_fraction is not None:
        if not 0.0 <= other_fraction < 1.0:
            raise ValueError(f"other_fraction must be in [0, 1), got {other_fraction}")
        return round(count * other_fraction / (1.0 - other_fraction))
    n = 0 if other_count is None else int(other_count)
    if n < 0:
        raise ValueError(f"other_count must be >= 0, got {other_count}")
    return n


def _balanced(rng: np.random.Generator, values: Sequence[str], count: int) -> list[str]:
    """Round robin then shuffle: every value gets count/len(values) items up to one, unlike i.i.d. draws."""
    return [str(v) for v in rng.permutation(np.resize(np.array(values, dtype=object), count))]


PARALLEL_MIN_ROWS = 256  # below this, starting worker processes costs more than it saves
_CHUNK = 48  # rows per task handed to a worker process


def _write_chunk(
    images: Path,
    seed: int,
    tasks: list[tuple],
    decoys: Sequence[str],
    other_kinds: Sequence[str],
    confusions: Mapping[str, str] | None = None,
    side_scale: float = 1.0,
):
    return [
        _body_part_row(images, seed, i, label, fmt, wrong, decoys, confusions, side_scale)
        if kind == "body"
        else _other_row(images, seed, i, other_kinds)
        for kind, i, label, fmt, wrong in tasks
    ]


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _write_rows(
    images: Path,
    seed: int,
    tasks: list[tuple],
    decoys: Sequence[str],
    other_kinds: Sequence[str],
    workers: int | None,
    confusions: Mapping[str, str] | None = None,
    side_scale: float = 1.0,
) -> list[tuple]:
    """Write every image of ``tasks``, in worker processes when there are enough; rows come back in task order."""
    workers = usable_cores() if workers is None else workers
    if workers <= 1 or len(tasks) < PARALLEL_MIN_ROWS:
        return _write_chunk(images, seed, tasks, decoys, other_kinds, confusions, side_scale)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [tasks[k : k + _CHUNK] for k in range(0, len(tasks), _CHUNK)]
    # spawn, not fork: the caller may hold TensorFlow's or Ray's threads, which a forked child must not inherit
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        args = [(images, seed, c, decoys, other_kinds, confusions, side_scale) for c in chunks]
        done = pool.map(_write_chunk, *zip(*args, strict=True))
        return [row for chunk in done for row in chunk]


def _append(rows: dict[str, list], row: tuple) -> None:
    uri, image_id, label, fmt, header, header_wrong = row
    rows[schema.URI].append(uri)
    rows[schema.IMAGE_ID].append(image_id)
    rows[schema.LABEL].append(label)
    rows["format"].append(fmt)
    rows["header_body_part"].append(header)
    rows["header_wrong"].append(header_wrong)


def _body_part_row(
    images: Path,
    seed: int,
    i: int,
    label: str,
    fmt: str,
    wrong: bool,
    decoys: Sequence[str],
    confusions: Mapping[str, str] | None = None,
    side_scale: float = 1.0,
) -> tuple:
    """Write body-part image ``i`` and return its manifest row; a wrong header names another class (the one
    ``confusions`` gives for its class, when it gives one)."""
    image_id = f"s{seed}-{i:06d}"
    path = images / f"{image_id}{_EXTENSIONS[fmt]}"
    img, rng = render_sample(seed, i, label, side_scale)
    header: str | None = None
    if fmt in DICOM_FORMATS:
        part = label
        if wrong:
            others = [c for c in decoys if c != label]
            part = others[int(rng.integers(len(others)))]
            if confusions and label in confusions:
                part = confusions[label]
        terms = DICOM_BODY_PART[part]
        header = terms[int(rng.integers(len(terms)))]
        _write_dicom(path, img, monochrome1=fmt == "dicom_mono1", body_part=header, seed=seed, index=i, rng=rng)
    else:
        _write_image(path, fmt, img, rng)
    return str(path), image_id, label, fmt, header, wrong


def _other_row(images: Path, seed: int, j: int, other_kinds: Sequence[str]) -> tuple:
    """Write non-radiograph ``j`` and return its manifest row (a body-part header on it is a wrong header)."""
    pixels, kind, rng = render_other_sample(seed, j, other_kinds)
    fmt = other_format_for_index(seed, j)
    image_id = other_image_id(seed, j, kind)
    path = images / f"{image_id}{_EXTENSIONS[fmt]}"
    header = None
    if fmt in OTHER_DICOM_FORMATS:
        if fmt == "dicom_cr" and rng.random() < OTHER_HEADER_FRACTION:
            terms = DICOM_BODY_PART[CLASSES[int(rng.integers(len(CLASSES)))]]
            header = terms[int(rng.integers(len(terms)))]
        _write_other_dicom(path, pixels, fmt, kind, body_part=header, seed=seed, index=j, rng=rng)
    else:
        _write_other_image(path, fmt, pixels, rng)
    return str(path), image_id, schema.OTHER_LABEL, fmt, header, header is not None


def _check_arguments(
    count: int,
    n_other: int,
    classes: tuple[str, ...],
    header_noise: float,
    confusions: Mapping[str, str] | None,
    formats: Sequence[str],
    side_scale: float,
) -> None:
    """Refuse an archive that cannot be written before any image is drawn."""
    if count < 0 or count + n_other < 1:
        raise ValueError(f"count must be at least 1 (or other rows requested), got {count}")
    if not 0.25 <= side_scale <= 4.0:
        raise ValueError(f"side_scale must be in [0.25, 4], got {side_scale}")
    if not 0.0 <= header_noise <= 1.0:
        raise ValueError(f"header_noise must be in [0, 1], got {header_noise}")
    bad = [f for f in formats if f not in FORMATS] or ([] if formats else ["(none)"])
    if bad:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {bad}")
    known = DICOM_BODY_PART
    bad_pairs = [(k, v) for k, v in (confusions or {}).items() if k not in known or v not in known or k == v]
    if bad_pairs:
        raise ValueError(f"confusions must map a class onto another class, got {bad_pairs}")
    unknown = [c for c in classes if c not in DICOM_BODY_PART]
    if not classes or unknown:
        raise ValueError(f"classes must be a non-empty subset of {CLASSES}, got unknown {unknown}")


def write_sample_archive(
    out_dir: str | Path,
    count: int,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    *,
    other_count: int | None = None,
    other_fraction: float | None = None,
    other_kinds: Sequence[str] = OTHER_KINDS,
    workers: int | None = None,
    header_noise: float = WRONG_HEADER_FRACTION,
    confusions: Mapping[str, str] | None = None,
    formats: Sequence[str] = FORMATS,
    side_scale: float = 1.0,
) -> Path:
    """Generate a reproducible mixed-format archive plus its ground truth, for demos, tests and benchmarks.

    Writes ``count`` body-part images under ``out_dir/images`` and ``out_dir/manifest.parquet`` (see
    ``SAMPLE_MANIFEST_SCHEMA``) and returns the manifest path.  The same ``seed`` gives byte-identical files
    and manifest; nothing depends on the clock.  About 15% of DICOM files carry a BodyPartExamined naming
    another class (``header_wrong``) so header-versus-model disagreement can be exercised.

    ``other_count`` (or ``other_fraction``, the share of ``other`` rows in the whole archive) appends that many
    non-radiograph images (:mod:`core.synthetic.non_radiographs`) labelled ``other``, in :data:`OTHER_FORMATS`.  They
    come from their own per-index streams, so the body-part rows are the same with or without them, and
    ``other`` row ``j`` is the same whatever count is asked.  Half of their ``dicom_cr`` files name a body
    part in BodyPartExamined (``header_wrong`` true), as a protocol-driven header would.

    ``workers`` processes draw and write the images (default: every core this process may use; archives under
    :data:`PARALLEL_MIN_ROWS` rows are written in this process).  Each image comes from its own seeded stream,
    so the files and the manifest are the same bytes whatever the number of workers.

    Weak-label figures (docs/weak-labels.md) change the header noise: ``header_noise`` is the share of DICOM rows
    with a wrong header (default 15 %); ``confusions`` makes it class-dependent, a wrong header of a class in it
    naming the class it maps to (``{"arm": "hand", "abdomen": "pelvis"}``, as protocol defaults do) instead of
    a random other class; ``formats`` (a subset of :data:`FORMATS`) restricts the encodings, e.g. DICOM only.
    ``side_scale`` scales every phantom's drawn height and width (default 1: :data:`MIN_SIDE` to :data:`MAX_SIDE`
    pixels); drawing and encoding cost about its square (BENCHMARKS.md: the demo's recipe on smaller phantoms).
    With the defaults the archive is byte-identical to one written without these arguments.
    """
    n_other = _other_count(count, other_count, other_fraction)
    other_kinds = tuple(other_kinds)
    classes = tuple(classes)
    _check_arguments(count, n_other, classes, header_noise, confusions, formats, side_scale)
    out = Path(out_dir).resolve()
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)

    plan = np.random.default_rng([int(seed), 0x5CA9])
    labels = _balanced(plan, classes, count)
    formats = _balanced(plan, tuple(formats), count)
    dicom_idx = [i for i, f in enumerate(formats) if f in DICOM_FORMATS]
    n_wrong = round(header_noise * len(dicom_idx))
    wrong = set(plan.choice(dicom_idx, size=n_wrong, replace=False).tolist()) if n_wrong else set()
    # A wrong header names some other class, even when the archive only contains one class.
    decoys = classes if len(classes) > 1 else CLASSES

    tasks = [("body", i, labels[i], formats[i], i in wrong) for i in range(count)]
    tasks += [("other", j, None, None, False) for j in range(n_other)]
    rows: dict[str, list] = {name: [] for name in SAMPLE_MANIFEST_SCHEMA.names}
    for row in _write_rows(images, seed, tasks, decoys, other_kinds, workers, confusions, side_scale):
        _append(rows, row)

    table = pa.Table.from_pydict(rows, schema=SAMPLE_MANIFEST_SCHEMA)
    manifest = out / "manifest.parquet"
    tmp = out / ".manifest.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, manifest)  # a reader never sees a half-written manifest
    return manifest
