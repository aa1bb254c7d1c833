"""Row-level labeling logic, Ray-free: decode a batch of manifest rows, classify decoded batches.

``cluster/label.py`` wraps these in Ray Data tasks and actors; the benchmark and tests call them directly.
A bad image never raises out of here: it becomes a row with ``status`` and an ``error`` code.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from core import errors, readers
from core.io import access, dicomweb, schema
from core.model.preprocess import PreprocessConfig, compact_pixels, decode
from core.readers.header_map import HeaderMap, header_agrees

PIXELS = "pixels"  # the compact model input (core.model.preprocess.compact_pixels): (n, s, s, 1), uint8 levels
OK = "_ok"
HEADER_CLASS = "header_class"  # the model class the DICOM header names (core.readers.header_map); None if it names none


def decode_batch(
    batch: dict[str, np.ndarray],
    cfg: PreprocessConfig,
    *,
    allowed_roots: Sequence[str] = (),
    max_pixels: int | None = None,
    max_bytes: int = readers.DEFAULT_MAX_BYTES,
    header_map: HeaderMap | None = None,
    modalities: Sequence[str] | None = None,
    http: dicomweb.HttpOptions | None = None,
) -> dict[str, Any]:
    """Preprocess every row; failures get a zero image, ``_ok=False`` and an error code.

    ``pixels`` hold the compact form (one channel, uint8 levels unless the bundle predates quantisation), which
    is what crosses Ray's object store; :class:`BatchClassifier` widens it to the model input in its traced
    call, with the arithmetic of :func:`core.model.preprocess.expand` that training uses.

    ``modalities`` (the bundle's scope, or ``--modalities``; see :mod:`core.readers.scope`): a DICOM object whose
    Modality / SOP class lies outside it gets ``out_of_scope`` from its header, before its pixels are decoded,
    and so never reaches the model.  ``None`` applies no scope.

    ``allowed_roots`` (``--allowed-root``) is checked before anything is opened; ``max_pixels``
    (``--max-pixels``) overrides the bundle's ``cfg.max_pixels`` - it bounds memory, it does not change the
    preprocessing, so it may differ from training; ``header_map`` (``--header-map``, see
    :func:`core.readers.header_map.load_header_map`) maps DICOM headers to the ``header_class`` column.  Error details
    are codes and numbers only: no header value and no library exception message (which may quote one).

    ``http`` (``--ca-bundle``, ``--dicomweb-concurrency``): a batch with ``dicomweb+`` URIs downloads up to
    ``http.concurrency`` instances ahead of the decoder (docs/dicomweb.md, "Transport").
    """
    limit = cfg.max_pixels if max_pixels is None else int(max_pixels)
    roots = access.validate_roots(allowed_roots)  # a misconfigured root fails the task, not every row
    uris = [str(u) for u in batch[schema.URI]]
    n = len(uris)
    pixels = np.zeros((n, *cfg.compact_shape), dtype=cfg.compact_dtype)
    ok = np.zeros(n, dtype=bool)
    err: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    fmt: list[str | None] = [None] * n
    header: list[str | None] = [None] * n
    header_cls: list[str | None] = [None] * n
    sources = _sources(uris, roots, max_bytes, http or dicomweb.HttpOptions())
    for i, (uri, data) in enumerate(zip(uris, sources, strict=True)):
        try:
            if isinstance(data, BaseException):
                raise data
            decoded = decode(
                data, uri, cfg, max_pixels=limit, max_bytes=max_bytes, header_map=header_map, modalities=modalities
            )
            pixels[i] = compact_pixels(decoded, cfg)  # the same steps as preprocess_file, plus the checks
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


def _sources(
    uris: list[str], roots: Sequence[str], max_bytes: int, http: dicomweb.HttpOptions
) -> Iterator[bytes | BaseException]:
    """Each row's bytes (or the exception reading it raised), in order; DICOMweb rows are fetched up to
    ``http.concurrency`` ahead of the decoder, files one at a time as the loop reaches them."""

    def read(uri: str) -> bytes | BaseException:
        try:
            access.check_allowed(uri, roots)
            return readers.read_uri(uri, max_bytes=max_bytes, allowed_roots=roots, http=http)
        except Exception as e:  # noqa: BLE001 - handed to decode_batch, which turns it into the row's code
            return e

    if any(dicomweb.is_dicomweb(u) for u in uris):
        return dicomweb.in_order(read, uris, http.concurrency)
    return map(read, uris)


def _text(value: Any) -> str | None:
    """Optional strings come back from Ray's numpy batches as None, NaN or numpy scalars: normalise them."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return None
    return str(value)


class BatchClassifier:
    """Runs a bundle's model on fixed-shape batches (the last one padded) so the graph is built once.

    Input is the compact form of :func:`decode_batch`; one call (:func:`core.model.engines.forward_graph`) widens it
    (uint8 levels → float32, one channel → ``cfg.channels``) and returns the probabilities, plus the penultimate
    features when the bundle scores trust, so nothing runs the model twice and nothing traces twice (start-up
    CPU counts in a short run).  ``engine`` picks who runs that graph (:func:`core.model.engines.resolve_engine`):
    ``auto`` is LiteRT on the CPU when the bundle carries its export, Keras/TensorFlow otherwise or on a GPU;
    ``threads`` bounds LiteRT's threads (Keras takes TF's process-wide setting, ``limit_tf_threads``).
    """

    trust = None  # the bundle's core.trust.confidence.Trust, set by __init__; None: no calibration, no abstention

    def __init__(
        self,
        bundle,
        batch_size: int,
        min_confidence: float | None = None,
        max_ood_score: float | None = None,
        *,
        engine: str = "auto",
        threads: int | None = None,
        gpu: bool = False,
    ) -> None:
        from core.model import engines
        self.bundle = bundle
        self.batch_size = int(batch_size)
        self.classes = list(bundle.classes)
        self.trust = _load_trust(bundle, min_confidence, max_ood_score)
        features = self.trust is not None and self.trust.needs_features
        self.engine = engines.resolve_engine(engine, bundle.litert_path is not None, gpu)
        if self.engine == "litert":
            threads = threads or len(os.sched_getaffinity(0))
            self._fn = engines.litert_forward(bundle.litert_path, bundle.preprocess, self.batch_size, threads, features)
        else:
            self._fn = engines.keras_forward(bundle.model, bundle.preprocess, self.batch_size, features)

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and (when the bundle scores trust) penultimate features of compact ``pixels``."""
        cfg = self.bundle.preprocess
        if tuple(np.shape(pixels)[1:]) != cfg.compact_shape or np.asarray(pixels).dtype != cfg.compact_dtype:
            raise ValueError(
                f"BatchClassifier takes decode_batch's compact pixels, (n, *{cfg.compact_shape}) "
                f"{cfg.compact_dtype}; got {np.shape(pixels)} {np.asarray(pixels).dtype}"
            )
        n = len(pixels)
        probs = np.zeros((n, len(self.classes)), dtype=np.float32)
        feats: np.ndarray | None = None
        b = self.batch_size
        for start in range(0, n, b):
            chunk = pixels[start : start + b]
            m = len(chunk)
            if m < b:
                chunk = np.concatenate([chunk, np.zeros((b - m, *chunk.shape[1:]), chunk.dtype)])
            p, f = self._fn(chunk)
            probs[start : start + m] = p[:m]
            if f is not None:
                if feats is None:
                    feats = np.zeros((n, f.shape[-1]), dtype=np.float32)
                feats[start : start + m] = f[:m]
        return probs, feats

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """The model's probabilities for compact ``pixels`` (n, s, s, 1)."""
        return self.forward(pixels)[0]

    def predict_scored(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and OOD scores from one forward pass (features and softmax together)."""
        probs, feats = self.forward(pixels)
        calibrated = self.trust.calibrate(probs)
        return calibrated.astype(np.float32), self.trust.ood(feats, calibrated).astype(np.float32)

    def _abstain_reasons(self, probs: np.ndarray, ood: np.ndarray, ok: np.ndarray) -> list[str | None]:
        if self.trust is None:
            return [None] * len(ok)
        from core.trust.confidence import abstain_reasons

        t = self.trust
        reasons = abstain_reasons(probs, ood, self.classes, t.min_confidence, t.max_ood_score)
        return [r if ok[i] else None for i, r in enumerate(reasons)]

    def label_batch(self, batch: dict[str, Any]) -> pa.Table:
        """Decoded batch in, a table in exactly the labels schema out (pixels dropped).

        With a bundle's trust data (:mod:`core.trust.confidence`) probabilities are calibrated, every ok row gets an
        ``ood_score``, and rows that should not be trusted keep status ok but get label ``other`` and an
        ``abstain_reason`` (their ``probabilities`` still hold every class score).
        Returning Arrow with the schema applied here keeps all-null columns typed as they cross Ray."""
        ok = np.asarray(batch[OK], dtype=bool)
        n = len(ok)
        probs = np.zeros((n, len(self.classes)), dtype=np.float32)
        ood = np.full(n, np.nan, dtype=np.float32)
        if ok.any() and self.trust is not None:
            probs[ok], ood[ok] = self.predict_scored(np.asarray(batch[PIXELS])[ok])
        elif ok.any():
            probs[ok] = self.predict(np.asarray(batch[PIXELS])[ok])
        reasons = self._abstain_reasons(probs, ood, ok)
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
        agrees = [header_agrees(None if reasons[i] else labels[i], header_cls[i]) for i in range(n)]
        labels = [schema.OTHER_LABEL if reasons[i] else labels[i] for i in range(n)]
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
                "header_agrees": agrees,  # an abstained row makes no claim to agree or disagree with
                "ood_score": [float(ood[i]) if ok[i] and self.trust is not None else None for i in range(n)],
                "abstain_reason": reasons,
                "model_id": [self.bundle.model_id] * n,
                "labeled_at": np.full(n, now, dtype=np.int64),
            }
        )


def _load_trust(bundle, min_confidence: float | None, max_ood_score: float | None):
    """The bundle's trust data with per-run threshold overrides; None (no abstention) for older bundles."""
    from core.trust.confidence import load_trust

    trust = load_trust(bundle)
    if trust is None:
        if min_confidence is not None or max_ood_score is not None:
            raise ValueError(
                f"--min-confidence / --max-ood-score need a bundle with trust data; {bundle.path} has none "
                "(trained before calibration existed): retrain it"
            )
        return None
    return trust.with_overrides(min_confidence, max_ood_score)
