"""DICOM through pydicom and its pixel plugins, to display-ready grayscale and PHI-free metadata.

DICOM
    * Transfer syntaxes: whatever pydicom 3 decodes with the installed plugins - native little/big endian,
      implicit/explicit VR, deflated, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000 (and HTJ2K).
      One with no decoder (MPEG/H.264/HEVC video, JPIP, private syntaxes) is ``unsupported_format``.
    * Reduced path (``min_side`` > 0): an unsigned MONOCHROME frame of a JPEG 2000/HTJ2K/JPEG/JPEG-LS syntax is
      first offered to :mod:`core.readers.frames` (decoding at a fraction of full size where the codec allows);
      anything those decoders decline or fail on takes the full path above, with its error codes.
    * Files without preamble or file meta are read with ``force=True`` when their first bytes look like a
      DICOM data element (group 0x0002 or 0x0008, either byte order); the transfer syntax is then the one
      pydicom inferred while parsing.
    * **Multi-frame policy: the middle frame** (index ``NumberOfFrames // 2``) represents the object - for a
      CT/MR stack it is the most central slice, for cine/US loops any frame is as good as another.  Only that
      frame is decoded, so the size limit applies per frame and a 1000-frame series costs one frame of CPU.
      The same policy holds for multi-frame colour.
    * Grayscale conversion: MONOCHROME1/2 as stored; RGB (and YBR_FULL/YBR_FULL_422, which pydicom converts
      to RGB) by ITU-R BT.601 luma; YBR data left in YCbCr by the decoder uses its Y plane (the same luma);
      PALETTE COLOR through its lookup tables, then luma.
    * Intensity, MONOCHROME only: Modality LUT (rescale slope/intercept or LUT sequence), then the first VOI
      LUT or window centre/width if present (``voi_applied`` in the metadata); otherwise, and after it,
      :func:`core.model.preprocess.normalize_intensity` stretches robust percentiles.  MONOCHROME1 is inverted so
      dense tissue is bright.  ``PixelPaddingValue`` (and ``PixelPaddingRangeLimit``) pixels are masked out of
      the statistics; so are non-finite values of float pixel data.
    * Float/double-float pixel data, 1-bit, signed and 8-32-bit data are decoded; only 2-D images come out.
    * No pixel data: an object that is not an image (SR, RTPLAN, RTSTRUCT, ECG waveform, DICOMDIR, PDF...) is
      ``no_pixels`` (row status ``skipped``); an *image* object without pixel data (a truncated or stripped
      file) is ``decode_error``.
    * Scope (``modalities``, :mod:`core.readers.scope`): checked from ``Modality`` and the SOP class right after the
      header is parsed, before the no-pixel check and any pixel decoding; an object outside it is
      ``out_of_scope`` (row status ``skipped``).  The metadata carries ``modality`` (sanitised code) and
      ``sop_class`` (the registered keyword, never file text).

Privacy
    Metadata carries only :data:`SAFE_DICOM_FIELDS`, each passed through
    :func:`core.readers.privacy.safe_code_string`, plus the model class derived from ``BodyPartExamined`` /
    ``StudyDescription`` (:mod:`core.readers.header_map`).  Error messages are built from codes and numbers, never from
    header text or library exception messages (which quote values), and are scrubbed of the file's PHI values
    as a second line of defence.  pydicom's own warnings and log records, which quote offending values
    ("Invalid value for VR DA: '19700101'"), are suppressed while decoding.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from core import errors
from core.readers import frames as frames_
from core.readers import privacy, scope
from core.readers.base import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, Decoded, check_pixels
from core.readers.header_map import HeaderMap, map_header
from core.readers.jpeg2000 import j2k_dimensions
from core.readers.raster import jpeg_dimensions

# DICOM attributes whose value may be written out (not identifying; filtered through safe_code_string).
SAFE_DICOM_FIELDS = ("Modality", "BodyPartExamined", "PhotometricInterpretation")

DEFLATED_TS = "1.2.840.10008.1.2.1.99"


_decoding = contextvars.ContextVar("scanlabel_decoding_dicom", default=False)


class _DropWhileDecoding(logging.Filter):
    """pydicom log records quote header values; while we decode, none of them may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _decoding.get()


