"""Frame decoders of the reduced path, by transfer syntax: the registry a faster decoder plugs into.

The full path hands every compressed frame to pydicom, which decodes it at full size with whatever plugin is
installed.  On the reduced path (``PreprocessConfig.decode == "reduced"``, docs/decoding.md) a DICOM frame is
first offered to the decoders registered here for its transfer syntax, in order: each returns the frame's stored
samples, possibly smaller by an integer factor, or ``None`` to pass.  When all pass, the full decode runs as
always, so a decoder may decline anything it is unsure of.

Built in: JPEG 2000 and HTJ2K at reduced resolution (:mod:`.jpeg2000`), 8-bit JPEG with DCT scaling and
12-bit/lossless JPEG and JPEG-LS at full size through imagecodecs (:mod:`.jpeg`).  A GPU decoder registers the
same way (:func:`register` with ``first=True``) in the process that owns the GPU; nothing here imports one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from core.readers import jpeg, jpeg2000

log_ = logging.getLogger("scanlabel.readers")

J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
HTJ2K_SYNTAXES = ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
JPEG_LOSSY_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
JPEG_LOSSLESS_SYNTAXES = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")
JPEGLS_SYNTAXES = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")


@dataclass(frozen=True)
class FrameRequest:
    """What the DICOM header says the frame is, and the longer side the caller needs (0: full size)."""

    transfer_syntax: str
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    min_side: int


@dataclass(frozen=True)
class FrameResult:
    pixels: np.ndarray  # 2-D stored samples, uint8 (8 bits allocated) or uint16
    reduction: int  # each side was divided by this (1: full size), rounding up
    decoder: str


FrameDecoder = Callable[[bytes, FrameRequest], "FrameResult | None"]
_REGISTRY: dict[str, list[tuple[str, FrameDecoder]]] = {}


def register(syntaxes: Iterable[str], name: str, decoder: FrameDecoder, *, first: bool = False) -> None:
    """Offer ``decoder`` the frames of ``syntaxes`` (before the built-ins when ``first``)."""
    for ts in syntaxes:
        entries = [e for e in _REGISTRY.setdefault(str(ts), []) if e[0] != name]
        entries.insert(0 if first else len(entries), (name, decoder))
        _REGISTRY[str(ts)] = entries


def decoders_for(transfer_syntax: str) -> list[str]:
    return [name for name, _ in _REGISTRY.get(str(transfer_syntax), [])]


def decode_frame(codestream: bytes, request: FrameRequest) -> FrameResult | None:
    """The first registered decoder's result that passes the checks, or None for the full decode."""
    if not jpeg.complete(codestream):
        return None  # truncated: the full path decides what such a file gives (docs/decoding.md, "Fallbacks")
    for name, decoder in _REGISTRY.get(request.transfer_syntax, []):
        try:
            result = decoder(codestream, request)
        except Exception as e:  # noqa: BLE001 - any decoder failure means: let the next one, or the full path, try
            log_.debug("frame decoder %s declined: %s", name, type(e).__name__)
            continue
        if result is not None and _plausible(result, request):
            return result
    return None


def _plausible(result: FrameResult, request: FrameRequest) -> bool:
    want = np.uint8 if request.bits_allocated == 8 else np.uint16
    expect = (math.ceil(request.rows / result.reduction), math.ceil(request.columns / result.reduction))
    return result.pixels.dtype == want and result.pixels.shape == expect


def _as_stored(arr: np.ndarray, request: FrameRequest) -> np.ndarray | None:
    """The decoder's samples in the dtype pydicom gives for the header (None if they cannot be)."""
    if arr.ndim != 2:
        return None
    if request.bits_allocated == 8:
        return arr if arr.dtype == np.uint8 else None
    return arr.astype(np.uint16, copy=False) if arr.dtype in (np.uint8, np.uint16) else None


def _j2k(codestream: bytes, request: FrameRequest) -> FrameResult | None:
    out = jpeg2000.decode_reduced(codestream, request.min_side, request.rows, request.columns)
    if out is None:
        return None
    arr = _as_stored(out[0], request)
    return None if arr is None else FrameResult(arr, 2 ** out[1], "openjpeg-reduce")


def _jpeg_lossy(codestream: bytes, request: FrameRequest) -> FrameResult | None:
    head = jpeg.frame_header(codestream)
    if head is None or head[4] != 1 or (head[2], head[3]) != (request.rows, request.columns):
        return None
    if head[1] == 8 and request.bits_allocated == 8:
        out = jpeg.decode_scaled(codestream, request.min_side, request.rows, request.columns)
        if out is not None:
            return FrameResult(out[0], out[1], "libjpeg-turbo-dct-scaled")
    return _imagecodecs_full(codestream, request, "jpeg8_decode")


def _jpeg_lossless(codestream: bytes, request: FrameRequest) -> FrameResult | None:
    head = jpeg.frame_header(codestream)
    if head is None or head[4] != 1 or (head[2], head[3]) != (request.rows, request.columns):
        return None
    return _imagecodecs_full(codestream, request, "jpeg8_decode")


def _jpegls(codestream: bytes, request: FrameRequest) -> FrameResult | None:
    return _imagecodecs_full(codestream, request, "jpegls_decode")


def _imagecodecs_full(codestream: bytes, request: FrameRequest, function: str) -> FrameResult | None:
    try:
        import imagecodecs
    except ImportError:
        return None
    arr = _as_stored(np.asarray(getattr(imagecodecs, function)(codestream)), request)
    if arr is None or int(arr.max(initial=0)) >> request.bits_stored:
        return None  # samples beyond BitsStored: pydicom would treat them differently
    return FrameResult(arr, 1, f"imagecodecs.{function}")


register(J2K_SYNTAXES + HTJ2K_SYNTAXES, "openjpeg-reduce", _j2k)
register(JPEG_LOSSY_SYNTAXES, "libjpeg-turbo", _jpeg_lossy)
register(JPEG_LOSSLESS_SYNTAXES, "libjpeg-turbo-lossless", _jpeg_lossless)
register(JPEGLS_SYNTAXES, "charls", _jpegls)
