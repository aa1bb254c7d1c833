"""Row-level labeling logic, Ray-free: decode a batch of manifest rows, classify decoded batches.

``cluster/label.py`` wraps these in Ray Data tasks and actors; the benchmark and tests call them directly.
A bad image never raises out of here: it becomes a row with ``status`` and an ``error`` code.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from core import errors, schema
from core.preprocess import PreprocessConfig, preprocess_file

PIXELS = "pixels"
OK = "_ok"


def decode_batch(batch: dict[str, np.ndarray], cfg: PreprocessConfig) -> dict[str, Any]:
    """Preprocess every row; failures get a zero image, ``_ok=False`` and an error code."""
    uris = [str(u) for u in batch[schema.URI]]
    n = len(uris)
    pixels = np.zeros((n, *cfg.shape), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    err: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    fmt: list[str | None] = [None] * n
    header: list[str | None] = [None] * n
    for i, uri in enumerate(uris):
        try:
            arr, meta = preprocess_file(uri, cfg)
            pixels[i] = arr
            ok[i] = True
            fmt[i] = meta.get("source_format")
            header[i] = meta.get("header_body_part")
        except errors.ScanError as e:
            err[i], detail[i] = e.code, e.message[:200] or None
        except MemoryError:
            err[i], detail[i] = errors.TOO_LARGE, "out of memory while decoding"
        except Exception as e:  # noqa: BLE001 - one bad file must never fail the whole batch
            err[i], detail[i] = errors.INTERNAL_ERROR, f"{type(e).__name__}: {e}"[:200]
    return {
        schema.IMAGE_ID: np.asarray([str(x) for x in batch[schema.IMAGE_ID]], dtype=object),
        schema.URI: np.asarray(uris, dtype=object),
        PIXELS: pixels,
        OK: ok,
        "error": np.asarray(err, dtype=object),
        "error_detail": np.asarray(detail, dtype=object),
        "source_format": np.asarray(fmt, dtype=object),
        "header_body_part": np.asarray(header, dtype=object),
    }


class BatchClassifier:
    """Runs a bundle's model on fixed-shape batches (the last one padded) so the graph is traced once."""

    def __init__(self, bundle, batch_size: int) -> None:
        import tensorflow as tf

        self.bundle = bundle
        self.batch_size = int(batch_size)
        self.classes = list(bundle.classes)
        model = bundle.model
        spec = tf.TensorSpec((self.batch_size, *bundle.preprocess.shape), tf.float32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._fn(tf.zeros(spec.shape))  # trace and warm up now, not on the first real batch

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        n = len(pixels)
        out = np.zeros((n, len(self.classes)), dtype=np.float32)
        b = self.batch_size
        for start in range(0, n, b):
            chunk = pixels[start : start + b]
            m = len(chunk)
            if m < b:
                chunk = np.concatenate([chunk, np.zeros((b - m, *chunk.shape[1:]), chunk.dtype)])
            out[start : start + m] = self._fn(chunk).numpy()[:m]
        return out

    def label_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Decoded batch in, rows of the labels schema out (pixels dropped)."""
        ok = np.asarray(batch[OK], dtype=bool)
        n = len(ok)
        probs = np.zeros((n, len(self.classes)), dtype=np.float32)
        if ok.any():
            probs[ok] = self.predict(np.asarray(batch[PIXELS])[ok])
        top = probs.argmax(axis=1)
        errs = list(batch["error"])
        status = [
            schema.STATUS_OK
            if ok[i]
            else (schema.STATUS_SKIPPED if errs[i] in errors.SKIP_CODES else schema.STATUS_ERROR)
            for i in range(n)
        ]
        now = dt.datetime.now(dt.timezone.utc)
        return {
            schema.IMAGE_ID: list(batch[schema.IMAGE_ID]),
            schema.URI: list(batch[schema.URI]),
            schema.LABEL: [self.classes[top[i]] if ok[i] else None for i in range(n)],
            "confidence": [float(probs[i, top[i]]) if ok[i] else None for i in range(n)],
            "probabilities": [probs[i].tolist() if ok[i] else None for i in range(n)],
            "status": status,
            "error": [None if ok[i] else errs[i] for i in range(n)],
            "error_detail": [None if ok[i] else batch["error_detail"][i] for i in range(n)],
            "source_format": list(batch["source_format"]),
            "header_body_part": list(batch["header_body_part"]),
            "header_agrees": [None] * n,
            "model_id": [self.bundle.model_id] * n,
            "labeled_at": [now] * n,
        }
