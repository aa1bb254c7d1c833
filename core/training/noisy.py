"""Training on labels that are partly wrong: header-derived (weak) labels, confident learning, a final model.

``scanlabel train --noisy-labels`` on a manifest from ``scanlabel manifest --label-from-header``
(docs/weak-labels.md).  The steps, each a function below:

1. :func:`plan_weak_training` - the rows with a label (null labels are counted and left out), the classes, a
   fold per row (stratified by class, by a hash of ``image_id``, so stable when rows are added).  A manifest with
   no labelled rows, or a class with fewer than :func:`min_rows_per_class` rows, is refused before any work.
2. ``--folds K`` runs of the very same training recipe (:func:`core.training.run_training`, ``--fold-epochs``
   epochs), each on K-1 folds; each writes its model's softmax outputs for the fold it did not see
   (:func:`core.training.publish.write_holdout_predictions`), so every row gets an out-of-fold prediction.
3. :func:`find_issues` - confident learning (Northcutt et al., JAIR 2021) through ``cleanlab``:
   ``cleanlab.filter.find_label_issues`` (``prune_by_noise_rate``) flags the rows whose header is most likely
   wrong, ``cleanlab.count.estimate_joint`` estimates the joint distribution of header class and true class
   (the noise matrix; rows: header class, columns: model class).
4. The flagged rows are pruned and the final model trains on the rest with the full recipe (unless the estimated
   noise exceeds :data:`WEAK_FOLDS_NOISE`: the fold models are then too weak to tell a wrong header from their own
   mistake, and nothing is pruned); its
   ``training.json`` says the labels were header-derived and holds the figures (``weak_labels``).

Why pruning: it removes wrong labels from the gradient instead of trusting the loss to average them out, and the
same out-of-fold predictions give the audit list and the noise estimate; what it costs and gains is measured by
``python -m jobs.bench weak-labels`` (BENCHMARKS.md).

No Ray here: ``train_fn(cfg, name)`` runs one training (Ray Train in ``cluster/train.py``, the default strategy
in :func:`train_locally`); the files between the steps go under ``work_dir`` (shared storage on a cluster).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import ManifestError
from core.io import schema, storage
from core.io.manifests import read_manifest, write_manifest
from core.training.config import TrainConfig
from core.training.publish import HOLDOUT_FILE, fingerprint

MIN_ROWS_PER_CLASS = 10  # below this a class cannot be split into folds and still be learnt
PRUNED_MANIFEST = "pruned_manifest.parquet"
LABEL_ISSUES = "label_issues.parquet"
FILTER_BY = "prune_by_noise_rate"
KEEP_PER_CLASS = 5  # cleanlab never prunes a class below this many rows
# An estimated header noise above this says more about the fold models than about the headers: nothing is pruned.
WEAK_FOLDS_NOISE = 0.5

TrainFn = Callable[[TrainConfig, str], Any]


def min_rows_per_class(folds: int) -> int:
    """Each fold must hold out two rows of every class, and each class needs enough rows to be learnt."""
    return max(MIN_ROWS_PER_CLASS, 2 * folds)


@dataclass
class WeakPlan:
    """The trainable rows of a header-labelled manifest and the fold of each."""

    table: pa.Table  # uri, image_id, label of the rows with a label
    classes: list[str]
    folds: np.ndarray  # fold index per row of ``table``
    total_rows: int
    unlabeled: int

    @property
    def labels(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([index[x] for x in self.table.column(schema.LABEL).to_pylist()], np.int64)


def _fold_hash(image_id: str, seed: int) -> float:
    return int.from_bytes(hashlib.sha256(f"fold:{seed}:{image_id}".encode()).digest()[:8], "big") / 2**64


def plan_weak_training(cfg: TrainConfig) -> WeakPlan:
    """Rows, classes and folds; refuses what cannot be trained, naming why, before any work."""
    if cfg.folds < 2:
        raise ValueError(f"--folds must be at least 2, got {cfg.folds}")
    if cfg.fold_epochs is not None and cfg.fold_epochs < 1:
        raise ValueError(f"--fold-epochs must be at least 1, got {cfg.fold_epochs}")
    if cfg.label_map:
        raise ValueError(
            "--label-map does not go with --noisy-labels: map header terms with --header-map when "
            "the manifest is built (scanlabel manifest --label-from-header)"
        )
    table = schema.validate_manifest(read_manifest(cfg.manifest))
    if schema.LABEL not in table.column_names:
        raise ManifestError(
            f"manifest {cfg.manifest} has no label column: build it with "
            "`scanlabel manifest --root DIR --label-from-header`"
        )
    total = table.num_rows
    table = table.filter(pc.is_valid(table.column(schema.LABEL))).select([schema.URI, schema.IMAGE_ID, schema.LABEL])
    if table.num_rows == 0:
        raise ManifestError(
            f"manifest {cfg.manifest} has no trainable rows: all {total} labels are null (no header named a body part)"
        )
    labels = table.column(schema.LABEL).to_pylist()
    counts = Counter(labels)
    need = min_rows_per_class(cfg.folds)
    few = {c: n for c, n in sorted(counts.items()) if n < need}
    if few:
        raise ManifestError(
            f"too few header-labelled rows to train with {cfg.folds} folds (each class needs at "
            f"least {need}): {few}; label more images or drop the class with --header-map"
        )
    classes = sorted(counts)
    folds = np.zeros(len(labels), np.int64)
    ids = table.column(schema.IMAGE_ID).to_pylist()
    for c in classes:
        members = sorted((i for i, x in enumerate(labels) if x == c), key=lambda i: _fold_hash(ids[i], cfg.seed))
        for pos, i in enumerate(members):
            folds[i] = pos % cfg.folds
    return WeakPlan(table, classes, folds, total, total - table.num_rows)


def _write(table: pa.Table, uri: str) -> str:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes_atomic(uri, sink.getvalue().to_pybytes())
    return uri


def fold_configs(cfg: TrainConfig, plan: WeakPlan, work_dir: str) -> list[TrainConfig]:
    """One training run per fold: the same recipe on the other folds, predicting the held-out one."""
    out = []
    for k in range(cfg.folds):
        held = pa.array(plan.folds == k)
        train_uri = write_manifest(
            plan.table.filter(pc.invert(held)), storage.join(work_dir, f"fold-{k + 1}-train.parquet")
        )
        holdout_uri = write_manifest(plan.table.filter(held), storage.join(work_dir, f"fold-{k + 1}-holdout.parquet"))
        out.append(
            replace(
                cfg,
                manifest=train_uri,
                out=storage.join(work_dir, f"fold-{k + 1}"),
                epochs=cfg.fold_epochs or cfg.epochs,
                classes=plan.classes,
                holdout_manifest=holdout_uri,
                weak_labels=None,
                stop_after_epoch=None,
            )
        )
    return out


def read_out_of_fold(plan: WeakPlan, fold_cfgs: list[TrainConfig]) -> np.ndarray:
    """Every row's out-of-fold probabilities (NaN where its image did not decode)."""
    probs = np.full((plan.table.num_rows, len(plan.classes)), np.nan)
    where = {image_id: i for i, image_id in enumerate(plan.table.column(schema.IMAGE_ID).to_pylist())}
    for fc in fold_cfgs:
        fs, path = storage.resolve(storage.join(fc.out, HOLDOUT_FILE))
        for row in pq.read_table(path, filesystem=fs).to_pylist():
            if row["probabilities"] is not None:
                probs[where[row[schema.IMAGE_ID]]] = row["probabilities"]
    return probs


