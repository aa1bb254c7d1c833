"""After the last epoch: the replica check, validation predictions, calibration (temperature, OOD score,
abstention thresholds; :mod:`core.trust.confidence`) and the bundle rank 0 writes.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core import errors
from core.training import data as dataset
from core.training.config import VALIDATION_REPORT_DIR
from core.training.distributed import allreduce_sum, weights_digest
from core.training.setup import Setup, ValShard
from core.training.trainer import Trainer
from core.trust.report import report_row


def fingerprint(uri: str) -> str:
    from core.io import storage

    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in (
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "ray",
        "numpy",
        "pyarrow",
        "pydicom",
        "opencv-python-headless",
    ):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def write_validation_report(out: str, metrics: dict[str, Any], rows: list[dict[str, Any]], title: str) -> None:
    """The same report ``scanlabel evaluate`` writes, for the held-out split, under ``BUNDLE/validation_report``.

    Written after the bundle is published (its files are not part of the hashed set), straight to the
    bundle directory or uploaded file by file to an object store.
    """
    from core.io import storage
    from core.trust.evaluation import thumbnail
    from core.trust.report import write_report

    if not storage.is_remote(out):
        write_report(os.path.join(out, VALIDATION_REPORT_DIR), metrics, rows, thumbnail=thumbnail, title=title)
        return
    with tempfile.TemporaryDirectory(prefix="scanlabel-valreport-") as tmp:
        write_report(tmp, metrics, rows, thumbnail=thumbnail, title=title)
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as f:
                storage.write_bytes_atomic(storage.join(out, VALIDATION_REPORT_DIR, name), f.read())


def check_replicas_agree(trainer: Trainer) -> list[int]:
    """Data parallelism is only correct if every replica ends with the same weights: check, record, and refuse
    to publish a bundle otherwise."""
    mine = np.zeros(trainer.world, np.float64)
    mine[trainer.rank] = weights_digest(trainer.model)
    digests = [int(d) for d in allreduce_sum(trainer.strategy, mine)]
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged: weight digests {digests}")
    return digests


def gather_validation(
    trainer: Trainer, val: ValShard, n_val: int
) -> tuple[np.ndarray, list[str | None], tuple[np.ndarray, np.ndarray]]:
    """Held-out predictions of the published (best) weights for the whole split, on every worker.

    Each worker fills the rows of its shard and one sum gathers them; error codes travel as 1-based indices.
    Returns ``(probabilities, codes)`` in split order (a row that failed to decode has zero probabilities), and
    this worker's ``(features, probabilities)`` of its decoded rows from the same pass, which the OOD score of
    :func:`calibrate` needs: one pass over the split instead of two.
    """
    n_classes, rank, world = trainer.setup.n_classes, trainer.rank, trainer.world
    gathered = np.zeros((n_val, n_classes + 1), np.float64)
    my_index = np.arange(rank, n_val, world)
    mine = (np.zeros((0, 0)), np.zeros((0, n_classes)))
    if len(val.kept):
        mine = trainer.features_and_probs(val.x)
        gathered[my_index[val.kept], :n_classes] = mine[1]
    for i, code in enumerate(val.codes):
        if code:
            gathered[my_index[i], n_classes] = errors.ALL_CODES.index(code) + 1
    gathered = allreduce_sum(trainer.strategy, gathered.ravel()).reshape(n_val, n_classes + 1)
    code_idx = [int(round(c)) for c in gathered[:, n_classes]]
    return gathered[:, :n_classes], [errors.ALL_CODES[c - 1] if c else None for c in code_idx], mine


# --- calibration: temperature, OOD score, abstention thresholds (core/trust/confidence.py) -------------------


def calibrate(
    trainer: Trainer,
    val: ValShard,
    val_probs: np.ndarray,
    val_codes: list[str | None],
    mine: tuple[np.ndarray, np.ndarray],
    log: Callable[[str], None],
):
    """Fit the bundle's trust data on this run's own validation split; every worker takes part and ends with
    the same result (feature statistics and per-row scores are summed across workers).

    The temperature comes first (the OOD score and the confidence threshold use calibrated probabilities);
    the OOD parameters are fitted on the *training* split, so the validation rows the thresholds are chosen
    on are as new to them as the images labeling will meet.  ``mine``: this worker's features and probabilities
    of its decoded validation rows (:func:`gather_validation`).
    """
    from core.io import schema
    from core.trust import confidence as tr

    cfg, setup, rank, world = trainer.cfg, trainer.setup, trainer.rank, trainer.world
    classes = setup.classes
    y = np.asarray(setup.val_rows.labels, np.int64)
    decoded = np.array([c is None for c in val_codes], bool)
    temperature = tr.fit_temperature(val_probs[decoded], y[decoded])
    calibrated = tr.apply_temperature(val_probs, temperature)
    method = tr.resolve_ood_method(cfg.ood_method, classes)
    arrays = fit_ood_arrays(trainer, method)

    # Each worker scores the validation rows of its shard; one sum gathers them.
    n_val = len(setup.val_rows)
    scores = np.zeros(n_val, np.float64)
    if len(val.kept):
        feats, probs = mine
        shard_scores = tr.ood_scores(method, feats, tr.apply_temperature(probs, temperature), classes, arrays)
        scores[np.arange(rank, n_val, world)[val.kept]] = shard_scores
    scores = allreduce_sum(trainer.strategy, scores)

    other = classes.index(schema.OTHER_LABEL) if schema.OTHER_LABEL in classes else -1
    in_domain = decoded & (y != other)
    min_conf, max_ood, fit = tr.fit_thresholds(calibrated[in_domain], scores[in_domain], classes, cfg.target_abstention)
    info = {
        "fitted_on": "validation split",
        "n_val": int(decoded.sum()),
        "n_val_in_domain": int(in_domain.sum()),
        "val_nll_before": tr.nll(val_probs[decoded], y[decoded]),
        "val_nll_after": tr.nll(calibrated[decoded], y[decoded]),
        "val_ece_before": tr.expected_calibration_error(val_probs[decoded], y[decoded]),
        "val_ece_after": tr.expected_calibration_error(calibrated[decoded], y[decoded]),
        "thresholds": fit,
    }
    if other >= 0 and (decoded & (y == other)).any():
        info["val_other_abstained"] = float(
            np.mean(
                [
                    r is not None
                    for r in tr.abstain_reasons(
                        calibrated[decoded & (y == other)], scores[decoded & (y == other)], classes, min_conf, max_ood
                    )
                ]
            )
        )
    if rank == 0:
        log(
            f"[train] calibration on the validation split: temperature {temperature:.3f}, ECE "
            f"{info['val_ece_before']:.4f} -> {info['val_ece_after']:.4f}; abstain below confidence {min_conf:.3f} "
            f"or above {method} score {max_ood:.4g} (in-domain validation abstention "
            f"{fit.get('abstention', 0.0):.1%}, target {cfg.target_abstention:.1%})"
        )
    return tr.Trust(temperature, min_conf, max_ood, method, classes, arrays, info)


def fit_ood_arrays(trainer: Trainer, method: str) -> dict[str, np.ndarray]:
    """The parameters ``method`` scores with: head weights (energy, max-logit), or statistics of the
    training split's features (Mahalanobis: class means and a shared covariance of the body-part classes)."""
    from core.io import schema
    from core.trust import confidence as tr

    if method in ("p_other", "msp"):
        return {}
    if method in ("energy", "max_logit"):
        kernel, bias = (w.numpy() for w in trainer.model.get_layer(tr.HEAD_LAYER).weights)
        return {"kernel": kernel, "bias": bias}
    if method != "mahalanobis":
        raise ValueError(f"ood_method {method!r} cannot be fitted during training; use one of {tr.OOD_METHODS}")
    cfg, setup = trainer.cfg, trainer.setup
    # Training images without augmentation, as labeling will see them.
    x, y, _, _ = dataset.decode_indexed(
        dataset.shard(setup.train_rows, trainer.rank, trainer.world), setup.pre, cfg.decode_threads
    )
    dim = int(trainer.model.get_layer(tr.FEATURE_LAYER).output.shape[-1])
    body = y != (setup.classes.index(schema.OTHER_LABEL) if schema.OTHER_LABEL in setup.classes else -1)
    if body.any():
        feats, _ = trainer.features_and_probs(x[body])
        stats = tr.FeatureStats.of(feats, y[body], setup.n_classes)
    else:
        stats = tr.FeatureStats.of(np.zeros((0, dim)), np.zeros(0, np.int64), setup.n_classes)
    total = tr.FeatureStats.from_flat(allreduce_sum(trainer.strategy, stats.flat()), setup.n_classes, dim)
    means, precision = tr.mahalanobis_params(total)
    return {"means": means, "precision": precision}


