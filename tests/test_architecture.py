"""Structural rules of the code base."""

import ast
import inspect
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


def test_cuda_kernels_are_launched_only_through_kernels_launch():
    """The device boundary: ``gpunn.kernels.launch`` is the one place that launches a CUDA kernel (it
    picks the GPU, the stream and the grid and records the signatures the compile gate checks).  So
    only the ``*_cuda.py`` kernel modules, ``kernels/__init__.py`` (launch, stream),
    ``kernels/compile_check.py`` and the backend's GPU probe import numba.cuda, and nothing but
    ``kernels/__init__.py`` looks a raw kernel up with ``cuda_kernel``."""
    allowed = {ROOT / "kernels" / "__init__.py", ROOT / "kernels" / "compile_check.py", BACKEND}
    importers, lookups = [], []
    for path in PACKAGE_FILES:
        tree = ast.parse(path.read_text(), filename=str(path))
        names = set(_imported_modules(path)) | {
            f"{n.module}.{a.name}"
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module
            for a in n.names
        }
        if any(m == "numba.cuda" or m.startswith("numba.cuda.") for m in names):
            if path not in allowed and not path.name.endswith("_cuda.py"):
                importers.append(str(path.relative_to(ROOT)))
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "cuda_kernel"
        ]
        if calls and path != ROOT / "kernels" / "__init__.py":
            lookups.append(str(path.relative_to(ROOT)))
    assert not importers, f"modules importing numba.cuda outside the device boundary: {importers}"
    assert not lookups, f"modules launching raw CUDA kernels instead of gpunn.kernels.launch: {lookups}"
    assert any(p.name.endswith("_cuda.py") for p in PACKAGE_FILES)  # the scan sees the kernel modules


def _is_cuda_uses(path):
    """``(function, line)`` of every ``….is_cuda`` attribute access in ``path`` (function: the innermost
    enclosing ``def``, None at module level)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    uses = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Attribute) and child.attr == "is_cuda":
                uses.append((function, child.lineno))
            visit(child, function)

    visit(tree, None)
    return uses


def test_the_kernel_choice_is_made_only_by_kernels_ops():
    """``Device.is_cuda`` is read only by ``gpunn.kernels.ops`` (which picks ``cpu_ops`` or ``cuda_ops``):
    layers, losses and optimizers call the operations it returns, and data placement asks where an
    array lives (``is_device_array``, ``Device.to_device``), not which kind of device it is for."""
    found = {
        (str(path.relative_to(ROOT)), function)
        for path in PACKAGE_FILES
        for function, _ in _is_cuda_uses(path)
    }
    assert found == {("kernels/__init__.py", "ops")}
    definitions = [
        path
        for path in PACKAGE_FILES
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.FunctionDef) and n.name == "is_cuda"
    ]
    assert definitions == [BACKEND]


def test_the_is_cuda_scan_sees_a_use(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("x = d.is_cuda\n\ndef f(d):\n    def g():\n        return d.is_cuda\n    return g\n")
    assert _is_cuda_uses(path) == [(None, 1), ("g", 5)]


def _public_functions(module):
    return {
        name: inspect.signature(obj)
        for name, obj in vars(module).items()
        if callable(obj) and not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
    }


def test_cpu_and_cuda_ops_define_the_same_operations():
    from gpunn.kernels import cpu_ops, cuda_ops, ops

    cpu, cuda = _public_functions(cpu_ops), _public_functions(cuda_ops)
    assert cpu == cuda
    assert {"add_bias", "softmax_xent", "batchnorm_backward", "elementwise"} <= set(cpu)
    assert all(next(iter(s.parameters)) == "dev" for s in cpu.values())
    assert ops(gpunn.device("cpu")) is cpu_ops
    assert ops(gpunn.device("cuda", strict=True)) is cuda_ops  # real, or the simulator
