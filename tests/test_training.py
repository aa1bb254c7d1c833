"""The training loop itself, without Ray (the default strategy): reproducibility, exact resumption, label maps,
frozen pretrained bases, mixed precision / XLA on CPU and what the bundle records.

Ray is not the point of these tests, so they call :func:`core.training.run_training` directly (seconds faster
per run on 2 cores); ``tests/test_train_ray.py`` covers the same loop under Ray Train.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import TEST_IMAGE_SIZE, train_config

BACKBONE = "mobilenet_v3_small"


def _config(manifest, out, **overrides):
    return train_config(manifest, out, **{"augment": True, **overrides})


def _strategy():
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _metrics(history):
    """Every per-epoch figure except timings, flattened for pytest.approx."""
    keys = ("epoch", "train_loss", "train_macro_f1", "val_loss", "val_macro_f1", "val_accuracy")
    return [float(h[k]) for h in history for k in keys]


def test_same_seed_reproduces_and_resume_continues_exactly(small_archive, tmp_path):
    """Run A: 2 epochs straight.  Run B: same config, paused after epoch 1, then resumed from its checkpoint.

    B's first epoch equals A's (same seed, data and worker count give the same metrics), and B's resumed
    epoch equals A's second (weights, optimizer slots, dropout RNG and data position all restored), down to
    identical final weights.
    """
    from core.model.bundle import load_bundle
    from core.training import keep_checkpoints, latest_checkpoint, run_training

    _, manifest = small_archive
    a = run_training(_config(manifest, tmp_path / "a"), _strategy(), log=lambda _: None)

    ckpts = str(tmp_path / "ckpt_b")
    paused = run_training(
        _config(manifest, tmp_path / "b", stop_after_epoch=1),
        _strategy(),
        report=keep_checkpoints(ckpts),
        log=lambda _: None,
    )
    assert paused["paused"] and len(paused["history"]) == 1
    assert not os.path.exists(tmp_path / "b" / "bundle.json")  # a paused run publishes nothing
    assert _metrics(paused["history"]) == pytest.approx(_metrics(a["history"][:1]), rel=1e-6, abs=1e-7)

    lines: list[str] = []
    b = run_training(
        _config(manifest, tmp_path / "b"),
        _strategy(),
        report=keep_checkpoints(ckpts),
        resume_dir=latest_checkpoint(ckpts),
        log=lines.append,
    )
    assert any("resumed from checkpoint at epoch 1 (optimizer state restored)" in line for line in lines), lines
    assert [h["epoch"] for h in b["history"]] == [1, 2]
    assert b["resumes"] == [{"epoch": 1, "workers": 1}]
    assert _metrics(b["history"]) == pytest.approx(_metrics(a["history"]), rel=1e-6, abs=1e-7)
    assert b["replica_weight_digests"] == a["replica_weight_digests"]  # bit-identical final weights

    # What produced the bundle is recorded next to it.
    info = load_bundle(str(tmp_path / "a")).training
    for key in (
        "backbone",
        "weights_source",
        "manifest_sha256",
        "class_counts",
        "hyperparameters",
        "history",
        "versions",
        "unmapped_labels",
        "validation",
    ):
        assert key in info, key
    assert info["backbone"] == BACKBONE and info["weights_source"] == "none"
    import hashlib

    assert info["manifest_sha256"] == hashlib.sha256(open(manifest, "rb").read()).hexdigest()
    assert sum(info["class_counts"]["train"].values()) + sum(info["class_counts"]["val"].values()) == 70
    hp = info["hyperparameters"]
    assert hp["seed"] == 0 and hp["batch_size"] == 8 and hp["workers"] == 1 and hp["image_size"] == TEST_IMAGE_SIZE
    assert len(info["history"]) == 2 and all("images_per_s" in h for h in info["history"])
    assert "tensorflow" in info["versions"] or "tensorflow-cpu" in info["versions"]
    assert "keras" in info["versions"] and "ray" in info["versions"]
    bundle_json = json.loads((tmp_path / "a" / "bundle.json").read_text())
    assert bundle_json["model_id"] == a["model_id"] and a["model_id"].startswith(BACKBONE)
    assert (tmp_path / "a" / "training_curves.png").stat().st_size > 0

    # The held-out split is evaluated with the same report as `scanlabel evaluate`.
    report_dir = tmp_path / "a" / "validation_report"
    for name in ("metrics.json", "confusion_matrix.png", "report.html"):
        assert (report_dir / name).stat().st_size > 0, name
    val_metrics = json.loads((report_dir / "metrics.json").read_text())
    assert val_metrics["model_id"] == a["model_id"] and val_metrics["split"] == "validation"
    assert val_metrics["n"] == sum(info["class_counts"]["val"].values())
    assert val_metrics["macro_f1"] == pytest.approx(info["validation"]["macro_f1"])
    assert "data:image/png;base64," in (report_dir / "report.html").read_text()  # thumbnails of the images


def test_label_map_trains_on_mapped_classes_and_reports_unmapped(small_archive, tmp_path):
    """Manifest labels are DICOM terms; the map sends them onto classes; 'LOWER LIMB' is deliberately unmapped."""
    from core.model.bundle import load_bundle
    from core.training import run_training

    _, manifest = small_archive
    table = pq.read_table(manifest)
    terms = {"head": "SKULL", "chest": "THORAX", "abdomen": "ABDOMEN", "pelvis": "PELVIS", "arm": "ARM"}
    terms.update({"hand": "HAND", "leg": "LOWER LIMB"})
    original = table.column("label").to_pylist()
    table = table.set_column(table.column_names.index("label"), "label", pa.array([terms[x] for x in original]))
    site_manifest = tmp_path / "site.parquet"
    pq.write_table(table, site_manifest)
    label_map = tmp_path / "label_map.json"
    # "abdomen" in lower case: matching is case-insensitive.
    mapping = {"SKULL": "head", "THORAX": "chest", "abdomen": "abdomen", "PELVIS": "pelvis", "ARM": "arm"}
    mapping["HAND"] = "hand"
    label_map.write_text(json.dumps(mapping))

    lines: list[str] = []
    out = tmp_path / "bundle"
    summary = run_training(
        _config(site_manifest, out, epochs=1, steps_per_epoch=2, augment=False, label_map=str(label_map)),
        _strategy(),
        log=lines.append,
    )
    n_leg = original.count("leg")
    assert n_leg > 0
    assert summary["unmapped_labels"] == {"LOWER LIMB": n_leg}
    assert any("LOWER LIMB" in line and str(n_leg) in line for line in lines), lines
    bundle = load_bundle(str(out))
    assert bundle.classes == ["abdomen", "arm", "chest", "hand", "head", "pelvis"]
    info = bundle.training
    assert info["unmapped_labels"] == {"LOWER LIMB": n_leg} and info["label_map"] == str(label_map)
    counts = info["class_counts"]
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == len(original) - n_leg
    for cls in bundle.classes:
        assert counts["train"][cls] + counts["val"][cls] == original.count(cls)


def _base_of(model):
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def test_pretrained_base_from_file_is_frozen_then_only_top_blocks_change(small_archive, tmp_path):
    """Weights from a file (no download): phase 1 keeps the base bit-identical, phase 2 moves only the top blocks."""
    import keras

    from core.model import backbones
    from core.model.bundle import load_bundle
    from core.training import keep_checkpoints, load_checkpoint_weights, run_training

    keras.utils.set_random_seed(123)
    base = backbones.build_base(BACKBONE, TEST_IMAGE_SIZE, None)
    rng = np.random.default_rng(0)
    for v in base.weights:  # make BatchNorm statistics distinctive, so "unchanged" means something
        if v.path.endswith("moving_mean"):
            v.assign(rng.normal(0.0, 0.1, v.shape).astype("float32"))
        elif v.path.endswith("moving_variance"):
            v.assign((v.numpy() * rng.uniform(0.5, 1.5, v.shape)).astype("float32"))
    weights_file = str(tmp_path / "mobilenet_v3_small_notop.weights.h5")
    base.save_weights(weights_file)
    reference = [v.numpy() for v in base.weights]

    out = tmp_path / "bundle"
    ckpts = str(tmp_path / "ckpt")
    summary = run_training(
        _config(
            small_archive[1], out, weights=weights_file, head_epochs=1, epochs=2, fine_tune_blocks=2, augment=False
        ),
        _strategy(),
        report=keep_checkpoints(ckpts),
        log=lambda _: None,
    )
    assert [h["phase"] for h in summary["history"]] == ["head", "fine_tune"]
    classes = summary["classes"]

    def base_weights_at(epoch: int) -> tuple[list[np.ndarray], keras.Model]:
        model, b = backbones.build_classifier(BACKBONE, classes, None, TEST_IMAGE_SIZE)
        load_checkpoint_weights(model, os.path.join(ckpts, f"epoch_{epoch:03d}"))
        return [v.numpy() for v in b.weights], b

    # (a) + (b): after the head phase the base is exactly the file, BatchNorm moving statistics included.
    after_head, _ = base_weights_at(1)
    assert len(after_head) == len(reference)
    for got, want in zip(after_head, reference, strict=True):
        assert np.array_equal(got, want)

    # (c): after fine-tuning, trainable weights of the top 2 blocks moved; everything else (lower blocks and every
    # BatchNorm statistic) is still bit-identical to the file.
    after_ft, b = base_weights_at(2)
    keys = backbones.block_names(BACKBONE, b)
    order = list(dict.fromkeys(keys))
    top = set(order[-2:])
    by_id = {id(v): i for i, v in enumerate(b.weights)}
    changed_top = unchanged_lower = 0
    for layer, key in zip(b.layers, keys, strict=True):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.weights:
            i = by_id[id(v)]
            if key in top and not is_bn:
                assert not np.array_equal(after_ft[i], reference[i]), v.path
                changed_top += 1
            else:
                assert np.array_equal(after_ft[i], reference[i]), v.path
                unchanged_lower += 1
    assert changed_top > 0 and unchanged_lower > changed_top

    # The bundle carries the best epoch's weights and names the file its base came from.
    bundle = load_bundle(str(out))
    assert bundle.training["weights_source"] == weights_file
    best, _ = base_weights_at(bundle.training["best_epoch"])
    for got, want in zip([v.numpy() for v in _base_of(bundle.model).weights], best, strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("flag", ["mixed_precision", "xla"])
def test_mixed_precision_and_xla_train_correctly_on_cpu(small_archive, tmp_path, flag):
    """Both flags are for GPUs, but must leave a CPU run correct: finite loss, moving weights, a usable bundle.

    On compact_resnet (plain convolutions): XLA compiles its step in a fraction of MobileNetV3's time on a CPU."""
    import keras

    from core.model.bundle import load_bundle
    from core.training import run_training

    out = tmp_path / "bundle"
    flags = {"backbone": "compact_resnet", flag: True}
    summary = run_training(
        _config(small_archive[1], out, epochs=1, steps_per_epoch=3, augment=False, **flags),
        _strategy(),
        log=lambda _: None,
    )
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy does not leak out of a run
    (record,) = summary["history"]
    assert np.isfinite(record["train_loss"]) and np.isfinite(record["val_loss"])
    bundle = load_bundle(str(out))
    assert bundle.training["hyperparameters"][flag] is True
    probs = bundle.model.predict(np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32), verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_xla_with_several_cpu_workers_is_refused_up_front(small_archive, tmp_path):
    from core.training import run_training

    with pytest.raises(ValueError, match="xla"):
        run_training(_config(small_archive[1], tmp_path / "x", xla=True), _strategy(), rank=0, world=2)