_PYDICOM_LOG_FILTER = _DropWhileDecoding()


def _install_log_filter() -> None:
    """Logger filters do not apply to records propagated from child loggers, so filter each pydicom logger."""
    import pydicom  # noqa: F401 - its module loggers must exist before we can filter them

    for name in ["pydicom", *logging.root.manager.loggerDict]:
        if name == "pydicom" or name.startswith("pydicom."):
            logger = logging.getLogger(name)
            if _PYDICOM_LOG_FILTER not in logger.filters:
                logger.addFilter(_PYDICOM_LOG_FILTER)


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    _install_log_filter()
    token = _decoding.set(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _decoding.reset(token)


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _file_meta_end(data: bytes) -> int | None:
    """Offset just past the (always explicit VR little endian) group 0002 of a file with a preamble."""
    pos = 132
    n = len(data)
    while pos + 8 <= n:
        group = struct.unpack("<H", data[pos : pos + 2])[0]
        if group != 0x0002:
            return pos
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > n:
                return None
            pos += 12 + struct.unpack("<I", data[pos + 8 : pos + 12])[0]
        else:
            pos += 8 + struct.unpack("<H", data[pos + 6 : pos + 8])[0]
    return None


def _guard_deflated(data: bytes, max_bytes: int) -> None:
    """pydicom inflates a deflated dataset in one unbounded call: measure it first, discarding the output."""
    if DEFLATED_TS.encode() not in data[:2048]:
        return
    start = _file_meta_end(data)
    if start is None or start >= len(data):
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    chunk = data[start:]
    try:
        while not inflater.eof:
            out = inflater.decompress(chunk, 1 << 22)
            total += len(out)
            if total > max_bytes:
                raise errors.ScanError(errors.TOO_LARGE, f"deflated dataset inflates beyond {max_bytes} bytes")
            if not out and not inflater.unconsumed_tail:
                break  # input exhausted and nothing pending: a truncated stream, pydicom will report it
            chunk = inflater.unconsumed_tail
    except zlib.error as e:
        raise errors.ScanError(errors.DECODE_ERROR, "corrupt deflated dataset") from e


def _int_attr(ds, name: str, default: int | None = None) -> int | None:
    if name not in ds:
        return default
    value = ds[name].value
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise errors.ScanError(errors.DECODE_ERROR, f"invalid {name}") from e


def _transfer_syntax(ds):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    # Preamble/meta-less file: use the encoding pydicom inferred while parsing.
    implicit, little = ds.original_encoding
    if implicit:
        ts = ImplicitVRLittleEndian
    else:
        ts = ExplicitVRBigEndian if little is False else ExplicitVRLittleEndian
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ts


def _ts_name(ts) -> str:
    """The registered name of a transfer syntax, or its UID - never free text from the file."""
    name = getattr(ts, "name", "") or ""
    return name if name and name != str(ts) else privacy.safe_code_string(str(ts).replace(".", "-")) or "unknown"


def _is_image_object(ds) -> bool:
    """Whether missing pixel data means a broken file (an image) rather than a non-image object (skip).

    The SOP class decides when it is a registered one (an RT Dose with only DVHs legitimately has no pixels);
    otherwise the presence of Image Pixel module attributes does.
    """
    name = _sop_class_name(ds)
    if name:
        return "Image Storage" in name
    return "Rows" in ds or "Columns" in ds or "BitsAllocated" in ds


def _sop_class_name(ds) -> str | None:
    """The registered name of the SOP class ("Basic Text SR Storage"): dictionary text, never file text."""
    from pydicom.uid import UID

    sop = ds.get("SOPClassUID")
    name = UID(str(sop)).name if sop else ""
    return name if name and name != str(sop) else None


def _embedded_dimensions(ds, ts, index: int, frames: int) -> tuple[int, int] | None:
    """Dimensions declared by the codestream of the frame about to be decoded (JPEG family / JPEG 2000)."""
    from pydicom.encaps import get_frame

    if not (ts.is_compressed and ts.is_encapsulated) or ts == "1.2.840.10008.1.2.5":  # RLE is sized by pydicom
        return None
    try:
        frame = get_frame(ds.PixelData, index, number_of_frames=frames)
    except Exception:  # noqa: BLE001 - unusual fragmentation: the decoder's own checks will report it
        return None
    head = bytes(frame[:4096])
    if head.startswith(b"\xff\xd8"):
        try:
            return jpeg_dimensions(head)
        except errors.ScanError:
            return None
    return j2k_dimensions(head)


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float32, copy=False)
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def _padding_mask(ds, arr: np.ndarray) -> np.ndarray | None:
    pad = ds.get("PixelPaddingValue")
    if not isinstance(pad, int | np.integer) or arr.ndim != 2:
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    if isinstance(limit, int | np.integer):
        lo, hi = sorted((int(pad), int(limit)))
        mask = (arr < lo) | (arr > hi)
    else:
        mask = arr != pad
    return mask if mask.any() else None  # all padding: ignore the attribute rather than blank the image


