"""Ray Train on the real local Ray: synchronised replicas that survive a killed worker, and --resume.

Each Ray Train run costs tens of seconds on 2 cores (worker start, TF import, tracing), so the 2-worker test
checks synchronisation, falling loss and fault tolerance on the same run.
"""

from __future__ import annotations

import glob
import json
import os

from tests.conftest import TEST_IMAGE_SIZE, train_config


def test_two_workers_stay_identical_and_survive_a_killed_worker(ray_session, small_archive, tmp_path):
    """Rank 1 really exits (os._exit) in the middle of epoch 2; Ray Train restarts the group from the epoch-1
    checkpoint and the run completes with every epoch exactly once and identical replicas."""
    from cluster.train import train
    from core.model.bundle import load_bundle
    from core.training.faults import WorkerExit

    _, manifest = small_archive
    out = str(tmp_path / "bundle")
    marker = tmp_path / "worker-killed"
    cfg = train_config(manifest, out, epochs=3, augment=False)
    result = train(
        cfg,
        workers=2,
        cpus_per_worker=1,
        storage_path=str(tmp_path / "ray"),
        run_name="ft",
        max_failures=1,
        fault=WorkerExit(epoch=2, marker=str(marker), rank=1),
    )
    assert result.error is None
    assert marker.read_text().startswith("rank 1 exited in epoch 2")  # the failure really happened
    with open(os.path.join(out, "training.json")) as f:
        info = json.load(f)
    assert [h["epoch"] for h in info["history"]] == [1, 2, 3]  # nothing repeated, nothing missing
    assert info["resumes"] == [{"epoch": 1, "workers": 2}]  # restarted from the epoch-1 checkpoint
    digests = info["replica_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], digests  # identical weights on both workers
    assert info["hyperparameters"]["workers"] == 2 and info["hyperparameters"]["global_batch"] == 16
    losses = [h["train_loss"] for h in info["history"]]
    assert losses[-1] < losses[0], losses
    bundle = load_bundle(out)
    assert bundle.classes == sorted(bundle.classes) and len(bundle.classes) == 7
    assert os.path.exists(os.path.join(out, "training_curves.png"))
    assert os.path.exists(os.path.join(out, "validation_report", "report.html"))


def _checkpoint_states(run_dir) -> list[dict]:
    states = []
    for path in glob.glob(os.path.join(run_dir, "checkpoint_*", "state.json")):
        with open(path) as f:
            states.append(json.load(f))
    return sorted(states, key=lambda s: s["epoch"])


def test_resume_continues_an_interrupted_run(ray_session, small_archive, tmp_path, capsys):
    """`scanlabel train` paused after epoch 2 of 4, then `--resume` with the same --run-name and --storage."""
    from jobs.train import main

    _, manifest = small_archive
    out, storage = tmp_path / "bundle", tmp_path / "storage"
    args = [
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--backbone",
        "mobilenet_v3_small",
        "--weights",
        "none",
        "--image-size",
        str(TEST_IMAGE_SIZE),
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--steps-per-epoch",
        "3",
        "--lr",
        "3e-3",
        "--no-augment",
        "--patience",
        "10",
        "--workers",
        "1",
        "--cpus-per-worker",
        "2",
        "--max-failures",
        "0",
        "--storage",
        str(storage),
        "--run-name",
        "nightly",
    ]
    assert main(args + ["--stop-after-epoch", "2"]) == 0
    assert "paused after epoch 2" in capsys.readouterr().out
    assert not (out / "bundle.json").exists()
    first = _checkpoint_states(storage / "nightly")[-1]
    assert first["epoch"] == 2 and len(first["history"]) == 2

    assert main(args) == 2  # the run exists: starting it again without --resume is refused, not silently resumed
    assert "pass --resume" in capsys.readouterr().err

    assert main(args + ["--resume"]) == 0
    with open(out / "training.json") as f:
        info = json.load(f)
    assert [h["epoch"] for h in info["history"]] == [1, 2, 3, 4]
    assert info["history"][:2] == first["history"]  # continued, not restarted
    assert info["resumes"] == [{"epoch": 2, "workers": 1}]
