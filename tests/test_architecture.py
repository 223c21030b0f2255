"""Structural rules of the code base."""

import ast
import os
from pathlib import Path

import gpunn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILES = sorted((ROOT / "gpunn").rglob("*.py")) + sorted((ROOT / "kernels").rglob("*.py"))
BACKEND = ROOT / "gpunn" / "backend.py"
SIMCUPY = ROOT / "gpunn" / "simcupy.py"  # the simulator's stand-in for CuPy: NumPy underneath


def _imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_only_the_backend_imports_numpy_or_cupy():
    offenders = []
    for path in PACKAGE_FILES:
        if path in (BACKEND, SIMCUPY):
            continue
        for mod in _imported_modules(path):
            if mod.split(".")[0] in ("numpy", "cupy"):
                offenders.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not offenders, "array math must go through gpunn.backend:\n" + "\n".join(offenders)


def test_the_scan_sees_the_package():
    # guard against the test above passing vacuously
    assert BACKEND in PACKAGE_FILES and len(PACKAGE_FILES) > 8
    assert "numpy" in set(_imported_modules(BACKEND))


def test_kernels_install_inside_the_package(tmp_path):
    """gpunn.kernels is the repo's kernels/ directory; no top-level module "kernels" is installed
    (checked from another directory, so the repo root is not on sys.path)."""
    import subprocess
    import sys

    code = (
        "import importlib.util, gpunn.kernels; "
        "print(importlib.util.find_spec('kernels') is None, gpunn.kernels.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "gpunn.kernels"]


def test_public_api():
    for name in ("MLP", "Trainer", "device", "optim", "datasets"):
        assert hasattr(gpunn, name)