def _monochrome(ds, arr: np.ndarray, photometric: str) -> tuple[np.ndarray, np.ndarray | None, bool]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    mask = _padding_mask(ds, arr)
    out = apply_modality_lut(arr, ds) if not np.issubdtype(arr.dtype, np.floating) else arr
    has_voi = ("WindowCenter" in ds and "WindowWidth" in ds) or "VOILUTSequence" in ds
    if has_voi:
        try:
            out = apply_voi_lut(out, ds, index=0, prefer_lut=True)
        except Exception:  # noqa: BLE001 - malformed VOI: fall back to robust normalisation
            has_voi = False
    out = np.asarray(out, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        if not finite.any():
            raise errors.ScanError(errors.DECODE_ERROR, "no finite pixel values")
        mask = finite if mask is None else (mask & finite)
        out[~finite] = float(out[finite].min())
    if photometric == "MONOCHROME1":
        valid = out[mask] if mask is not None and mask.any() else out
        out = float(valid.max()) + float(valid.min()) - out
    return out, mask, has_voi


def _decode_dicom(
    data: bytes,
    max_pixels: int,
    max_bytes: int,
    mapping: HeaderMap | None,
    modalities: Sequence[str] | None,
    min_side: int = 0,
) -> Decoded:
    import pydicom

    _guard_deflated(data, max_bytes)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom raises many types on garbage input
        raise errors.ScanError(errors.DECODE_ERROR, f"DICOM header: {type(e).__name__}") from e
    if len(ds) == 0:
        raise errors.ScanError(errors.DECODE_ERROR, "no DICOM data elements")
    if (
        data[128:132] != b"DICM"
        and "SOPClassUID" not in ds
        and not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    ):
        # A forced parse of bytes that merely start like a data element: don't let garbage pass as a skip.
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "not a DICOM object (no preamble, no SOP class)")
    try:
        return _decode_dataset(ds, max_pixels, mapping, modalities, min_side)
    except errors.ScanError as e:
        # Messages are built from codes and numbers; scrubbing is the second line of defence.
        raise errors.ScanError(e.code, privacy.scrub(e.message, privacy.phi_values(ds)) or "") from e


