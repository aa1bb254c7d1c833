"""The deploy files in cluster/deploy/ are what a hospital data team applies: check they would be accepted.

No cluster here, so the checks are structural: YAML parses, the Ray launcher config passes Ray's own schema
validation, the KubeRay/Kubernetes objects have the fields their controllers need, every entrypoint names a job
module and flags that exist, and nothing secret is written inline.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "cluster" / "deploy"
FILES = ("ray-cluster.yaml", "rayjob-label.yaml", "rayjob-train.yaml", "cronjob-nightly-label.yaml")


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]


def _one(name: str) -> dict:
    docs = _docs(name)
    assert len(docs) == 1, f"{name}: expected one document, found {len(docs)}"
    return docs[0]


def _by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def _nightly_rayjob() -> dict:
    cm = _by_kind(_docs("cronjob-nightly-label.yaml"), "ConfigMap")[0]
    return yaml.safe_load(cm["data"]["rayjob.yaml"])


# --- generic checks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_every_file_parses_to_mappings(name):
    docs = _docs(name)
    assert docs and all(isinstance(d, dict) for d in docs)


def _walk(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, node


# AWS access key ids (AKIA/ASIA + 16) and PEM private keys; 40-character secret access keys are checked below.
_SECRET_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
_AWS_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")


def _looks_like_secret(text: str) -> bool:
    if any(p.search(text) for p in _SECRET_PATTERNS):
        return True
    # a 40-character base64 run mixing upper case, lower case and digits: the shape of an AWS secret key
    return any(
        re.search(r"[A-Z]", m) and re.search(r"[a-z]", m) and re.search(r"[0-9]", m)
        for m in _AWS_SECRET_KEY.findall(text)
    )


_SECRET_NAMES = re.compile(r"(secret|password|token|access_key|credential)", re.IGNORECASE)


def find_plaintext_secrets(docs: list) -> list[str]:
    """Paths whose value looks like a credential, or whose name says secret but carry a literal value."""
    problems = []
    for path, value in _walk(docs):
        text = str(value)
        if _looks_like_secret(text):
            problems.append(f"{path}: looks like a credential")
    for doc in docs:
        for env in _all_env(doc):
            if _SECRET_NAMES.search(env.get("name", "")) and "value" in env:
                problems.append(f"env {env['name']}: literal value; use valueFrom.secretKeyRef")
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            problems.append(f"Secret {doc.get('metadata', {}).get('name')}: secrets must not be committed")
    return problems


@pytest.mark.parametrize("name", FILES)
def test_no_plaintext_secrets(name):
    docs = _docs(name)
    if name == "cronjob-nightly-label.yaml":
        docs = [*docs, _nightly_rayjob()]
    assert find_plaintext_secrets(docs) == []


def test_secret_detector_catches_inline_credentials():
    """The check above must be able to fail."""
    leaked = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c", "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]},
                        {"name": "d", "args": ["--key", "AKIAABCDEFGHIJKLMNOP"]},
                        {"name": "e", "args": ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]},
                    ]
                }
            }
        }
    }
    assert len(find_plaintext_secrets([leaked])) == 3


# --- the Ray cluster launcher config --------------------------------------------------------------------------


def test_ray_cluster_launcher_config():
    cfg = _one("ray-cluster.yaml")
    assert isinstance(cfg["cluster_name"], str) and isinstance(cfg["max_workers"], int)
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    for name, t in types.items():
        assert isinstance(t["node_config"]["InstanceType"], str), name
        assert isinstance(t["min_workers"], int) and isinstance(t["max_workers"], int), name
        assert t["min_workers"] <= t["max_workers"], name
    workers = {n: t for n, t in types.items() if n != cfg["head_node_type"]}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) >= 1]
    cpu = [t for t in workers.values() if not t["resources"].get("GPU") and t["resources"].get("CPU", 0) >= 1]
    assert gpu and cpu, "needs a CPU decode worker type and a GPU worker type"
    assert all(t["resources"]["CPU"] >= 1 for t in gpu)
    assert sum(t["max_workers"] for t in workers.values()) >= cfg["max_workers"] >= 1

    # the project is installed on every node: head through setup_commands, each worker type through its own
    assert any('pip install ".[cpu]"' in c or 'pip install ".[gpu]"' in c for c in cfg["setup_commands"])
    for name, t in workers.items():
        extra = "gpu" if t["resources"].get("GPU") else "cpu"
        assert any(f'pip install ".[{extra}]"' in c for c in t["worker_setup_commands"]), name

    # token auth on every node that runs `ray start`
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    assert any("--head" in c for c in cfg["head_start_ray_commands"])
    assert any("auth_token" in remote for remote in cfg["file_mounts"])


def test_ray_cluster_config_passes_rays_own_validation():
    """`ray up` runs exactly this validation (schema + filled-in defaults) before touching the cloud."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_one("ray-cluster.yaml")))


