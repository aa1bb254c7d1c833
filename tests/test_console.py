"""What a person sees: `scanlabel demo` (make demo's command, small) as a real process, and `--verbose`.

Not a TTY here (captured pipes), so progress comes as plain lines; every line must be scanlabel's own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import TEST_IMAGE_SIZE

# Lines that are Ray's, TensorFlow's or a worker's, never scanlabel's.
CHATTER = re.compile(
    r"Checkpoint successfully created|Reporting training result|oneDNN|absl::InitializeLog|port\.cc:|"
    r"cpu_feature_guard|core_worker\.cc|\(pid=|pid=\d+\)|RayTrainWorker|TrainController|Execution plan of Dataset|"
    r"streaming_executor|logging_progress|Started a local Ray instance|Token authentication"
)


def _env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    return {
        **env,
        "SCANLABEL_LOG_DIR": str(tmp_path / "logs"),
        "SCANLABEL_PROGRESS_EVERY_S": "5",
        "PYTHONPATH": os.getcwd(),
        **extra,
    }


def test_demo_console_is_short_and_only_scanlabel(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "jobs.cli", "demo", "--out", str(out), "--train-count", "70"]
    cmd += ["--holdout-count", "21", "--train-other", "14", "--holdout-other", "7", "--epochs", "2"]
    cmd += ["--image-size", str(TEST_IMAGE_SIZE)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=_env(tmp_path))
    lines = r.stdout.splitlines() + r.stderr.splitlines()
    assert r.returncode == 0, "\n".join(lines[-40:])
    noise = [line for line in lines if CHATTER.search(line)]
    assert not noise, noise
    assert len(lines) <= 60, "\n".join(lines)
    assert r.stderr.strip() == "", r.stderr[-2000:]
    # the first line names the log file, which holds what the console did not show
    first = lines[0]
    assert first.startswith("scanlabel demo: log file ")
    log_path = first.split("log file ", 1)[1].split(" ", 1)[0]
    log_text = open(log_path, encoding="utf-8", errors="replace").read()
    assert "Checkpoint successfully created" in log_text and "oneDNN" in log_text
    # one progress display per phase, with the promised fields
    train = [line for line in lines if line.startswith("[train]") and "steps (" in line]
    label = [line for line in lines if line.startswith("[label]") and "rows (" in line]
    assert train and "(100%)" in train[-1] and "loss" in train[-1] and "img/s" in train[-1]
    assert label and "(100%)" in label[-1] and "images/s" in label[-1] and "failed" in label[-1]
    assert any("epoch 2/2" in line and "val_macro_f1" in line for line in lines)
    assert any("held-out macro-F1" in line for line in lines)
    # the expectation is set before any work, per phase, and the run ends with the command that opens the report
    plan = next(line for line in lines if line.startswith("[demo] expect about"))
    assert lines.index(plan) <= 2 and "training archive ~" in plan and "training ~" in plan and "labeling" in plan
    assert lines[-1].strip() == f"python -m webbrowser file://{out.resolve() / 'report' / 'report.html'}"


def test_verbose_brings_ray_and_tensorflow_output_back(tmp_path, small_archive):
    _, manifest = small_archive
    cmd = [sys.executable, "-m", "jobs.train", "--manifest", str(manifest), "--out", str(tmp_path / "bundle")]
    cmd += ["--backbone", "mobilenet_v3_small", "--weights", "none", "--image-size", str(TEST_IMAGE_SIZE)]
    cmd += ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--no-augment", "--workers", "1"]
    cmd += ["--storage", str(tmp_path / "storage"), "--verbose"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env(tmp_path))
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-3000:]
    assert "Checkpoint successfully created" in text and "oneDNN" in text
    assert "(RayTrainWorker pid=" in text
    assert "[train] epoch 1/1" in text  # scanlabel's own lines are still there, once
    assert text.count("[train] epoch 1/1") == 1, text