def _header_scope(ds, modalities: Sequence[str] | None) -> tuple[str | None, str | None]:
    """(sanitised Modality, SOP class keyword); raises ``out_of_scope`` before any pixel is touched.

    Only the Modality code string and the SOP class's registered keyword/name leave this function: both are
    properties of the kind of object, never of the patient (see :mod:`core.readers.scope`)."""
    raw = ds.get("Modality")
    modality = privacy.safe_code_string(raw)
    modality = modality.upper() if modality else None
    unreadable = modality is None and raw is not None and str(raw).strip() != ""
    sop = ds.get("SOPClassUID")
    sop = str(sop) if sop else None
    reason = scope.out_of_scope_reason(modality, sop, modalities, modality_unreadable=unreadable)
    if reason is not None:
        raise errors.ScanError(errors.OUT_OF_SCOPE, reason)
    return modality, scope.sop_class_keyword(sop)


def _decode_dataset(
    ds, max_pixels: int, mapping: HeaderMap | None, modalities: Sequence[str] | None, min_side: int = 0
) -> Decoded:
    from pydicom.pixels import apply_color_lut, get_decoder

    pixel_keyword = next((k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds), None)
    modality, sop_class = _header_scope(ds, modalities)  # scope first: an RT dose grid is never decoded
    if pixel_keyword is None:
        if _is_image_object(ds):
            raise errors.ScanError(errors.DECODE_ERROR, "image object without pixel data (truncated?)")
        raise errors.ScanError(errors.NO_PIXELS, _sop_class_name(ds) or modality or "no pixel data")
    rows, cols = _int_attr(ds, "Rows", 0), _int_attr(ds, "Columns", 0)
    if not rows or not cols:
        raise errors.ScanError(errors.DECODE_ERROR, "pixel data without Rows/Columns")
    frames = max(_int_attr(ds, "NumberOfFrames", 1) or 1, 1)
    # One frame is decoded (multi-frame policy), so the limit is per frame; the whole file is bounded by max_bytes.
    check_pixels(rows, cols, 1, max_pixels)
    index = frames // 2
    ts = _transfer_syntax(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as e:
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, f"no decoder for transfer syntax {_ts_name(ts)}") from e
    if not decoder.is_available:
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, f"no decoding plugin installed for {_ts_name(ts)}")
    dims = _embedded_dimensions(ds, ts, index, frames)
    if dims is not None and dims[0] * dims[1] > max_pixels:
        # Rows/Columns passed the limit, so the codestream disagrees with its header: crafted or corrupt.
        raise errors.ScanError(errors.DECODE_ERROR, f"codestream claims {dims[1]}x{dims[0]}, header {cols}x{rows}")
    photometric = privacy.safe_code_string(ds.get("PhotometricInterpretation")) or "MONOCHROME2"
    photometric = photometric.upper()
    fast = _reduced_frame(ds, ts, index, frames, photometric, min_side) if min_side > 0 else None
    if fast is not None:
        arr, props = fast.pixels, {}
    else:
        arr, props = _full_frame(ds, decoder, ts, index)
    out_photometric = str(props.get("photometric_interpretation") or photometric).upper()
    mask = None
    has_voi = False
    if arr.ndim == 2 and out_photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        out = _luma(arr)
    elif arr.ndim == 3 and arr.shape[-1] == 3 and out_photometric.startswith("YBR"):
        out = arr[..., 0].astype(np.float32)  # the decoder left YCbCr: Y is the luma
    elif arr.ndim == 3 and arr.shape[-1] == 3:
        out = _luma(arr)
    elif arr.ndim == 2:
        out, mask, has_voi = _monochrome(ds, arr, photometric)
    else:
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, f"pixel array of shape {tuple(arr.shape)}")
    out = np.asarray(out, dtype=np.float32)
    if not np.isfinite(out).all():
        raise errors.ScanError(errors.DECODE_ERROR, "non-finite pixel values")
    body_part_raw = ds.get("BodyPartExamined")
    study_description = ds.get("StudyDescription")  # used for the mapping only, never written out
    meta = {
        "source_format": "dicom",
        "rows": rows,
        "columns": cols,
        "frames": frames,
        "frame_index": index,
        "photometric": photometric,
        "transfer_syntax": _ts_name(ts),
        "voi_applied": bool(has_voi),
        "header_body_part": privacy.safe_code_string(body_part_raw),
        "header_class": map_header(
            None if body_part_raw is None else str(body_part_raw),
            None if study_description is None else str(study_description),
            mapping,
        ),
        "modality": modality,
        "sop_class": sop_class,
    }
    if min_side > 0:
        meta["decode_reduction"] = fast.reduction if fast is not None else 1
    return Decoded(pixels=out, meta=meta, mask=mask)