def test_ray_validation_can_fail():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = _one("ray-cluster.yaml")
    cfg["available_node_types"]["gpu"]["resources"] = {"CPU": 4, "GPU": "one"}
    with pytest.raises(Exception, match="one"):
        validate_config(prepare_config(cfg))


# --- KubeRay RayJobs ------------------------------------------------------------------------------------------


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _all_env(doc) -> list[dict]:
    envs = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("env"), list):
                envs.extend(e for e in node["env"] if isinstance(e, dict))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return envs


def _entrypoint_args(entrypoint: str) -> tuple[str, list[str]]:
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "-m"], entrypoint
    return argv[2], argv[3:]


def check_entrypoint(entrypoint: str) -> str:
    """The module exists in the repo and its own argument parser accepts the flags (no typo'd option)."""
    module, args = _entrypoint_args(entrypoint)
    assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"{module} is not in the repository"
    mod = importlib.import_module(module)
    parser = argparse.ArgumentParser(exit_on_error=False)
    mod.add_arguments(parser)
    parser.parse_args(args)
    return module


def check_rayjob(job: dict, module: str) -> dict:
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert isinstance(spec["entrypoint"], str) and f"python -m {module}" in spec["entrypoint"]
    assert check_entrypoint(spec["entrypoint"]) == module
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert isinstance(cluster["rayVersion"], str)
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict) and _containers(head["template"])
    groups = cluster["workerGroupSpecs"]
    assert isinstance(groups, list) and groups
    names = [g["groupName"] for g in groups]
    assert len(set(names)) == len(names)
    for g in groups:
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], g["groupName"]
        assert isinstance(g["rayStartParams"], dict)
    gpu_groups = [
        g
        for g in groups
        if any(int(c["resources"].get("limits", {}).get("nvidia.com/gpu", 0)) >= 1 for c in _containers(g["template"]))
    ]
    assert gpu_groups, "needs a worker group with nvidia.com/gpu limits"

    ray_pods = [head["template"], *(g["template"] for g in groups)]
    for pod in ray_pods:
        for c in _containers(pod):
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"unpinned image {image}"
            if any(pod is g["template"] for g in gpu_groups):
                assert "gpu" in image, f"GPU pods need the CUDA image, found {image}"
            env = {e["name"]: e for e in c.get("env", [])}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert "secretKeyRef" in env[key]["valueFrom"], f"{c['name']}: {key} must come from a Secret"
                assert "value" not in env[key]
    return cluster


def test_rayjob_label():
    job = _one("rayjob-label.yaml")
    cluster = check_rayjob(job, "jobs.label")
    assert "python -m jobs.label" in job["spec"]["entrypoint"]
    _, args = _entrypoint_args(job["spec"]["entrypoint"])
    for flag in ("--manifest", "--model", "--out"):
        assert args[args.index(flag) + 1].startswith("s3://"), flag
    kinds = {"gpu" if "gpu" in g["groupName"] else "cpu" for g in cluster["workerGroupSpecs"]}
    assert kinds == {"cpu", "gpu"}, "a CPU decode group and a GPU inference group"
    # the pipeline asks for as many GPU actors as the GPU group can grow to
    gpu_max = sum(g["maxReplicas"] for g in cluster["workerGroupSpecs"] if "gpu" in g["groupName"])
    assert int(args[args.index("--model-actors") + 1]) <= gpu_max


def test_rayjob_train():
    job = _one("rayjob-train.yaml")
    cluster = check_rayjob(job, "jobs.train")
    _, args = _entrypoint_args(job["spec"]["entrypoint"])
    assert args[args.index("--workers") + 1] == "4" and args[args.index("--gpus-per-worker") + 1] == "1"
    assert args[args.index("--storage") + 1].startswith("s3://")
    gpu_max = sum(g["maxReplicas"] for g in cluster["workerGroupSpecs"] if "gpu" in g["groupName"])
    assert gpu_max >= 4, "4 one-GPU workers need 4 GPU pods"
    # each training worker must fit one GPU pod, leaving a CPU for Ray Train's controller
    cpus = int(args[args.index("--cpus-per-worker") + 1])
    gpu_pod_cpus = [
        float(c["resources"]["limits"]["cpu"])
        for g in cluster["workerGroupSpecs"]
        for c in _containers(g["template"])
        if "nvidia.com/gpu" in c["resources"]["limits"]
    ]
    assert all(cpus < n for n in gpu_pod_cpus)


