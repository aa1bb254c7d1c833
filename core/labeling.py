"""Row-level labeling logic, Ray-free: decode a batch of manifest rows, classify decoded batches.

``cluster/label.py`` wraps these in Ray Data tasks and actors; the benchmark and tests call them directly.
A bad image never raises out of here: it becomes a row with ``status`` and an ``error`` code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from core import access, errors, readers, schema
from core.header_map import HeaderMap, header_agrees
from core.preprocess import PreprocessConfig, preprocess_pixels

PIXELS = "pixels"
OK = "_ok"
HEADER_CLASS = "header_class"  # the model class the DICOM header names (core.header_map); None if it names none


def decode_batch(
    batch: dict[str, np.ndarray],
    cfg: PreprocessConfig,
    *,
    allowed_roots: Sequence[str] = (),
    max_pixels: int | None = None,
    max_bytes: int = readers.DEFAULT_MAX_BYTES,
    header_map: HeaderMap | None = None,
    modalities: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Preprocess every row; failures get a zero image, ``_ok=False`` and an error code.

    ``modalities`` (the bundle's scope, or ``--modalities``; see :mod:`core.scope`): a DICOM object whose
    Modality / SOP class lies outside it gets ``out_of_scope`` from its header, before its pixels are decoded,
    and so never reaches the model.  ``None`` applies no scope.

    ``allowed_roots`` (``--allowed-root``) is checked before anything is opened; ``max_pixels``
    (``--max-pixels``) overrides the bundle's ``cfg.max_pixels`` - it bounds memory, it does not change the
    preprocessing, so it may differ from training; ``header_map`` (``--header-map``, see
    :func:`core.header_map.load_header_map`) maps DICOM headers to the ``header_class`` column.  Error details
    are codes and numbers only: no header value and no library exception message (which may quote one).
    """
    limit = cfg.max_pixels if max_pixels is None else int(max_pixels)
    roots = access.validate_roots(allowed_roots)  # a misconfigured root fails the task, not every row
    uris = [str(u) for u in batch[schema.URI]]
    n = len(uris)
    pixels = np.zeros((n, *cfg.shape), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    err: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    fmt: list[str | None] = [None] * n
    header: list[str | None] = [None] * n
    header_cls: list[str | None] = [None] * n
    for i, uri in enumerate(uris):
        try:
            access.check_allowed(uri, roots)
            data = readers.read_uri(uri, max_bytes=max_bytes, allowed_roots=roots)
            decoded = readers.decode_bytes(
                data, uri, limit, max_bytes=max_bytes, header_map=header_map, modalities=modalities
            )
            pixels[i] = preprocess_pixels(decoded, cfg)  # the same steps as preprocess_file, plus the checks
            ok[i] = True
            fmt[i] = decoded.meta.get("source_format")
            header[i] = decoded.meta.get("header_body_part")
            header_cls[i] = decoded.meta.get(HEADER_CLASS)
        except errors.ScanError as e:
            err[i], detail[i] = e.code, e.message[:200] or None
        except MemoryError:
            err[i], detail[i] = errors.TOO_LARGE, "out of memory while decoding"
        except Exception as e:  # noqa: BLE001 - one bad file must never fail the whole batch
            err[i], detail[i] = errors.INTERNAL_ERROR, type(e).__name__  # the message may quote file content
    return {
        schema.IMAGE_ID: np.asarray([str(x) for x in batch[schema.IMAGE_ID]], dtype=object),
        schema.URI: np.asarray(uris, dtype=object),
        PIXELS: pixels,
        OK: ok,
        "error": np.asarray(err, dtype=object),
        "error_detail": np.asarray(detail, dtype=object),
        "source_format": np.asarray(fmt, dtype=object),
        "header_body_part": np.asarray(header, dtype=object),
        HEADER_CLASS: np.asarray(header_cls, dtype=object),
    }


def _text(value: Any) -> str | None:
    """Optional strings come back from Ray's numpy batches as None, NaN or numpy scalars: normalise them."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return None
    return str(value)


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

    def label_batch(self, batch: dict[str, Any]) -> pa.Table:
        """Decoded batch in, a table in exactly the labels schema out (pixels dropped).

        Returning Arrow with the schema applied here keeps all-null columns typed as they cross Ray."""
        ok = np.asarray(batch[OK], dtype=bool)
        n = len(ok)
        probs = np.zeros((n, len(self.classes)), dtype=np.float32)
        if ok.any():
            probs[ok] = self.predict(np.asarray(batch[PIXELS])[ok])
        top = probs.argmax(axis=1)
        errs = [_text(e) for e in batch["error"]]
        status = [
            schema.STATUS_OK
            if ok[i]
            else (schema.STATUS_SKIPPED if errs[i] in errors.SKIP_CODES else schema.STATUS_ERROR)
            for i in range(n)
        ]
        # Epoch microseconds, not datetime objects: they cross Ray's numpy batches without losing the UTC zone.
        now = np.int64(dt.datetime.now(dt.timezone.utc).timestamp() * 1_000_000)
        labels = [self.classes[top[i]] if ok[i] else None for i in range(n)]
        header_cls = [_text(v) for v in batch[HEADER_CLASS]] if HEADER_CLASS in batch else [None] * n
        return schema.labels_table(
            {
                schema.IMAGE_ID: list(batch[schema.IMAGE_ID]),
                schema.URI: list(batch[schema.URI]),
                schema.LABEL: labels,
                "confidence": [float(probs[i, top[i]]) if ok[i] else None for i in range(n)],
                "probabilities": [probs[i].tolist() if ok[i] else None for i in range(n)],
                "status": status,
                "error": [None if ok[i] else errs[i] for i in range(n)],
                "error_detail": [None if ok[i] else _text(batch["error_detail"][i]) for i in range(n)],
                "source_format": [_text(v) for v in batch["source_format"]],
                "header_body_part": [_text(v) for v in batch["header_body_part"]],
                HEADER_CLASS: header_cls,  # kept by labels_table once the schema has the column
                "header_agrees": [header_agrees(labels[i], header_cls[i]) for i in range(n)],
                "model_id": [self.bundle.model_id] * n,
                "labeled_at": np.full(n, now, dtype=np.int64),
            }
        )
