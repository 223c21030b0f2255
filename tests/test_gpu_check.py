"""The CPU side of ``benchmarks/gpu_check.py``: the no-GPU exit, the step runner (a failing, raising
or hanging step is recorded and the next one runs; the time budget), the table and JSON made from
a result set, and the reading of the benchmarks' JSON.  The GPU measurements themselves need a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def ctx_for(gc, tmp_path):
    return gc.Context(env=dict(os.environ), raw_dir=tmp_path / "raw")


def test_no_gpu_says_so_and_exits_0(tmp_path):
    out_json = tmp_path / "check.json"
    # no device visible to CUDA, whatever the machine has; the simulator must not count as a GPU
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", str(out_json)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no GPU: "), proc.stdout
    assert len(lines[0]) > len("no GPU: ") + 10  # a reason, not an empty message
    assert not out_json.exists()
    assert "Traceback" not in proc.stderr


def test_unknown_step_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "tests,nonsense"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown step(s) ['nonsense']" in proc.stderr


def test_a_failing_step_is_recorded_and_the_others_still_run(gc, tmp_path):
    ran = []

    def ok(ctx, timeout):
        ran.append("ok")
        return {"ok": True, "figures": [gc.figure("speed", 12.5, "GB/s")], "detail": ""}

    def fails(ctx, timeout):
        ran.append("fails")
        return {"ok": False, "figures": [gc.figure("tests failed", 1)], "detail": "pytest exited with 1"}

    def raises(ctx, timeout):
        ran.append("raises")
        raise KeyError("rules")

    def hangs(ctx, timeout):
        ran.append("hangs")
        gc.run_command(
            [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
            timeout,
            ctx.env,
            ctx.raw_dir / "hangs.log",
        )

    steps = [
        gc.Step("a", 30, ok),
        gc.Step("b", 30, raises),
        gc.Step("c", 2, hangs),
        gc.Step("d", 30, fails),
        gc.Step("e", 30, ok),
    ]
    echoed = []
    results = gc.run_steps(
        steps, ctx_for(gc, tmp_path), budget_s=200, echo=lambda *a, **k: echoed.append(a[0])
    )
    assert ran == ["ok", "raises", "hangs", "fails", "ok"]
    assert [r["status"] for r in results] == ["passed", "error", "timeout", "failed", "passed"]
    assert results[1]["detail"] == "KeyError: 'rules'"
    assert results[2]["detail"].startswith("timed out after 2 s; last output: started\n")
    assert 1.5 < results[2]["seconds"] < 30  # killed, not waited for
    assert (tmp_path / "raw" / "hangs.log").read_text().startswith("started")
    assert results[3]["figures"] == [gc.figure("tests failed", 1)]
    assert len(echoed) == 5 and echoed[1].startswith("[gpu_check] b: error")


def test_the_budget_skips_the_steps_it_cannot_fit(gc, tmp_path):
    now = [0.0]
    timeouts = []

    def slow(ctx, timeout):
        timeouts.append(timeout)
        now[0] += 50
        return {"ok": True, "figures": [], "detail": ""}

    steps = [gc.Step(n, 40, slow) for n in "abc"]
    results = gc.run_steps(
        steps, ctx_for(gc, tmp_path), budget_s=60, clock=lambda: now[0], echo=lambda *a, **k: None
    )
    assert [r["status"] for r in results] == ["passed", "skipped", "skipped"]
    assert timeouts == [40]  # min(the step's limit, the time left)
    assert results[1]["detail"] == "not run: 10 s left of the 60 s budget"


def fake_result(gc):
    steps = [
        {
            "step": "bandwidth",
            "status": "passed",
            "seconds": 3.25,
            "detail": "",
            "figures": [
                gc.figure(
                    "device to device, cudaMemcpy (read + write), 1 GiB", 3012.4, "GB/s", "median 2990.1"
                ),
                gc.figure("host to device, pinned, 1 GiB", 25.04, "GB/s"),
            ],
        },
        {
            "step": "compile_cache",
            "status": "failed",
            "seconds": 30.0,
            "detail": "the second process compiled 3 kernels (cache hits: 9): "
            "the disk cache did not serve them",
            "figures": [gc.figure("CUDA kernels compiled / loaded, cached", "3 / 9")],
        },
        {
            "step": "tests",
            "status": "timeout",
            "seconds": 300.0,
            "figures": [],
            "detail": "timed out after 300 s; last output: collecting ...\n....",
        },
    ]
    return {
        "schema": "gpunn.gpu_check/1",
        "seconds": 333.2,
        "passed": False,
        "steps": steps,
        "machine": {
            "gpu": "NVIDIA H100 80GB HBM3",
            "compute_capability": "9.0",
            "sm_count": 132,
            "memory_gib": 79.2,
            "driver": "580.65.06",
            "driver_cuda": "13.0",
            "runtime_cuda": "13.0",
            "cupy": "14.2.0 (cupy-cuda13x)",
            "numba_cuda": "0.30.4",
            "cuda_bindings": "13.5.0",
            "numba": "0.68.1",
            "torch": None,
        },
        "commit": {"commit": "0123456789abcdef0123", "local_changes": True},
    }


def test_report_table_from_a_fake_result_set(gc):
    text = gc.format_report(fake_result(gc))
    lines = text.splitlines()
    assert lines[0] == (
        "GPU: NVIDIA H100 80GB HBM3 (compute capability 9.0, 132 SMs, 79 GiB); "
        "driver 580.65.06 (CUDA 13.0), runtime CUDA 13.0"
    )
    assert "CuPy 14.2.0 (cupy-cuda13x), numba-cuda 0.30.4" in lines[1]
    assert lines[1].endswith("commit 0123456789ab with local changes")
    header = next(i for i, ln in enumerate(lines) if ln.startswith("step "))
    assert set(lines[header + 1].replace(" ", "")) == {"-"}
    body = lines[header + 2 : header + 8]
    assert body[0].split()[:3] == ["bandwidth", "passed", "3.2"]
    assert body[0].endswith("device to device, cudaMemcpy (read + write), 1 GiB  3,012 GB/s  (median 2990.1)")
    assert body[1].split()[:3] == ["host", "to", "device,"] and body[1].endswith("25.0 GB/s")
    assert body[2].split()[:3] == ["compile_cache", "failed", "30.0"] and body[2].endswith("3 / 9")
    assert body[3].split()[0] == "why" and "did not serve them" in body[3]
    assert body[4].split()[:3] == ["tests", "timeout", "300.0"]
    assert body[4].endswith("timed out after 300 s; last output: collecting ...")
    # the figure column starts at the same place on every row
    col = lines[header].index("figure")
    assert body[0][col:].startswith("device to device") and body[1][col:].startswith("host to device")
    assert lines[-1] == "FAILED: 2 of 3 steps did not pass (compile_cache, tests); 333 s in all"


def test_report_says_passed_when_every_step_passed(gc):
    result = fake_result(gc)
    result["steps"] = result["steps"][:1]
    assert gc.format_report(result).splitlines()[-1] == "PASSED: every step; 333 s in all"


def test_json_round_trip(gc, tmp_path):
    path = tmp_path / "sub" / "gpu_check.json"
    gc.write_json(path, fake_result(gc))
    back = json.loads(path.read_text())
    assert back["passed"] is False
    assert back["machine"]["gpu"] == "NVIDIA H100 80GB HBM3"
    assert [s["status"] for s in back["steps"]] == ["passed", "failed", "timeout"]
    assert back["steps"][0]["figures"][0] == {
        "name": "device to device, cudaMemcpy (read + write), 1 GiB",
        "value": 3012.4,
        "unit": "GB/s",
        "note": "median 2990.1",
    }


@pytest.mark.parametrize(
    "value, text",
    [
        (3012.4, "3,012"),
        (25.04, "25.0"),
        (0.41234, "0.412"),
        (7, "7"),
        (12345, "12,345"),
        ("3 / 9", "3 / 9"),
        (True, "True"),
    ],
)
def test_format_value(gc, value, text):
    assert gc.format_value(value) == text


def test_pytest_summary_is_read(gc):
    out = (
        "....F\n=== short test summary info ===\nFAILED tests/test_x.py::test_y[cuda] - AssertionError\n"
        "======= 1 failed, 700 passed, 22 skipped, 3 warnings in 95.20s (0:01:35) ======="
    )
    line, counts = gc.pytest_counts(out)
    assert line == "1 failed, 700 passed, 22 skipped, 3 warnings in 95.20s (0:01:35)"
    assert counts == {"failed": 1, "passed": 700, "skipped": 22}
    assert gc.pytest_counts("5 passed in 0.12s\n") == ("5 passed in 0.12s", {"passed": 5})
    assert gc.pytest_counts("ImportError while loading conftest") == ("", {})


def test_benchmark_outputs_become_figures(gc, tmp_path, monkeypatch):
    fake = {
        "benchmarks/bench_optim.py": {
            "size": 10_000_000,
            "cuda": {
                "stream": {"copy_best_gbs": 2900.0},
                "rules": [{"rule": "Adam", "gpunn_us": 110.0, "gpunn_gbs": 2545.0}],
                "small_net_adam_us": 9.5,
            },
        },
        "benchmarks/bench_batchnorm.py": {
            "cuda": {
                "results": [
                    {
                        "shape": "64x64",
                        "gpunn fwd+bwd": 20e-6,
                        "gpunn fwd (train)": 9e-6,
                        "gpunn fwd (eval)": 5e-6,
                        "gpunn fwd+bwd GB/s": 6.5,
                    }
                ]
            }
        },
        "benchmarks/bench_train.py": {
            "rows": [
                dict(case="textbook", impl="gpunn", device="cpu", step_us=300.0, samples_per_s=213_000.0),
                dict(case="textbook", impl="torch", device="cpu", step_us=900.0, samples_per_s=71_000.0),
                dict(case="textbook", impl="gpunn", device="cuda:0", step_us=150.0, samples_per_s=426_000.0),
            ]
        },
    }
    monkeypatch.setattr(gc, "run_bench", lambda ctx, script, args, timeout: fake[script])
    ctx = ctx_for(gc, tmp_path)
    optim = gc.step_bench_optim(ctx, 60)
    assert optim["ok"] and [f["name"] for f in optim["figures"]] == [
        "copy kernel (CuPy, 50M float32)",
        "Adam step, 10,000,000 params",
        "Adam step, 784-64-16-10 network",
    ]
    assert optim["figures"][1]["value"] == 110.0 and optim["figures"][1]["note"] == "2545 GB/s"
    bn = gc.step_bench_batchnorm(ctx, 60)
    assert bn["ok"] and bn["figures"][0]["value"] == pytest.approx(20.0)
    train = gc.step_bench_train(ctx, 60)
    assert train["ok"] and len(train["figures"]) == 1
    assert train["figures"][0]["note"] == "426,000 samples/s, 2.0x gpunn CPU, 6.0x PyTorch CPU"

    fake["benchmarks/bench_optim.py"] = {"size": 10, "cuda": "not measured: no GPU"}
    fake["benchmarks/bench_train.py"] = {"rows": fake["benchmarks/bench_train.py"]["rows"][:2], "cuda": "x"}
    assert gc.step_bench_optim(ctx, 60) == {
        "ok": False,
        "figures": [],
        "detail": "bench_optim: cuda not measured: no GPU",
    }
    assert not gc.step_bench_train(ctx, 60)["ok"]


@pytest.mark.parametrize(
    "script, keys",
    [
        (
            "benchmarks/bench_optim.py",
            [
                '"small_net_adam_us"',
                '"copy_best_gbs"',
                '"gpunn_us"',
                '"gpunn_gbs"',
                '"rules"',
                '"stream"',
                '"size"',
            ],
        ),
        (
            "benchmarks/bench_batchnorm.py",
            [
                '"gpunn fwd+bwd"',
                '"gpunn fwd (train)"',
                '"gpunn fwd (eval)"',
                '"gpunn fwd+bwd GB/s"',
                '"results"',
                '"shape"',
            ],
        ),
        (
            "benchmarks/bench_train.py",
            ['"rows"', '"step_us"', '"samples_per_s"', '"case"', '"impl"', '"device"'],
        ),
        (
            "examples/speed_comparison.py",
            ["def time_gpunn(spec, device, steps, xs, ts)", "def batches(spec", "NETWORKS = {"],
        ),
    ],
)
def test_the_benchmarks_still_produce_what_gpu_check_reads(script, keys):
    """gpu_check reads these names from the benchmarks' JSON (or calls these functions): a rename there
    must show up here, not only on a GPU machine."""
    source = (ROOT / script).read_text()
    if script.startswith("benchmarks/"):  # their shared helpers (the CUDA copy bandwidth) live here
        source += (ROOT / "benchmarks" / "_common.py").read_text()
    missing = [k for k in keys if k not in source]
    assert not missing, f"{script} no longer has {missing}: update benchmarks/gpu_check.py"


def test_subprocess_environment(gc, monkeypatch):
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    env = gc.subprocess_env("/tmp/cache")
    assert "NUMBA_ENABLE_CUDASIM" not in env
    assert env["GPUNN_REQUIRE_CUDA"] == "1" and env["NUMBA_CACHE_DIR"] == "/tmp/cache"


def test_the_tests_step_runs_the_readme_command(gc, tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, timeout, env, log=None):
        seen.update(cmd=[str(c) for c in cmd], env=env, timeout=timeout)
        return 1, "F\nFAILED tests/test_a.py::test_b[cuda] - assert 1 == 2\n1 failed, 3 passed in 1.00s\n"

    monkeypatch.setattr(gc, "run_command", fake_run)
    ctx = gc.Context(
        env=gc.subprocess_env("/tmp/cache"), raw_dir=tmp_path, pytest_args=["tests", "-k", "cuda"]
    )
    out = gc.step_tests(ctx, 123)
    assert seen["cmd"][1:] == ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests", "-k", "cuda"]
    assert seen["env"]["GPUNN_TEST_DEVICE"] == "cuda" and "GPUNN_REQUIRE_CUDA" not in seen["env"]
    assert seen["timeout"] == 123
    assert not out["ok"] and out["detail"] == "pytest exited with status 1"
    figs = {f["name"]: f["value"] for f in out["figures"]}
    assert figs == {
        "tests passed": 3,
        "tests failed": 1,
        "test summary": "1 failed, 3 passed in 1.00s",
        "first failure": "FAILED tests/test_a.py::test_b[cuda] - assert 1 == 2",
    }


def test_compile_cache_step_needs_the_second_process_to_compile_nothing(gc, tmp_path, monkeypatch):
    runs = {}

    def fake_worker(ctx, worker, timeout, tag=""):
        return runs[tag]

    def run(misses, hits, warnings=()):
        return {
            "first_step_s": {"textbook": 2.0 if misses else 0.3},
            "second_step_s": {"textbook": 1e-4},
            "perf_warnings": list(warnings),
            "cache_misses": misses,
            "cache_hits": hits,
        }

    monkeypatch.setattr(gc, "run_worker", fake_worker)
    ctx = ctx_for(gc, tmp_path)
    runs.update(_cold=run(12, 0), _warm=run(0, 12))
    good = gc.step_compile_cache(ctx, 100)
    assert good["ok"] and good["detail"] == ""
    figs = {f["name"]: f["value"] for f in good["figures"]}
    assert figs["first textbook step, empty cache"] == 2.0 and figs["first textbook step, cached"] == 0.3
    assert figs["CUDA kernels compiled / loaded, cached"] == "0 / 12"
    assert figs["second textbook step"] == pytest.approx(100.0) and figs["NumbaPerformanceWarnings"] == 0

    runs.update(_warm=run(3, 9, ["Grid size 4 will likely result in GPU under-utilization"]))
    bad = gc.step_compile_cache(ctx, 100)
    assert not bad["ok"]
    assert bad["detail"] == (
        "the second process compiled 3 kernels (cache hits: 9): the disk cache did not "
        "serve them; 1 NumbaPerformanceWarning(s)"
    )
    runs.update(_cold=run(0, 12), _warm=run(0, 12))
    assert gc.step_compile_cache(ctx, 100)["detail"].startswith("the first process compiled nothing")


def test_bandwidth_and_speed_steps_report_every_figure(gc, tmp_path, monkeypatch):
    bw = {
        k: {"best_gbs": g, "median_gbs": g * 0.99}
        for k, g in (
            ("d2d_memcpy", 3000.0),
            ("d2d_kernel", 2900.0),
            ("h2d_pinned", 25.0),
            ("d2h_pinned", 26.0),
            ("h2d_pageable", 9.0),
        )
    }
    speed = {
        "textbook 784-64-16-10": {
            "steps": 300,
            "cpu_samples_per_s": 200_000.0,
            "cuda_samples_per_s": 400_000.0,
            "speedup": 2.0,
        }
    }
    outputs = {"bandwidth": bw, "speed": speed}
    monkeypatch.setattr(gc, "run_worker", lambda ctx, worker, timeout, tag="": outputs[worker])
    ctx = ctx_for(gc, tmp_path)
    out = gc.step_bandwidth(ctx, 60)
    assert out["ok"] and len(out["figures"]) == 5
    assert out["figures"][0] == gc.figure(
        "device to device, cudaMemcpy (read + write), 1 GiB", 3000.0, "GB/s", "median 2970.0"
    )
    bw["h2d_pageable"]["best_gbs"] = 0.0
    assert not gc.step_bandwidth(ctx, 60)["ok"]
    out = gc.step_speed_comparison(ctx, 60)
    assert out["ok"] and out["figures"] == [
        gc.figure("textbook 784-64-16-10, CUDA", 400_000.0, "samples/s", "CPU 200,000; 2.0x")
    ]


def test_a_crashing_subprocess_becomes_a_step_failure_with_its_last_line(gc, tmp_path):
    ctx = ctx_for(gc, tmp_path)
    cmd = [sys.executable, "-c", "print('working'); raise RuntimeError('no kernel image for this GPU')"]
    with pytest.raises(gc.StepFailed) as info:
        gc.run_json(ctx, cmd, tmp_path / "never.json", 60, "probe")
    first = str(info.value).splitlines()[0]
    assert first == "probe exited with status 1: RuntimeError: no kernel image for this GPU"
    assert "working" in (tmp_path / "raw" / "probe.log").read_text()

    target = str(tmp_path / "y.json")
    ok = [sys.executable, "-c", f"import json; json.dump({{'x': 1}}, open({target!r}, 'w'))"]
    assert gc.run_json(ctx, ok, tmp_path / "y.json", 60, "writer") == {"x": 1}
