"""The house rules, checked on the source: who may import whom, and facts that must have one home.

Each ``core`` package's ``__init__`` says what it may import; this test holds the code to it, so the folder list
keeps explaining the product.  Read statically (``ast``), so it costs milliseconds and imports nothing.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# core package -> the core packages it may import (besides itself); errors and progress are shared by all.
ALLOWED = {
    "io": set(),
    "readers": {"io"},
    "model": {"io", "readers", "trust.confidence"},
    "trust": {"io", "readers", "model", "labeling"},
    "labeling": {"io", "readers", "model", "trust"},
    "training": {"io", "readers", "model", "trust"},
    "synthetic": {"io", "readers", "model", "trust.confidence"},
}
# killpoints: the crash tests' hooks, reached from io and labeling
SHARED = {"errors", "progress", "options", "killpoints"}


def _modules(top: str) -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / top).rglob("*.py"))


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """Every module name imported anywhere in the file (top level and inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def _core_package(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "core" else None


@pytest.mark.parametrize("top", ["core", "jobs"])
def test_only_cluster_imports_ray(top):
    offenders = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in _modules(top)
        for name, line in _imports(p)
        if name == "ray" or name.startswith("ray.")
    ]
    assert not offenders, f"Ray is imported outside cluster/: {offenders}"


def test_core_packages_import_only_what_their_docstring_allows():
    offenders = []
    for p in _modules("core"):
        rel = p.relative_to(ROOT / "core")
        own = rel.parts[0] if len(rel.parts) > 1 else None
        if own is None:  # core/errors.py, core/progress.py, core/__init__.py: import nothing from core
            own_allowed: set[str] = set()
        else:
            own_allowed = ALLOWED[own] | {own}
        for name, line in _imports(p):
            pkg = _core_package(name)
            if pkg is None or pkg in SHARED or (own is None and pkg == rel.stem):
                continue
            sub = ".".join(name.split(".")[1:3])
            if pkg in own_allowed or any(a == sub or a.startswith(sub + ".") for a in own_allowed):
                continue
            offenders.append(f"core/{rel}:{line} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_nothing_installed_imports_the_benchmarks():
    offenders = [
        f"{p.relative_to(ROOT)}:{line}"
        for top in ("core", "cluster", "jobs")
        for p in _modules(top)
        for name, line in _imports(p)
        if name.split(".")[0] == "benchmarks" and p.name != "bench.py"
    ]
    assert not offenders, offenders


def test_tests_take_shared_helpers_from_tests_not_from_benchmarks():
    """Shared helpers (Orthanc, the crash schedule, the faulty S3 proxy) live in tests/ and benchmarks import them;
    only a test of a benchmark itself (tests/test_bench_*.py) imports a benchmark module."""
    offenders = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in _modules("tests")
        for name, line in _imports(p)
        if name.split(".")[0] == "benchmarks" and not p.name.startswith("test_bench_")
    ]
    assert not offenders, offenders


def test_never_tf_keras():
    offenders = [
        f"{p.relative_to(ROOT)}:{line}"
        for top in ("core", "cluster", "jobs", "benchmarks")
        for p in _modules(top)
        for name, line in _imports(p)
        if name.startswith("tensorflow.keras") or name.startswith("tf_keras")
    ]
    offenders += [
        str(p.relative_to(ROOT))
        for top in ("core", "cluster", "jobs", "benchmarks")
        for p in _modules(top)
        if "tf.keras." in p.read_text()
    ]
    assert not offenders, offenders


def _definitions(name: str) -> list[str]:
    return [
        f"{p.relative_to(ROOT)}:{node.lineno}"
        for top in ("core", "cluster", "jobs")
        for p in _modules(top)
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name
    ]


@pytest.mark.parametrize("name", ["expected_calibration_error", "read_manifest", "preprocess_file", "compact_pixels"])
def test_one_definition(name):
    assert len(_definitions(name)) == 1, _definitions(name)


def test_the_body_parts_are_spelled_out_once():
    spelled = [
        str(p.relative_to(ROOT))
        for top in ("core", "cluster", "jobs", "benchmarks")
        for p in _modules(top)
        if '"head", "chest", "abdomen"' in p.read_text()
    ]
    assert spelled == ["core/io/schema.py"], spelled


def test_functions_and_classes_stay_readable():
    """No function over 80 lines, no class over 400: a long one is a list of named steps waiting to be split."""
    long = []
    for top in ("core", "cluster", "jobs"):
        for p in _modules(top):
            for node in ast.walk(ast.parse(p.read_text())):
                size = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "end_lineno") else 0
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and size > 80:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
                if isinstance(node, ast.ClassDef) and size > 400:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} class {node.name} ({size} lines)")
    assert not long, "\n".join(long)
