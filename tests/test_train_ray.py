"""Ray Train with 2 CPU workers: synchronised replicas, falling loss, a loadable bundle."""

from __future__ import annotations

import json
import os

from tests.conftest import TEST_IMAGE_SIZE


def test_two_worker_training_is_synchronised(ray_session, small_archive, tmp_path):
    from cluster.train import train
    from core.bundle import load_bundle
    from core.training import TrainConfig

    _, manifest = small_archive
    out = str(tmp_path / "bundle")
    cfg = TrainConfig(
        manifest=str(manifest),
        out=out,
        backbone="mobilenet_v3_small",
        weights=None,
        image_size=TEST_IMAGE_SIZE,
        epochs=4,
        batch_size=8,
        base_lr=3e-3,
        augment=False,
        patience=10,
        seed=0,
    )
    result = train(cfg, workers=2, cpus_per_worker=1, storage_path=str(tmp_path / "ray"))
    assert result.error is None
    with open(os.path.join(out, "training.json")) as f:
        info = json.load(f)
    digests = info["replica_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], digests  # identical weights on both workers
    assert info["hyperparameters"]["workers"] == 2 and info["hyperparameters"]["global_batch"] == 16
    losses = [h["train_loss"] for h in info["history"]]
    assert losses[-1] < losses[0], losses
    bundle = load_bundle(out)
    assert bundle.classes == sorted(bundle.classes) and len(bundle.classes) == 7
    assert os.path.exists(os.path.join(out, "training_curves.png"))