# --- bundle ---------------------------------------------------------------------------------------------------


def validation_rows(setup: Setup, probs: np.ndarray, codes: list[str | None]) -> list[dict[str, Any]]:
    """The validation split as report rows (the shape ``scanlabel evaluate`` reports)."""
    classes, val_rows = setup.classes, setup.val_rows
    rows = []
    for i in range(len(val_rows)):
        code = codes[i]
        rows.append(
            report_row(
                image_id=val_rows.image_ids[i],
                uri=val_rows.uris[i],
                true=classes[val_rows.labels[i]],
                pred=None if code else classes[int(probs[i].argmax())],
                confidence=None if code else float(probs[i].max()),
                status="error" if code else "ok",
                error=code,
            )
        )
    return rows


def describe_training(
    trainer: Trainer, state: dict[str, Any], outcome: str, val_metrics: dict[str, Any], failed: list[str], digests
) -> dict[str, Any]:
    """``training.json``: what produced the bundle (data fingerprint, split, hyperparameters, history, versions)."""
    from core.readers.scope import DEFAULT_MODALITIES

    cfg, setup = trainer.cfg, trainer.setup
    return {
        "backbone": cfg.backbone,
        "weights_source": cfg.weights if cfg.pretrained else "none",
        "manifest": cfg.manifest,
        "manifest_sha256": fingerprint(cfg.manifest),
        "label_map": cfg.label_map,
        "modalities": [str(m).strip().upper() for m in (cfg.modalities or DEFAULT_MODALITIES)],
        "class_counts": {"train": setup.train_rows.class_counts(), "val": setup.val_rows.class_counts()},
        "unmapped_labels": setup.rows.unmapped,
        "val_decode_failures": {c: failed.count(c) for c in sorted(set(failed))},
        "validation": {k: val_metrics[k] for k in ("n", "n_unlabeled", "accuracy", "macro_f1")},
        "weak_labels": cfg.weak_labels,  # null unless the labels were header-derived (core/training/noisy.py)
        "hyperparameters": {
            **{k: v for k, v in cfg.to_dict().items() if k not in ("weak_labels", "holdout_manifest")},
            "image_size": setup.size,
            "global_batch": setup.global_batch,
            "lr": setup.lr,
            "workers": trainer.world,
            "steps_per_epoch": setup.steps,
            "dtype_policy": trainer.trained_policy,  # what `precision` resolved to on the workers
        },
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "best_val_macro_f1": state["best_f1"],
        "stopped_early": outcome == "stopped_early",
        "resumes": state["resumes"],
        "versions": package_versions(),
        "replica_weight_digests": digests,
        "split": {"val_fraction": cfg.val_fraction, "seed": cfg.seed, "method": "sha256(seed:image_id)"},
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def publish(
    trainer: Trainer,
    state: dict[str, Any],
    outcome: str,
    val_probs: np.ndarray,
    val_codes: list[str | None],
    trust,
    summary: dict[str, Any],
    log: Callable[[str], None],
    epochs_done_at: float | None = None,
) -> None:
    """Rank 0: write the bundle (model, classes, preprocessing, training.json, trust data, curves), then its
    validation report (with calibrated confidences, as labeling will give them).  ``epochs_done_at``
    (``time.perf_counter()`` after the last epoch): the log line says how long validation, calibration and
    writing took."""
    import keras

    from core.model.bundle import save_bundle
    from core.trust.metrics import compute_metrics

    cfg, setup = trainer.cfg, trainer.setup
    report_rows = validation_rows(setup, trust.calibrate(val_probs), val_codes)
    failed = [r["error"] for r in report_rows if r["error"]]
    val_metrics = compute_metrics([r["true"] for r in report_rows], [r["pred"] for r in report_rows], setup.classes)
    training_info = describe_training(trainer, state, outcome, val_metrics, failed, summary["replica_weight_digests"])
    training_info["calibration"] = {"temperature": trust.temperature, **trust.info}
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        trust_files = {name: os.path.join(tmp, name) for name in trust.write(tmp)}
        try:
            from core.training.curves import plot_training_curves

            curves = os.path.join(tmp, "training_curves.png")
            plot_training_curves(state["history"], curves)
            extra["training_curves.png"] = curves
        except ImportError:
            pass
        # The saved model must not carry the mixed-precision policy into float32 inference.
        keras.mixed_precision.set_global_policy("float32")
        summary["model_id"] = save_bundle(
            cfg.out, trainer.model, setup.classes, setup.pre, training_info, extra, hashed_files=trust_files
        )
    val_metrics.update(
        {"model_id": summary["model_id"], "split": "validation", "manifest": cfg.manifest, "bundle": cfg.out}
    )
    write_validation_report(cfg.out, val_metrics, report_rows, f"scanlabel validation split — {summary['model_id']}")
    summary["bundle"] = cfg.out
    summary["validation"] = training_info["validation"]
    took = "" if epochs_done_at is None else f"; {time.perf_counter() - epochs_done_at:.0f} s after the last epoch"
    log(
        f"[train] bundle written to {cfg.out} (model_id={summary['model_id']}; validation accuracy "
        f"{val_metrics['accuracy']:.3f}, macro-F1 {val_metrics['macro_f1']:.3f}{took})"
    )


# --- a fold's run (core/training/noisy.py): held-out probabilities instead of a bundle ----------------------------
HOLDOUT_FILE = "holdout.parquet"


def write_holdout_predictions(trainer: Trainer, log: Callable[[str], None]) -> str:
    """Rank 0: the best weights' softmax outputs for ``cfg.holdout_manifest``, at ``cfg.out/holdout.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.io import schema, storage
    from core.io.manifests import read_manifest

    cfg, setup = trainer.cfg, trainer.setup
    rows = dataset.labelled_rows(read_manifest(cfg.holdout_manifest), setup.classes)
    x, _, kept, codes = dataset.decode_indexed(rows, setup.pre, cfg.decode_threads)
    probs: list[list[float] | None] = [None] * len(rows)
    for i, p in zip(kept.tolist(), trainer.predict(x) if len(x) else [], strict=True):
        probs[i] = [float(v) for v in p]
    table = pa.table(
        {schema.IMAGE_ID: rows.image_ids, "probabilities": probs, "error": codes},
        schema=schema.HOLDOUT_PREDICTIONS_SCHEMA,
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    path = storage.join(cfg.out, HOLDOUT_FILE)
    storage.write_bytes_atomic(path, sink.getvalue().to_pybytes())
    log(f"[train] held-out predictions for {len(rows)} rows written to {path}")
    return path
