"""A GPU frame decoder for the reduced path: nvImageCodec (nvJPEG, nvJPEG2000) behind :mod:`core.readers.frames`.

Optional and never imported on the CPU path: nvImageCodec is no dependency of the package.  A process that owns
a GPU (the labeling job's model actor host, a GPU decode stage beside it) calls :func:`install`, which registers
:class:`GpuDecoder` ahead of the CPU decoders for the JPEG 2000, HTJ2K and JPEG syntaxes; a frame it cannot
decode falls through to them as usual.  :meth:`GpuDecoder.decode_batch` is the batched form a GPU stage uses:
one call decodes a whole batch of codestreams on the device (docs/decoding.md, "GPU decoding").

The GPU decodes at full size (nvJPEG2000 has no resolution-level skipping in nvImageCodec's API), then the frame
is area-reduced on the device by the same integer factor the CPU path would have skipped to, so the result is
interchangeable with the CPU decoders' (:func:`reduction_for`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from core.readers import frames, jpeg, jpeg2000

SYNTAXES = frames.J2K_SYNTAXES + frames.HTJ2K_SYNTAXES + frames.JPEG_LOSSY_SYNTAXES


def reduction_for(rows: int, columns: int, min_side: int) -> int:
    """The power-of-two factor the CPU path reduces by (at most 1/8, JPEG's DCT limit), 1 for full size."""
    if min_side <= 0:
        return 1
    return 2 ** jpeg2000.choose_reduce(rows, columns, 3, min_side)


class GpuDecoder:
    """nvImageCodec's decoder on one device, returning host arrays (``__call__``) or device tensors (batches)."""

    name = "nvimgcodec"

    def __init__(self, device_id: int = 0) -> None:
        from nvidia import nvimgcodec  # optional: only a GPU process gets here

        self._nv = nvimgcodec
        self._decoder = nvimgcodec.Decoder(device_id=device_id)
        self._params = nvimgcodec.DecodeParams(
            allow_any_depth=True, color_spec=nvimgcodec.ColorSpec.UNCHANGED, apply_exif_orientation=False
        )

    def decode_batch(self, codestreams: list[bytes]) -> list[Any]:
        """Decode on the device; returns nvImageCodec images (``__cuda_array_interface__``), None where one
        failed."""
        return list(self._decoder.decode(codestreams, params=self._params))

    def __call__(self, codestream: bytes, request: frames.FrameRequest) -> frames.FrameResult | None:
        if not jpeg.complete(codestream):
            return None
        image = self.decode_batch([codestream])[0]
        if image is None:
            return None
        arr = np.asarray(image.cpu())
        arr = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
        if arr.ndim != 2 or arr.shape != (request.rows, request.columns):
            return None
        want = np.uint8 if request.bits_allocated == 8 else np.uint16
        if arr.dtype != want and not (want == np.uint16 and arr.dtype == np.uint8):
            return None
        k = reduction_for(request.rows, request.columns, request.min_side)
        if k > 1:
            arr = _area(arr, k)
        return frames.FrameResult(arr.astype(want, copy=False), k, self.name)


def _area(arr: np.ndarray, k: int) -> np.ndarray:
    """Block means of k x k (the last partial block of each side averaged over what it has), rounded back."""
    h, w = arr.shape
    hh, ww = math.ceil(h / k), math.ceil(w / k)
    pad = np.pad(arr.astype(np.float32), ((0, hh * k - h), (0, ww * k - w)), mode="edge")
    return np.rint(pad.reshape(hh, k, ww, k).mean(axis=(1, 3))).astype(arr.dtype)


def install(device_id: int = 0) -> GpuDecoder:
    """Register a :class:`GpuDecoder` first for the JPEG 2000, HTJ2K and JPEG syntaxes; returns it."""
    decoder = GpuDecoder(device_id)
    frames.register(SYNTAXES, decoder.name, decoder, first=True)
    return decoder
