"""Training data: labelled manifest → class list, deterministic split, per-worker shard, tf.data pipeline.

The pipeline decodes with :func:`core.model.preprocess.preprocess_file` (the same function the labeling job uses),
in parallel on CPU, caches the decoded images of the shard when they fit in memory, augments per epoch and
prefetches, so a training step rarely waits on decode.  Each worker reads only its own shard of the rows.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from core import errors
from core.io import schema, storage
from core.model.augment import AugmentConfig, augment
from core.model.preprocess import PreprocessConfig, preprocess_file


@dataclass
class LabelledRows:
    uris: list[str]
    image_ids: list[str]
    labels: list[int]
    classes: list[str]
    unmapped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.uris)

    def subset(self, idx) -> LabelledRows:
        idx = list(idx)
        return LabelledRows(
            [self.uris[i] for i in idx],
            [self.image_ids[i] for i in idx],
            [self.labels[i] for i in idx],
            self.classes,
        )

    def class_counts(self) -> dict[str, int]:
        c = Counter(self.labels)
        return {name: int(c.get(i, 0)) for i, name in enumerate(self.classes)}


def load_label_map(path: str | None) -> dict[str, str] | None:
    """A JSON object mapping source labels (site names, DICOM BodyPartExamined terms) onto model classes."""
    if not path:
        return None
    data = json.loads(storage.read_bytes(path))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise errors.ManifestError(f"label map {path} must be a JSON object of string → string")
    return data


def labelled_rows(
    table: pa.Table, classes: list[str] | None = None, label_map: dict[str, str] | None = None
) -> LabelledRows:
    """Rows with a usable label; unmapped or unknown labels are counted in ``unmapped``, never silently lost."""
    table = schema.validate_manifest(table, require_label=label_map is None)
    uris = table.column(schema.URI).to_pylist()
    ids = table.column(schema.IMAGE_ID).to_pylist()
    raw = table.column(schema.LABEL).to_pylist() if schema.LABEL in table.column_names else [None] * len(ids)
    mapped: list[str | None] = []
    for lab in raw:
        if lab is None:
            mapped.append(None)
        elif label_map is not None:
            mapped.append(label_map.get(lab, label_map.get(lab.strip().upper(), label_map.get(lab.strip().lower()))))
        else:
            mapped.append(lab)
    if classes is None:
        classes = sorted({m for m in mapped if m is not None})
    index = {c: i for i, c in enumerate(classes)}
    keep_u, keep_i, keep_l = [], [], []
    unmapped: Counter = Counter()
    for u, i, src, m in zip(uris, ids, raw, mapped, strict=True):
        if m is None or m not in index:
            unmapped[str(src)] += 1
            continue
        keep_u.append(u)
        keep_i.append(i)
        keep_l.append(index[m])
    if not keep_u:
        raise errors.ManifestError("no manifest row has a label that maps onto a model class")
    return LabelledRows(keep_u, keep_i, keep_l, list(classes), dict(unmapped))


def _unit_hash(image_id: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split(rows: LabelledRows, val_fraction: float, seed: int) -> tuple[LabelledRows, LabelledRows]:
    """Stratified split decided by a hash of image_id: stable when rows are added or reordered."""
    train_idx, val_idx = [], []
    for c in range(len(rows.classes)):
        members = [i for i, lab in enumerate(rows.labels) if lab == c]
        members.sort(key=lambda i: _unit_hash(rows.image_ids[i], seed))
        n_val = int(round(len(members) * val_fraction)) if len(members) > 1 else 0
        val_idx += members[:n_val]
        train_idx += members[n_val:]
    return rows.subset(sorted(train_idx)), rows.subset(sorted(val_idx))


def shard(rows: LabelledRows, rank: int, world: int) -> LabelledRows:
    return rows.subset(range(rank, len(rows), world))


def class_weights(rows: LabelledRows) -> np.ndarray:
    """Inverse-frequency weights (n / (k · n_c)), so each class contributes equally to the loss."""
    counts = np.bincount(rows.labels, minlength=len(rows.classes)).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (len(rows.classes) * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def decode_indexed(
    rows: LabelledRows, cfg: PreprocessConfig, threads: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
    """Decode a (small) shard into memory, keeping track of which rows decoded.

    Returns ``(x, y, kept, codes)``: ``kept`` indexes the decoded rows within ``rows`` and ``codes`` holds each
    row's error code (None when it decoded), so a validation report can list failures instead of losing them.
    """
    from concurrent.futures import ThreadPoolExecutor

    def load(uri: str):
        try:
            return preprocess_file(uri, cfg)[0], None
        except errors.ScanError as e:
            return None, e.code

    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(pool.map(load, rows.uris))
    keep = [i for i, (arr, _) in enumerate(results) if arr is not None]
    x = np.stack([results[i][0] for i in keep]) if keep else np.zeros((0, *cfg.shape), np.float32)
    y = np.asarray([rows.labels[i] for i in keep], dtype=np.int32)
    return x, y, np.asarray(keep, dtype=np.int64), [code for _, code in results]


def decode_all(rows: LabelledRows, cfg: PreprocessConfig, threads: int = 2) -> tuple[np.ndarray, np.ndarray, dict]:
    """Decode a (small) shard into memory; failures are counted by error code and left out."""
    x, y, _, codes = decode_indexed(rows, cfg, threads)
    return x, y, dict(Counter(code for code in codes if code))


def make_train_dataset(
    rows: LabelledRows,
    cfg: PreprocessConfig,
    batch_size: int,
    seed: int,
    augment_cfg: AugmentConfig | None,
    sample_weights: np.ndarray,
    parallel: int = 2,
    cache: bool = True,
    skip_examples: int = 0,
):
    """An endless, shuffled, augmented, prefetched tf.data pipeline over this worker's shard.

    Endless on purpose: every worker runs the same number of steps per epoch (collectives would hang
    otherwise), whatever the size of its shard.  ``skip_examples`` fast-forwards the stream (without
    augmenting what it skips) so a run resumed at epoch ``e`` sees exactly the batches an uninterrupted run
    would have seen from epoch ``e`` on: shuffling and augmentation are seeded by position in the stream.
    """
    import tensorflow as tf

    n = len(rows)
    uris = np.asarray(rows.uris)
    labels = np.asarray(rows.labels, dtype=np.int32)
    size = cfg.image_size

    def load(i):
        i = int(i)
        try:
            arr, _ = preprocess_file(str(uris[i]), cfg)
            return arr.astype(np.float32), np.int32(labels[i]), np.bool_(True)
        except errors.ScanError:
            return np.zeros(cfg.shape, np.float32), np.int32(0), np.bool_(False)

    def tf_load(i):
        x, y, ok = tf.numpy_function(load, [i], [tf.float32, tf.int32, tf.bool], stateful=False)
        x.set_shape(cfg.shape)
        y.set_shape(())
        ok.set_shape(())
        return x, y, ok

    def aug(xb, counters):
        # One call per batch, not per image: a numpy_function call and its tf.data element cost about as much CPU
        # as the augmentation itself, on the cores the training step needs.  Each image is still augmented by its
        # own stream, seeded by its position in the stream, so batching changes no pixel.
        out = np.empty_like(xb)
        for k, counter in enumerate(counters):
            out[k] = augment(xb[k], np.random.default_rng([seed, int(counter)]), augment_cfg)
        return out

    def tf_aug(counters, item):
        x, y, _ = item
        if augment_cfg is not None:
            x = tf.numpy_function(aug, [x, counters], tf.float32, stateful=False)
            x.set_shape((batch_size, size, size, cfg.channels))
        w = tf.gather(tf.constant(sample_weights), y)
        return x, y, w

    ds = tf.data.Dataset.range(n).map(tf_load, num_parallel_calls=parallel, deterministic=True)
    ds = ds.filter(lambda x, y, ok: ok)
    if cache:
        ds = ds.cache()
    ds = ds.shuffle(min(n, 4096), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate()
    if skip_examples:
        ds = ds.skip(skip_examples)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(tf_aug, num_parallel_calls=parallel, deterministic=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options)
