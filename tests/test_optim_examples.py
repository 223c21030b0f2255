"""The optimizer examples and benchmark run, and print the textbook's numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import optimizer_compare  # noqa: E402
import optimizer_paths  # noqa: E402


def test_optimizer_paths(tmp_path, capsys):
    result = optimizer_paths.main(["--device", "cpu", "--out", str(tmp_path)])
    k = np.arange(21)
    # SGD (η = 0.95) on z = x²/10 + y²: x ← 0.81 x, y ← -0.9 y
    np.testing.assert_allclose(result["paths"]["SGD"], np.c_[-7 * 0.81**k, 2 * (-0.9) ** k], rtol=1e-12)
    # the zig-zag on f = x²/20 + y²: x ← 0.905 x, y ← -0.9 y
    k = np.arange(31)
    np.testing.assert_allclose(result["zigzag"], np.c_[-7 * 0.905**k, 2 * (-0.9) ** k], rtol=1e-12)
    assert set(result["paths"]) == {
        "SGD",
        "Momentum",
        "Nesterov",
        "AdaGrad",
        "AdaDelta",
        "RMSprop",
        "Adam",
        "AdamW",
    }
    for name, path in result["paths"].items():  # every rule heads for the minimum
        assert np.hypot(*path[-1]) < np.hypot(-7, 2) / 2, name
    out = capsys.readouterr().out
    assert "-0.1035" in out and "0.2432" in out  # SGD's end point, printed
    for png in ("paths_bowl.png", "sgd_zigzag.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_optimizer_compare_same_network_and_data(mnist_dir, tmp_path, capsys):
    result = optimizer_compare.main(
        [
            "--device",
            "cpu",
            "--data-dir",
            str(mnist_dir),
            "--iters",
            "12",
            "--every",
            "5",
            "--rules",
            "SGD,Adam",
            "--out",
            str(tmp_path),
        ]
    )
    sgd, adam = result["losses"]["SGD"], result["losses"]["Adam"]
    assert len(sgd) == len(adam) == 12 and np.isfinite(sgd).all() and np.isfinite(adam).all()
    assert sgd[0] == adam[0]  # same initial weights, same first batch
    assert adam[-4:].mean() < adam[:4].mean()
    assert (tmp_path / "optimizer_compare.png").stat().st_size > 10_000
    assert "test acc" in capsys.readouterr().out


def test_benchmark_runs_and_never_times_the_simulator(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_optim.py"),
            "--size",
            "70000",
            "--repeat",
            "2",
            "--no-torch",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cuda: not measured: no GPU" in proc.stdout
    data = json.loads(out.read_text())
    # every rule of the registry (the textbook's eight first), bytes per parameter derived from it
    assert [r["rule"] for r in data["cpu"]["rules"]] == [cls.__name__ for cls in gpunn.optim.OPTIMIZERS]
    assert {r["rule"]: r["bytes_per_param"] for r in data["cpu"]["rules"]}["AMSGrad"] == 36
    for row in data["cpu"]["rules"]:
        assert row["gpunn_gbs"] > 0 and row["stream_median_gbs"] > 0 and row["numpy_ms"] > 0
    assert data["cuda"].startswith("not measured: no GPU")
    assert set(data["cpu"]["small_net"]["gpunn_us"]) == {r["rule"] for r in data["cpu"]["rules"]}


@pytest.mark.parametrize(
    "script", ["examples/optimizer_paths.py", "examples/optimizer_compare.py", "benchmarks/bench_optim.py"]
)
def test_help(script):
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0 and "--device" in proc.stdout
