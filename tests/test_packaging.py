"""What ships: the LICENSE, an sdist that holds everything its tests need, and an API reference that
pdoc builds from the docstrings without a warning."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DIRS = ("gpunn", "kernels", "tests", "examples", "benchmarks", "docs")
SHIPPED_FILES = ("LICENSE", "README.md", "pyproject.toml", "MANIFEST.in")


def test_license_is_mit_as_declared():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the gpunn authors" in text
    assert '\nlicense = "MIT"\n' in (ROOT / "pyproject.toml").read_text()


def source_files() -> list[str]:
    """The files the sdist must hold: tracked by git (or, outside a git checkout -- in an unpacked
    sdist -- present) in the shipped folders, and the top-level files."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", *SHIPPED_DIRS],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [
            str(p.relative_to(ROOT))
            for d in SHIPPED_DIRS
            for p in (ROOT / d).rglob("*")
            if p.is_file()
            and p.suffix != ".pyc"
            and not any(part == "__pycache__" or part.startswith(".") for part in p.relative_to(ROOT).parts)
        ]
    return sorted({*listed, *SHIPPED_FILES} - {"tests/.gitignore"})


def test_sdist_holds_what_the_tests_need(tmp_path):
    """Built offline (no isolated environment) from a copy of the source files, the sdist holds every
    one of them: the tests, conftest.py, tests/mpi/, the examples and benchmarks the tests import or
    run, the kernels, docs/build_api.py, the LICENSE."""
    pytest.importorskip("build", reason='needs the build package: pip install -e ".[test]"')
    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(
            f"setuptools {setuptools.__version__} < 77 cannot read pyproject.toml's license: "
            'pip install -e ".[test]"'
        )
    files = source_files()
    src = tmp_path / "src"
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    # setuptools (>= 77, checked above) is all an sdist needs; --skip-dependency-check: not wheel
    cmd = [
        sys.executable,
        "-m",
        "build",
        "--sdist",
        "--no-isolation",
        "--skip-dependency-check",
        "-o",
        str(tmp_path / "dist"),
        str(src),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (sdist,) = (tmp_path / "dist").glob("gpunn-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile() and "/" in m.name}
    missing = [name for name in files if name not in members]
    assert not missing, f"the sdist lacks {missing}: add them to MANIFEST.in"
    for needed in (
        "tests/conftest.py",
        "tests/mpi/worker.py",
        "examples/_common.py",
        "benchmarks/bench_optim.py",
        "kernels/optim_cuda.py",
        "LICENSE",
    ):
        assert needed in members


def test_api_reference_builds(tmp_path):
    """docs/build_api.py runs pdoc over every public module (gpunn.kernels and gpunn.textbook
    included) and fails on any pdoc warning; the key pages exist and hold the main API."""
    pytest.importorskip("pdoc", reason='needs pdoc: pip install -e ".[test]"')
    out = tmp_path / "api"
    # run from tmp_path: from the repository root, its gpunn/ (without gpunn/kernels/) would shadow the
    # installed package
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build_api.py"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    for page in (
        "index.html",
        "gpunn.html",
        "gpunn/mlp.html",
        "gpunn/trainer.html",
        "gpunn/checkpoint.html",
        "gpunn/optim.html",
        "gpunn/kernels.html",
        "gpunn/kernels/optim.html",
        "gpunn/kernels/optim_cuda.html",
        "gpunn/textbook.html",
        "gpunn/backend.html",
    ):
        assert (out / page).is_file(), page
    mlp = (out / "gpunn" / "mlp.html").read_text()
    for anchor in ('id="MLP.save"', 'id="MLP.predict"', 'id="MLP.gradient"'):
        assert anchor in mlp, anchor
    assert 'id="Trainer.fit"' in (out / "gpunn" / "trainer.html").read_text()
    assert 'id="load_model"' in (out / "gpunn" / "checkpoint.html").read_text()
