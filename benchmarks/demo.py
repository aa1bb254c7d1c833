"""``python -m jobs.bench demo``: `make demo` from a fresh clone, timed per phase, as a newcomer meets it.

Clones this checkout into a temporary directory (committed files only, as ``git clone`` gives them) and runs
``make demo`` there, reading its output line by line and stamping each line with the seconds since the start.
The phases are cut at the demo's own lines: install (until the first ``scanlabel demo:`` line), the up-front
estimate (Ray starts meanwhile), the training archive, training (the held-out archive is written as Ray Train
starts), and labeling with the report.  It starts with no virtual environment and empty uv/pip caches, as on a
fresh machine; ``--reuse-venv DIR`` links an existing one instead, to time the demo alone.  It prints the phase
table, the demo's trust lines, the estimate beside what happened, and the 1-minute load average before and after
(the machine must be quiet: nothing else running).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time

PHASES = (
    ("install", re.compile(r"^scanlabel demo: log file")),
    ("estimate", re.compile(r"^\[demo\] expect about")),
    ("training archive", re.compile(r"^\[demo\] training archive written")),
    ("training", re.compile(r"^\[demo\] trained")),
    ("labeling and report", re.compile(r"^scanlabel demo finished")),
)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _checkout_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(args: argparse.Namespace) -> int:
    root = _checkout_root()
    work = tempfile.mkdtemp(prefix="scanlabel-demo-bench-")
    clone = os.path.join(work, "scanlabel")
    subprocess.run(["git", "clone", "--quiet", root, clone], check=True)
    env = {**os.environ, "UV_CACHE_DIR": os.path.join(work, "uv-cache"), "PIP_NO_CACHE_DIR": "1"}
    env.pop("VIRTUAL_ENV", None)
    if args.reuse_venv:
        os.symlink(os.path.abspath(args.reuse_venv), os.path.join(clone, ".venv"))
        os.utime(os.path.join(clone, ".venv", ".installed"))  # newer than the clone's pyproject: no install
        # The venv's editable install puts its own checkout on sys.path; the clone's code must come first (the
        # demo's processes, and Ray's workers, inherit the environment).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (clone, env.get("PYTHONPATH")) if p)
    print(f"[bench demo] `make demo` in a fresh clone: {clone}")
    print(f"[bench demo] load average before: {_load()} ({os.cpu_count()} cores)", flush=True)
    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        ["make", "demo"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            t = time.perf_counter() - t0
            lines.append((t, line.rstrip("\n")))
            print(f"{t:7.1f}s  {line}", end="", flush=True)
            for name, pattern in PHASES:
                if name not in marks and pattern.search(line):
                    marks[name] = t
    total = time.perf_counter() - t0
    print(f"[bench demo] load average after: {_load()}")
    _report(marks, total, proc.returncode)
    return proc.returncode


def _report(marks: dict[str, float], total: float, returncode: int) -> None:
    print()
    print("| phase | seconds | ends at |")
    print("| --- | ---: | ---: |")
    previous = 0.0
    for name, _ in PHASES:
        if name in marks:
            print(f"| {name} | {marks[name] - previous:.0f} | {marks[name]:.0f} |")
            previous = marks[name]
    print(f"| **whole `make demo`** (exit {returncode}) | | **{total:.0f} s = {total / 60:.1f} min** |")


def register(sub) -> None:
    """``demo`` of ``python -m jobs.bench``."""
    p = sub.add_parser("demo", help="`make demo` from a fresh clone, timed per phase (needs a quiet machine)")
    p.add_argument(
        "--reuse-venv",
        default=None,
        metavar="DIR",
        help="link this virtual environment instead of installing (times the demo alone)",
    )
    p.set_defaults(bench_run=run_demo)

