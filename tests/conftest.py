"""Shared fixtures: one real local Ray per test session, small real archives, a tiny real bundle."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

import secrets  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

TEST_IMAGE_SIZE = 64


def train_config(manifest, out, **overrides):
    """The tests' training run: a small real network, no downloads, a few quick epochs; overrides change it."""
    from core.training import TrainConfig

    kwargs = dict(
        manifest=str(manifest),
        out=str(out),
        backbone="mobilenet_v3_small",
        weights=None,
        image_size=TEST_IMAGE_SIZE,
        epochs=2,
        batch_size=8,
        base_lr=3e-3,
        patience=10,
        seed=0,
    )
    kwargs.update(overrides)
    return TrainConfig(**kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A real S3-compatible server (moto) on loopback for the S3 tests.  Its address goes into the environment now,
# before Ray starts, so every Ray worker inherits it; the server itself starts only if an S3 test runs.
S3_PORT = free_port()
S3_ENV = {
    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
os.environ.update(S3_ENV)

# The DICOMweb tests' Orthanc: ports and credentials go into the environment now, before Ray starts, so Ray
# workers read the credentials the way a deployment's workers do (never as task arguments).  The password is
# new each session, so a test can look for it in Ray's logs.
ORTHANC_PORTS = (free_port(), free_port())
DICOMWEB_ENV = {"SCANLABEL_DICOMWEB_USER": "scanlabel", "SCANLABEL_DICOMWEB_PASSWORD": secrets.token_hex(12)}
os.environ.update(DICOMWEB_ENV)


@pytest.fixture(scope="session")
def ray_session():
    """A single embedded Ray for the whole session (starting Ray costs seconds; 2 cores can't afford many)."""
    import ray

    from cluster.runtime import QUIET_ENV

    ray.init(
        address="local",  # never join a cluster another test (or a stale /tmp/ray file) points at
        num_cpus=4,
        include_dashboard=True,  # the state API (actor pids for the kill tests) lives in the dashboard
        runtime_env={"env_vars": {**QUIET_ENV, "PYTHONPATH": os.getcwd()}},
        log_to_driver=True,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory):
    """A real mixed-format archive (PNG8/16, JPEG, DICOM MONOCHROME1/2) of 70 images."""
    from core.synthetic.sample_archive import write_sample_archive

    out = tmp_path_factory.mktemp("archive")
    manifest = write_sample_archive(out, 70, seed=3)
    return out, manifest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """An untrained but real bundle (mobilenet_v3_small, 64 px): labeling mechanics don't need accuracy."""
    import keras

    from core.model.backbones import build_classifier
    from core.model.bundle import save_bundle
    from core.model.preprocess import PreprocessConfig
    from core.synthetic.phantoms import CLASSES

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


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory):
    """A small but really trained bundle with an ``other`` class and trust data (calibration, OOD thresholds).

    Phantoms plus generated non-radiographs (seed 11), mobilenet_v3_small at 96 px, the default strategy (no
    Ray): about two minutes on a quiet 2-core machine.  Far weaker than the demo's model (a fraction of its
    training): fine for checking mechanics, not for accuracy figures.  Returns ``(bundle_path, summary)``.
    """
    import tensorflow as tf

    from core.synthetic.sample_archive import write_sample_archive
    from core.training import run_training

    root = tmp_path_factory.mktemp("trained")
    manifest = write_sample_archive(root / "archive", 350, seed=11, other_count=70)
    cfg = train_config(manifest, root / "model", image_size=TRAINED_IMAGE_SIZE, epochs=14, batch_size=16, patience=14)
    summary = run_training(cfg, tf.distribute.get_strategy(), log=lambda _: None)
    return cfg.out, summary


TRAINED_IMAGE_SIZE = 96


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback, started by pid and ended by pid."""
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(S3_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", S3_PORT), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start")
    yield S3_ENV["AWS_ENDPOINT_URL"]
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A real Orthanc with its DICOMweb plugin on free loopback ports (tests/orthanc.py); skipped where missing."""
    from tests.orthanc import Orthanc, missing

    why = missing()
    if why:
        pytest.skip(f"no Orthanc: {why}")
    server = Orthanc(
        tmp_path_factory.mktemp("orthanc"),
        *ORTHANC_PORTS,
        DICOMWEB_ENV["SCANLABEL_DICOMWEB_USER"],
        DICOMWEB_ENV["SCANLABEL_DICOMWEB_PASSWORD"],
    )
    server.start()
    yield server
    server.stop()
