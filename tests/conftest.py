"""Shared fixtures: one real local Ray per test session, small real archives, a tiny real bundle."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

import pytest  # noqa: E402

TEST_IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def ray_session():
    """A single embedded Ray for the whole session (starting Ray costs seconds; 2 cores can't afford many)."""
    import ray

    from cluster.runtime import QUIET_ENV

    ray.init(
        num_cpus=4,
        include_dashboard=False,
        runtime_env={"env_vars": {**QUIET_ENV, "PYTHONPATH": os.getcwd()}},
        log_to_driver=True,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory):
    """A real mixed-format archive (PNG8/16, JPEG, DICOM MONOCHROME1/2) of 70 images."""
    from core.sample_archive import write_sample_archive

    out = tmp_path_factory.mktemp("archive")
    manifest = write_sample_archive(out, 70, seed=3)
    return out, manifest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """An untrained but real bundle (mobilenet_v3_small, 64 px): labeling mechanics don't need accuracy."""
    import keras

    from core.backbones import build_classifier
    from core.bundle import save_bundle
    from core.phantoms import CLASSES
    from core.preprocess import PreprocessConfig

    keras.utils.set_random_seed(0)
    model, _ = build_classifier("mobilenet_v3_small", list(CLASSES), None, TEST_IMAGE_SIZE)
    out = tmp_path_factory.mktemp("bundle") / "model"
    model_id = save_bundle(
        str(out),
        model,
        list(CLASSES),
        PreprocessConfig(image_size=TEST_IMAGE_SIZE),
        {"backbone": "mobilenet_v3_small", "note": "untrained test bundle"},
    )
    return str(out), model_id
