"""One phantom stored in every transfer syntax an archive holds, for the reader tests and the decode bench.

Each encoder is a maintained field library: pydicom (native, RLE, and JPEG 2000 through pylibjpeg-openjpeg, the
way hospital gateways write it) and imagecodecs (HTJ2K through OpenJPH, JPEG baseline/extended/lossless through
libjpeg-turbo, JPEG-LS through CharLS), so the readers are tested against codestreams they did not write.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

SYNTAXES: dict[str, UID] = {
    "native": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "j2k_lossless": JPEG2000Lossless,
    "j2k_lossy": JPEG2000,
    "htj2k_lossless": HTJ2KLossless,
    "htj2k_lossy": HTJ2K,
    "jpeg_baseline": JPEGBaseline8Bit,
    "jpeg_extended": JPEGExtended12Bit,
    "jpeg_lossless": JPEGLosslessSV1,
    "jpegls": JPEGLSLossless,
}
EIGHT_BIT = ("jpeg_baseline",)  # syntaxes stored at 8 bits (baseline JPEG holds no more)
J2K_LOSSY_RATIO = 15  # a typical lossy CR archive setting


def bits_for(syntax: str) -> int:
    return 8 if syntax in EIGHT_BIT else 12


def _encode_frame(stored: np.ndarray, syntax: str, bits: int) -> bytes:
    import imagecodecs

    if syntax.startswith("htj2k"):
        return bytes(imagecodecs.htj2k_encode(stored, reversible=syntax == "htj2k_lossless"))
    if syntax == "jpeg_baseline":
        return bytes(imagecodecs.jpeg8_encode(stored, 90))
    if syntax == "jpeg_extended":
        return bytes(imagecodecs.jpeg8_encode(stored, 90, bitspersample=bits))
    if syntax == "jpeg_lossless":
        return bytes(imagecodecs.jpeg8_encode(stored, lossless=True, predictor=1, bitspersample=bits))
    if syntax == "jpegls":
        return bytes(imagecodecs.jpegls_encode(stored))
    raise ValueError(f"no frame encoder for {syntax!r}")


def _dataset(shape: tuple[int, int], frames: int, bits: int, photometric: str, instance: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["scanlabel-encodings", instance])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientName, ds.PatientID = "ANON", "PHANTOM"
    ds.Rows, ds.Columns = shape
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    return ds


def encode_dicom(
    images: np.ndarray | Sequence[np.ndarray],
    syntax: str,
    *,
    monochrome1: bool = False,
    intercept: int = 0,
    window: tuple[float, float] | None = None,
    padding_value: int | None = None,
    body_part: str | None = None,
    instance: str = "0",
) -> bytes:
    """A CR DICOM file (bytes) of one or more float [0, 1] images in ``syntax`` (a key of :data:`SYNTAXES`),
    stored at :func:`bits_for` bits; pixels exactly ``padding_value`` are declared padding."""
    frames = [images] if isinstance(images, np.ndarray) and images.ndim == 2 else list(images)
    bits = bits_for(syntax)
    dtype = np.uint8 if bits <= 8 else np.uint16
    top = (1 << bits) - 1
    stored = [np.rint(np.clip(1.0 - f if monochrome1 else f, 0, 1) * top).astype(dtype) for f in frames]
    if padding_value is not None:
        for f, s in zip(frames, stored, strict=True):
            s[f < 0] = padding_value  # negative input pixels mark padding
    ds = _dataset(stored[0].shape, len(stored), bits, "MONOCHROME1" if monochrome1 else "MONOCHROME2", instance)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, 1, "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if padding_value is not None:
        ds.PixelPaddingValue = padding_value
    if body_part:
        ds.BodyPartExamined = body_part
    raw = np.stack(stored).tobytes() if len(stored) > 1 else stored[0].tobytes()
    uid = SYNTAXES[syntax]
    if syntax in ("native", "rle", "j2k_lossless", "j2k_lossy"):
        ds.PixelData = raw
        if syntax != "native":
            kw = {"encoding_plugin": "pylibjpeg"} if syntax.startswith("j2k") else {}
            if syntax == "j2k_lossy":
                kw["j2k_cr"] = [J2K_LOSSY_RATIO]
            ds.compress(uid, **kw)
    else:
        ds.PixelData = encapsulate([_encode_frame(s, syntax, bits) for s in stored])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = uid
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