def find_issues(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Confident learning on out-of-fold probabilities: flagged rows (most certain first) and the noise estimate.

    Rows without a prediction (NaN) are never flagged and do not enter the estimate.
    """
    from cleanlab.count import estimate_joint
    from cleanlab.filter import find_label_issues

    ok = np.flatnonzero(~np.isnan(probs).any(axis=1))
    p = probs[ok] / probs[ok].sum(axis=1, keepdims=True)
    y = labels[ok]
    ranked = find_label_issues(
        y, p, filter_by=FILTER_BY, return_indices_ranked_by="self_confidence",
        min_examples_per_class=KEEP_PER_CLASS, n_jobs=1,
    )  # fmt: skip
    joint = estimate_joint(y, p)
    per_row = joint.sum(axis=1)
    wrong_share = {c: float(1.0 - joint[i, i] / per_row[i]) if per_row[i] > 0 else None for i, c in enumerate(classes)}
    return {
        "out_of_fold_agreement": float((p.argmax(axis=1) == y).mean()) if len(y) else None,
        "issues": ok[np.asarray(ranked, np.int64)],
        "predicted": np.nan_to_num(probs, nan=-1.0).argmax(axis=1),
        "joint": joint,
        "estimated_noise_rate": float(1.0 - np.trace(joint)),
        "estimated_wrong_share": wrong_share,
        "predicted_rows": int(len(ok)),
    }


def write_pruned(
    plan: WeakPlan, found: dict[str, Any], probs: np.ndarray, work_dir: str, prune: bool = True
) -> tuple[str, str]:
    """The final model's training manifest (without the flagged rows when ``prune``), and the flagged rows
    themselves (most certain first)."""
    issues = found["issues"]
    keep = np.ones(plan.table.num_rows, bool)
    if prune:
        keep[issues] = False
    pruned = write_manifest(plan.table.filter(pa.array(keep)), storage.join(work_dir, PRUNED_MANIFEST))
    labels = plan.labels
    flagged = plan.table.take(pa.array(issues, pa.int64()))
    table = pa.table(
        {
            schema.IMAGE_ID: flagged.column(schema.IMAGE_ID),
            schema.URI: flagged.column(schema.URI),
            schema.LABEL: flagged.column(schema.LABEL),
            "predicted": [plan.classes[int(found["predicted"][i])] for i in issues],
            "label_quality": [float(probs[i, labels[i]]) for i in issues],
        },
        schema=schema.LABEL_ISSUES_SCHEMA,
    )
    return pruned, _write(table, storage.join(work_dir, LABEL_ISSUES))


def describe_weak_labels(
    cfg: TrainConfig, plan: WeakPlan, found: dict[str, Any], issues_uri: str, prune: bool = True
) -> dict[str, Any]:
    """``training.json`` ``weak_labels``: where the labels came from and what confident learning made of them."""
    flagged = Counter(plan.table.column(schema.LABEL).take(pa.array(found["issues"], pa.int64())).to_pylist())
    return {
        "header_derived": True,
        "manifest": cfg.manifest,
        "manifest_sha256": fingerprint(cfg.manifest),
        "rows": plan.total_rows,
        "unlabeled_rows": plan.unlabeled,
        "trainable_rows": plan.table.num_rows,
        "class_counts": dict(Counter(plan.table.column(schema.LABEL).to_pylist())),
        "recipe": {
            "method": "confident_learning_prune",
            "library": "cleanlab",
            "filter_by": FILTER_BY,
            "folds": cfg.folds,
            "fold_epochs": cfg.fold_epochs or cfg.epochs,
        },
        "out_of_fold_predictions": found["predicted_rows"],
        "out_of_fold_agreement": found["out_of_fold_agreement"],  # headers the fold models agree with
        "flagged": int(len(found["issues"])),
        "flagged_per_class": {c: int(flagged.get(c, 0)) for c in plan.classes},
        "pruned": int(len(found["issues"])) if prune else 0,
        "pruning_skipped": None if prune else f"estimated header noise above {WEAK_FOLDS_NOISE}: weak fold models",
        "label_issues": issues_uri,
        "estimated_noise_rate": found["estimated_noise_rate"],
        "estimated_wrong_share_per_class": found["estimated_wrong_share"],
        "noise_matrix": {
            "rows": "header class",
            "columns": "model class (estimated true class)",
            "classes": plan.classes,
            "joint": [[round(float(v), 6) for v in row] for row in found["joint"]],
        },
    }


def train_noisy(
    cfg: TrainConfig, train_fn: TrainFn, work_dir: str, log: Callable[[str], None] = print
) -> tuple[Any, dict[str, Any]]:
    """The four steps of the module docstring; returns the final run's result and ``weak_labels``."""
    plan = plan_weak_training(cfg)
    log(
        f"[train] noisy labels: {plan.table.num_rows} header-labelled rows of {plan.total_rows} "
        f"({plan.unlabeled} with a null label are not trained on), {len(plan.classes)} classes, {cfg.folds} folds"
    )
    fold_cfgs = fold_configs(cfg, plan, work_dir)
    for k, fold_cfg in enumerate(fold_cfgs, start=1):
        log(f"[train] fold {k}/{cfg.folds}: {fold_cfg.epochs} epochs, predicting its held-out rows")
        train_fn(fold_cfg, f"fold-{k}")
    probs = read_out_of_fold(plan, fold_cfgs)
    found = find_issues(plan.labels, probs, plan.classes)
    # Above WEAK_FOLDS_NOISE the fold models disagree with most headers: their flags are mostly their own errors
    # and pruning them made the final model worse than no pruning at all (BENCHMARKS.md, weak labels).
    prune = found["estimated_noise_rate"] <= WEAK_FOLDS_NOISE
    pruned, issues_uri = write_pruned(plan, found, probs, work_dir, prune)
    info = describe_weak_labels(cfg, plan, found, issues_uri, prune)
    if prune:
        log(
            f"[train] confident learning: {info['pruned']} of {plan.table.num_rows} rows flagged and pruned "
            f"(estimated header noise {info['estimated_noise_rate']:.3f}); training the final model on the rest"
        )
    else:
        log(
            f"[train] warning: the fold models agree with only {info['out_of_fold_agreement']:.1%} of the headers "
            f"(estimated header noise {info['estimated_noise_rate']:.3f}): their {info['flagged']} flags are mostly "
            "their own errors, so nothing is pruned and the final model trains on every header-labelled row; give "
            "the folds more images or epochs (--fold-epochs), docs/weak-labels.md"
        )
    final = replace(cfg, manifest=pruned, classes=plan.classes, weak_labels=info, holdout_manifest=None)
    return train_fn(final, "final"), info


def train_locally(log: Callable[[str], None] = print) -> TrainFn:
    """A ``train_fn`` without Ray: :func:`core.training.run_training` under the default strategy."""

    def run(cfg: TrainConfig, name: str) -> dict[str, Any]:
        import tensorflow as tf

        from core.training.loop import run_training

        return run_training(cfg, tf.distribute.get_strategy(), log=log)

    return run