def test_entrypoint_check_can_fail():
    with pytest.raises(AssertionError, match="not in the repository"):
        check_entrypoint("python -m jobs.nonexistent --out x")
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        check_entrypoint("python -m jobs.label --manifest a --model b --out c --gpu-per-actor 1")  # typo
    job = _one("rayjob-label.yaml")
    for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        for c in _containers(g["template"]):
            c["resources"]["limits"].pop("nvidia.com/gpu", None)
    with pytest.raises(AssertionError, match="nvidia.com/gpu"):
        check_rayjob(job, "jobs.label")


# --- the nightly CronJob --------------------------------------------------------------------------------------

_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def valid_cron(expr: str) -> bool:
    fields = expr.split()
    if len(fields) != 5:
        return False
    for field, (lo, hi) in zip(fields, _CRON_RANGES, strict=True):
        if not _CRON_FIELD.match(field):
            return False
        for number in re.findall(r"\d+", re.sub(r"/\d+", "", field)):
            if not lo <= int(number) <= hi:
                return False
    return True


@pytest.mark.parametrize(
    "expr, ok", [("0 1 * * *", True), ("*/15 0-6 * * 1,3", True), ("0 25 * * *", False), ("0 1 * *", False)]
)
def test_cron_validator(expr, ok):
    assert valid_cron(expr) is ok


def test_nightly_cronjob():
    docs = _docs("cronjob-nightly-label.yaml")
    cron = _by_kind(docs, "CronJob")
    assert len(cron) == 1
    cron = cron[0]
    assert cron["apiVersion"] == "batch/v1"
    spec = cron["spec"]
    assert spec["schedule"] == "0 1 * * *" and valid_cron(spec["schedule"])
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")

    # the ServiceAccount and ConfigMap it references are defined here, in the same namespace
    ns = cron["metadata"]["namespace"]
    sa_names = {d["metadata"]["name"] for d in _by_kind(docs, "ServiceAccount") if d["metadata"]["namespace"] == ns}
    assert pod["serviceAccountName"] in sa_names
    cm_names = {d["metadata"]["name"] for d in _by_kind(docs, "ConfigMap") if d["metadata"]["namespace"] == ns}
    cm_volumes = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]
    assert cm_volumes and set(cm_volumes) <= cm_names

    # the RBAC lets that ServiceAccount create RayJobs, and only that
    roles = {d["metadata"]["name"]: d for d in _by_kind(docs, "Role")}
    bindings = [
        b
        for b in _by_kind(docs, "RoleBinding")
        if any(s["kind"] == "ServiceAccount" and s["name"] == pod["serviceAccountName"] for s in b["subjects"])
    ]
    assert bindings
    rules = [r for b in bindings for r in roles[b["roleRef"]["name"]]["rules"]]
    assert any("ray.io" in r["apiGroups"] and "rayjobs" in r["resources"] and "create" in r["verbs"] for r in rules)
    assert all(set(r["verbs"]) <= {"create", "get", "list", "watch"} for r in rules)

    # the container creates the mounted RayJob (create, so generateName gives each night a new name)
    container = pod["containers"][0]
    command = " ".join(container.get("command", []) + container.get("args", []))
    mount = next(m for m in container["volumeMounts"] if m["name"] in {v["name"] for v in pod["volumes"]})
    assert "kubectl create" in command and mount["mountPath"] in command


def test_nightly_rayjob_is_the_label_rayjob():
    nightly = _nightly_rayjob()
    assert "generateName" in nightly["metadata"] and "name" not in nightly["metadata"]
    check_rayjob(nightly, "jobs.label")
    assert nightly["spec"] == _one("rayjob-label.yaml")["spec"], "ConfigMap copy drifted from rayjob-label.yaml"
    # a nightly run must be stopped before the next one starts
    assert nightly["spec"]["activeDeadlineSeconds"] < 24 * 3600


def test_nightly_run_reports_its_outcome_to_the_scheduler():
    """The nightly job fails (non-zero exit: RayJob FAILED) on too many errors or on drift, and leaves its
    summary where a monitor can read it."""
    _, args = _entrypoint_args(_nightly_rayjob()["spec"]["entrypoint"])
    assert "--fail-on-drift" in args
    assert 0 < float(args[args.index("--max-error-rate") + 1]) < 1
    summary = args[args.index("--summary-json") + 1]
    out = args[args.index("--out") + 1]
    assert summary.startswith("s3://") and summary.endswith(".json")
    # inside the labels prefix only under a folder Parquet readers skip (leading underscore)
    if summary.startswith(out.rstrip("/") + "/"):
        assert summary[len(out.rstrip("/")) + 1 :].startswith("_")