def _full_frame(ds, decoder, ts, index: int) -> tuple[np.ndarray, dict]:
    """The frame at full size through pydicom's decoder (the only path of ``decode="full"``)."""
    from pydicom.pixels import as_pixel_options

    try:
        return decoder.as_array(ds, index=index, raw=False, **as_pixel_options(ds))
    except (MemoryError, errors.ScanError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except NotImplementedError as e:
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, f"cannot decode {_ts_name(ts)} pixel data") from e
    except BaseException as e:  # noqa: BLE001 - corrupt data raises assorted errors; the Rust plugins even panic
        raise errors.ScanError(errors.DECODE_ERROR, f"{_ts_name(ts)} pixel data: {type(e).__name__}") from e


def _reduced_frame(ds, ts, index: int, frames: int, photometric: str, min_side: int) -> frames_.FrameResult | None:
    """The frame from the reduced path's decoders (:mod:`core.readers.frames`), or None for the full decode.

    Only unsigned single-sample MONOCHROME frames of 8 or 16 bits allocated are offered: those are the
    radiographs the reduced path is for, and every other case keeps pydicom's handling (sign correction,
    colour spaces, palette) untouched."""
    from pydicom.encaps import get_frame

    if not (ts.is_compressed and ts.is_encapsulated) or not frames_.decoders_for(ts):
        return None
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or (_int_attr(ds, "SamplesPerPixel", 1) or 1) != 1:
        return None
    bits_allocated, bits_stored = _int_attr(ds, "BitsAllocated", 0), _int_attr(ds, "BitsStored", 0)
    if bits_allocated not in (8, 16) or not 1 <= (bits_stored or 0) <= bits_allocated:
        return None
    if _int_attr(ds, "PixelRepresentation", 0) != 0:
        return None
    try:
        codestream = bytes(get_frame(ds.PixelData, index, number_of_frames=frames))
    except Exception:  # noqa: BLE001 - unusual fragmentation: pydicom's full decode will judge it
        return None
    rows, cols = _int_attr(ds, "Rows", 0), _int_attr(ds, "Columns", 0)
    request = frames_.FrameRequest(str(ts), rows, cols, bits_allocated, bits_stored, min_side)
    return frames_.decode_frame(codestream, request)


def decode_dicom(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    header_map: HeaderMap | None = None,
    modalities: Sequence[str] | None = None,
    min_side: int = 0,
) -> Decoded:
    """Decode to display-ready grayscale (see the module docstring for every policy applied).

    ``modalities``: the header scope (:mod:`core.readers.scope`); an object outside it raises ``out_of_scope`` before
    its pixels are decoded.  ``None`` (the default) applies no scope.

    ``min_side`` > 0 asks for the reduced path: the frame may come back smaller, by the integer factor in
    ``meta["decode_reduction"]``, as long as its longer side keeps at least ``min_side`` pixels
    (docs/decoding.md).  0, the default, is the full decode."""
    with _quiet_pydicom():
        try:
            return _decode_dicom(data, max_pixels, max_bytes, header_map, modalities, min_side)
        except errors.ScanError:
            raise
        except MemoryError as e:
            raise errors.ScanError(errors.TOO_LARGE, "out of memory while decoding") from e
        except RecursionError as e:  # absurdly nested sequences
            raise errors.ScanError(errors.DECODE_ERROR, "DICOM nesting too deep") from e
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as e:  # noqa: BLE001 - incl. pyo3 PanicException (a BaseException) from the plugins
            raise errors.ScanError(errors.DECODE_ERROR, f"DICOM: {type(e).__name__}") from e


