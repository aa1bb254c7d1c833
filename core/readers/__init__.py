"""Readers by format behind one interface: bytes in, (grayscale pixels, PHI-free metadata) out.

Formats are recognised from their content, not the file name, because archives are full of ``.png`` files that
are really JPEGs and DICOM files with no extension.  Every failure is a :class:`~core.errors.ScanError` with a
stable code; nothing else escapes :func:`decode_bytes` (the corpus and hostile-input tests hold us to that).

One module per format behind one interface (:func:`read_image`, :func:`decode_bytes`): :mod:`.source` reads the
bytes, :mod:`.raster` decodes PNG/JPEG, :mod:`.jpeg2000` JPEG 2000 files (and DICOM frames at reduced
resolution), :mod:`.dicom` decodes DICOM, whose compressed frames the reduced path first offers to
:mod:`.frames` (with :mod:`.jpeg` for the JPEG family); :mod:`.base` holds the result type and the
size limits every reader applies.  Beside them, the DICOM header's meaning: :mod:`.scope` (which objects a bundle
labels), :mod:`.header_map` (what the header claims the body part is), :mod:`.header` (header-labelled manifests,
read without pixels) and :mod:`.privacy` (what may be written).

May import: :mod:`core.errors`, :mod:`core.io`.  Imported by the model's preprocessing and the labeling job.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from core import errors
from core.readers.base import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, Decoded, check_pixels
from core.readers.dicom import SAFE_DICOM_FIELDS, decode_dicom
from core.readers.header_map import HeaderMap
from core.readers.jpeg2000 import J2K_MAGIC, JP2_MAGIC, j2k_dimensions
from core.readers.jpeg2000 import decode_file as decode_jpeg2000
from core.readers.raster import JPEG_MAGIC, PNG_MAGIC, decode_raster, jpeg_dimensions, png_dimensions
from core.readers.source import read_uri

__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "JPEG_MAGIC", "PNG_MAGIC", "SAFE_DICOM_FIELDS", "Decoded",
    "check_pixels", "decode_bytes", "decode_dicom", "decode_jpeg2000", "decode_raster", "j2k_dimensions",
    "jpeg_dimensions", "png_dimensions", "read_image", "read_uri", "sniff_format",
]


def _looks_like_bare_dicom(data: bytes) -> bool:
    """A preamble-less DICOM starts with a (0002,xxxx) or (0008,xxxx) element in either byte order."""
    if len(data) < 8:
        return False
    group_le, elem_le = struct.unpack("<HH", data[:4])
    group_be, elem_be = struct.unpack(">HH", data[:4])
    return (group_le in (0x0002, 0x0008) and elem_le < 0x0200) or (group_be == 0x0008 and elem_be < 0x0200)


def sniff_format(data: bytes, uri: str = "") -> str:
    """'png', 'jpeg', 'jpeg2000' or 'dicom' from the content; the name is not trusted (``uri`` kept for API
    stability)."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(JP2_MAGIC) or data.startswith(J2K_MAGIC):
        return "jpeg2000"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if _looks_like_bare_dicom(data):
        return "dicom"  # preamble-less DICOM: pydicom reads it with force=True
    raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "not PNG, JPEG, JPEG 2000 or DICOM")



def decode_bytes(
    data: bytes,
    uri: str = "",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    header_map: HeaderMap | None = None,
    modalities: Sequence[str] | None = None,
    min_side: int = 0,
) -> Decoded:
    """Bytes of any supported format to :class:`Decoded`; every failure is a :class:`~core.errors.ScanError`.

    ``modalities`` scopes DICOM objects by header (PNG/JPEG carry no header and are always in scope).
    ``min_side`` > 0 is the reduced path: formats whose codec can decode small (JPEG 2000, JPEG) return pixels
    smaller by ``meta["decode_reduction"]``, the longer side kept >= ``min_side`` (docs/decoding.md); 0 decodes
    at full size, exactly as before the option existed."""
    if not data:
        raise errors.ScanError(errors.EMPTY_FILE)
    fmt = sniff_format(data, uri)
    if fmt == "dicom":
        return decode_dicom(
            data, max_pixels, max_bytes=max_bytes, header_map=header_map, modalities=modalities, min_side=min_side
        )
    if fmt == "jpeg2000":
        return decode_jpeg2000(data, max_pixels, min_side)
    return decode_raster(data, fmt, max_pixels, min_side)


def read_image(
    uri: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    header_map: HeaderMap | None = None,
    modalities: Sequence[str] | None = None,
    min_side: int = 0,
) -> Decoded:
    data = read_uri(uri, max_bytes)
    return decode_bytes(
        data, uri, max_pixels, max_bytes=max_bytes, header_map=header_map, modalities=modalities, min_side=min_side
    )

