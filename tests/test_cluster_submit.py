"""`ray job submit` against a real multi-process local cluster: a head and a second node, 2 GPUs declared each.

Ray lets a CPU machine declare GPUs; each model actor must then receive its own GPU id, which it logs.
Both node processes are started here with ``--block`` in their own process group and ended by that group.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from tests.conftest import free_port
from tests.test_nightly import _manifest

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


_WORKER_PORT_BASE = 20_000  # below Linux's ephemeral range, so no free_port() pick can fall inside it


def _node_ports(index: int) -> list[str]:
    """Explicit ports for one node, so two extra nodes can run beside the session's Ray on one machine.

    Each node's worker-port range is a fixed block below the ephemeral range (the session Ray uses
    10002-19999): a range taken from free_port() could swallow another component's port.
    """
    flags = [
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-grpc-port",
        "--dashboard-agent-listen-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    ]
    out = []
    for f in flags:
        out += [f, str(free_port())]
    lo = _WORKER_PORT_BASE + 500 * index
    out += ["--min-worker-port", str(lo), "--max-worker-port", str(lo + 400)]
    return out


def _start(args: list[str], env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        [RAY, "start", "--block", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def two_node_cluster(tmp_path):
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    gcs_port, dash_port = free_port(), free_port()
    head_log = open(tmp_path / "head.log", "w")  # noqa: SIM115 - closed in finally
    worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    head = _start(
        [
            "--head",
            "--port",
            str(gcs_port),
            "--dashboard-port",
            str(dash_port),
            "--include-dashboard",
            "true",
            "--dashboard-host",
            "127.0.0.1",
            "--ray-client-server-port",
            str(free_port()),
            "--num-cpus",
            "4",
            "--num-gpus",
            "2",
            *_node_ports(0),
        ],
        env,
        head_log,
    )
    nodes = [head]
    try:
        dashboard = f"http://127.0.0.1:{dash_port}"
        _wait_for(
            lambda: (
                subprocess.run([RAY, "job", "list", "--address", dashboard], env=env, capture_output=True).returncode
                == 0
            ),
            240,
            "head dashboard",
            tmp_path / "head.log",
        )
        _join_second_node(gcs_port, env, worker_log, tmp_path / "worker.log", nodes)
        yield dashboard, env
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        _forget_cluster(gcs_port)
        head_log.close()
        worker_log.close()


def _join_second_node(gcs_port: int, env: dict, log_file, log_path, nodes: list, tries: int = 3) -> None:
    """``ray start --address`` of the second node, appended to ``nodes`` (the fixture stops them all).

    On a loaded machine the joining raylet can miss Ray's own start-up deadline ("The current node timed out during
    startup ... the GCS has become overloaded"); that ``ray start`` then exits, and an operator would run it again.
    So does this: up to ``tries`` starts, each given 240 s to show up as an alive node (:func:`_wait_for`)."""
    for _ in range(tries):
        worker = _start(
            ["--address", f"127.0.0.1:{gcs_port}", "--num-cpus", "4", "--num-gpus", "2", *_node_ports(1)],
            env,
            log_file,
        )
        nodes.append(worker)
        # Raises when it neither joined nor exited in time: starting it again would not help then.
        _wait_for(lambda w=worker: w.poll() is not None or _alive_nodes(gcs_port, env) >= 2, 240, "second node",
                  log_path)  # fmt: skip
        if worker.poll() is None:
            return
        try:  # what the failed start left in its process group (a raylet, its agents)
            os.killpg(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    raise TimeoutError(f"second node did not come up; `ray start` said:\n{log_path.read_text()[-3000:]}")


def _forget_cluster(gcs_port: int) -> None:
    """`ray start --head` records itself in /tmp/ray/ray_current_cluster; `ray stop` would remove it, but this
    test ends its nodes by process group, so remove the record of this cluster (only this one) too."""
    record = "/tmp/ray/ray_current_cluster"
    try:
        with open(record) as f:
            if f.read().strip().endswith(f":{gcs_port}"):
                os.remove(record)
    except FileNotFoundError:
        pass


def _alive_nodes(gcs_port: int, env: dict) -> int:
    code = (
        f"import ray; ray.init(address='127.0.0.1:{gcs_port}', logging_level='ERROR');"
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else 0


def _wait_for(check, timeout: float, what: str, log) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} did not come up in {timeout} s; `ray start` said:\n{log.read_text()[-3000:]}")


def test_ray_job_submit_labels_with_one_gpu_per_actor(two_node_cluster, small_archive, tiny_bundle, tmp_path):
    dashboard, env = two_node_cluster
    manifest = _manifest(small_archive, tmp_path, 3000, "manifest.parquet")  # long enough for both actors to start
    bundle, model_id = tiny_bundle
    out = tmp_path / "labels"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    submit = [
        RAY,
        "job",
        "submit",
        "--address",
        dashboard,
        "--working-dir",
        repo,
        "--runtime-env-json",
        '{"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "RAY_DEDUP_LOGS": "0"}}',
        "--",
        "python",
        "-m",
        "jobs.label",
        "--manifest",
        str(manifest),
        "--model",
        bundle,
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--model-actors",
        "2",
        "--gpus-per-actor",
        "1",
    ]
    r = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600, cwd=repo)
    log = r.stdout + r.stderr
    assert r.returncode == 0 and "succeeded" in log, log[-3000:]
    table = pads.dataset(str(out)).to_table()
    assert table.num_rows == 3000 and set(table.column("model_id").to_pylist()) == {model_id}
    # Read the actors' own log files (both nodes write under the head's session dir): forwarding of worker
    # stdout to the driver is best-effort and has dropped a line under load.
    session = re.search(r"/tmp/ray/session_[\w.-]+", (tmp_path / "head.log").read_text()).group(0)
    text = log + "".join(
        p.read_text(errors="replace")
        for p in Path(session, "logs").rglob("*")
        if p.is_file() and p.suffix in (".out", ".log")
    )
    pattern = r"model actor pid=(\d+) node=(\w+) gpu_ids=([\w,-]+) CUDA_VISIBLE_DEVICES=([\w,-]+)"
    actors = set(re.findall(pattern, text))
    assert len(actors) == 2, actors
    for _, _, gpu_ids, cuda in actors:
        assert len(gpu_ids.split(",")) == 1 and gpu_ids == cuda  # exactly one GPU, and TF would see only it
    assert len({(node, gpu) for _, node, gpu, _ in actors}) == 2  # two actors, two different GPUs
