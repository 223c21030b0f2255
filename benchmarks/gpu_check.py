"""One command for a machine with one NVIDIA GPU: does gpunn work there, and how fast is it?

    python benchmarks/gpu_check.py                 # from the repository root; ~5 min, at most --budget
    python benchmarks/gpu_check.py --json out/h100.json --steps tests,bandwidth

Needs only what such a machine has: CuPy, numba-cuda (either CUDA 12 or CUDA 13 pairing) and,
optionally, PyTorch and pytest; it downloads nothing.  Each step runs in a subprocess of its own with
a time limit, so a failing, crashing or hanging step is reported and the next one still runs:

* ``compile_cache`` -- a textbook training step (784-64-16-10, Adam) and a BatchNorm one, twice, in
  two fresh processes sharing an empty kernel cache (``NUMBA_CACHE_DIR``): the first compiles, the
  second must load every CUDA kernel from the disk cache.  Neither may raise a
  ``NumbaPerformanceWarning`` (numba-cuda's low-occupancy warning among them).
* ``bandwidth`` -- CuPy copies of 1 GiB: device to device (``cudaMemcpy`` and an elementwise copy
  kernel; bytes read + written), host to device and back from pinned memory, host to device from
  ordinary (pageable) NumPy memory.
* ``bench_optim``, ``bench_batchnorm``, ``bench_train`` -- the CUDA rows of those benchmarks
  (``--device cuda`` where they have it), read from their ``--json`` output.
* ``speed_comparison`` -- ``examples/speed_comparison.py``'s two networks, CPU and CUDA.
* ``tests`` -- the test suite on the GPU: ``GPUNN_TEST_DEVICE=cuda python -m pytest -q -x tests``.

It prints one table of every figure and writes it as JSON (``--json``, default
``out/gpu_check.json``; each step's output and the benchmarks' own JSON go to ``out/gpu_check.d/``),
with the GPU, driver and CUDA versions, CuPy and numba-cuda versions, the commit, and each step's
status.  Exit code 0 when every step passed, 1 otherwise.  Without a GPU it prints ``no GPU:
<reason>`` and exits 0 (a GPU that is present but unusable is an error).  All subprocesses run with
``GPUNN_REQUIRE_CUDA=1`` (no silent CPU fallback) and without the CUDA simulator.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
BUDGET_S = 450.0
"""Default time budget of all steps together: 7.5 minutes."""
MIN_STEP_S = 15.0
"""A step is not started with less time than this left in the budget."""
GIB = 1 << 30


class StepFailed(Exception):
    """A step could not produce its figures (the message says why)."""


class StepTimeout(StepFailed):
    """A step's subprocess ran out of time and was killed."""


@dataclass
class Context:
    """What every step needs: the environment of its subprocesses and where its files go."""

    env: dict
    raw_dir: Path
    pytest_args: list = field(default_factory=lambda: ["tests"])
    python: str = sys.executable


@dataclass
class Step:
    name: str
    timeout_s: float
    run: Callable[[Context, float], dict]
    """``run(ctx, timeout_s)`` returns ``{"ok": bool, "figures": [...], "detail": str}`` or raises."""


def figure(name: str, value, unit: str = "", note: str | None = None) -> dict:
    return {"name": name, "value": value, "unit": unit, "note": note}


# -- subprocesses ------------------------------------------------------------------------------------
def tail(text: str, lines: int = 15) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])


def last_line(text: str) -> str:
    """The last non-empty line of a command's output (an exception's message, pytest's summary)."""
    return next((ln.strip() for ln in reversed((text or "").splitlines()) if ln.strip()), "(no output)")


def run_command(cmd: list, timeout: float, env: dict, log: Path | None = None) -> tuple[int, str]:
    """Run ``cmd`` (stdout and stderr together) from the repository root; on timeout kill its whole
    process group and raise :class:`StepTimeout`.  The output is also written to ``log``."""
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(out or "")
    if timed_out:
        raise StepTimeout(f"timed out after {timeout:.0f} s; last output: {last_line(out)}\n{tail(out)}")
    return proc.returncode, out


def run_json(ctx: Context, cmd: list, json_path: Path, timeout: float, log_name: str) -> dict:
    """Run ``cmd``, which writes ``json_path``; return that JSON (StepFailed if it did not)."""
    json_path.unlink(missing_ok=True)
    rc, out = run_command(cmd, timeout, ctx.env, ctx.raw_dir / f"{log_name}.log")
    if rc != 0 or not json_path.exists():
        raise StepFailed(f"{log_name} exited with status {rc}: {last_line(out)}\n{tail(out)}")
    return json.loads(json_path.read_text())


def run_worker(ctx: Context, worker: str, timeout: float, tag: str = "") -> dict:
    """Run one of this script's in-process measurements (``--worker``) in a subprocess."""
    path = ctx.raw_dir / f"{worker}{tag}.json"
    return run_json(
        ctx, [ctx.python, __file__, "--worker", worker, "--out", path], path, timeout, f"{worker}{tag}"
    )


def run_bench(ctx: Context, script: str, args: list, timeout: float) -> dict:
    stem = Path(script).stem
    path = ctx.raw_dir / f"{stem}.json"
    return run_json(ctx, [ctx.python, ROOT / script, *args, "--json", path], path, timeout, stem)


# -- the steps ---------------------------------------------------------------------------------------
def perf_warnings_ok(run: dict) -> bool:
    return not run["perf_warnings"]


def step_compile_cache(ctx: Context, timeout: float) -> dict:
    t0 = time.monotonic()
    cold = run_worker(ctx, "first_step", timeout * 0.75, "_cold")
    warm = run_worker(ctx, "first_step", timeout - (time.monotonic() - t0), "_warm")
    figures = []
    for label, run in (("empty cache", cold), ("cached", warm)):
        for net, s in run["first_step_s"].items():
            figures.append(figure(f"first {net} step, {label}", s, "s"))
        figures.append(
            figure(f"CUDA kernels compiled / loaded, {label}", f"{run['cache_misses']} / {run['cache_hits']}")
        )
    for net, s in warm["second_step_s"].items():
        figures.append(figure(f"second {net} step", s * 1e6, "us"))
    warned = cold["perf_warnings"] + warm["perf_warnings"]
    figures.append(figure("NumbaPerformanceWarnings", len(warned), "", "; ".join(sorted(set(warned)))[:300]))
    problems = []
    if cold["cache_misses"] == 0:
        problems.append("the first process compiled nothing (was the cache not empty?)")
    if warm["cache_misses"] or not warm["cache_hits"]:
        problems.append(
            f"the second process compiled {warm['cache_misses']} kernels (cache hits: "
            f"{warm['cache_hits']}): the disk cache did not serve them"
        )
    if warned:
        problems.append(f"{len(warned)} NumbaPerformanceWarning(s)")
    return {"ok": not problems, "figures": figures, "detail": "; ".join(problems)}


def step_bandwidth(ctx: Context, timeout: float) -> dict:
    r = run_worker(ctx, "bandwidth", timeout)
    names = {
        "d2d_memcpy": "device to device, cudaMemcpy (read + write)",
        "d2d_kernel": "device to device, copy kernel (read + write)",
        "h2d_pinned": "host to device, pinned",
        "d2h_pinned": "device to host, pinned",
        "h2d_pageable": "host to device, pageable NumPy",
    }
    figures = [
        figure(f"{text}, 1 GiB", r[key]["best_gbs"], "GB/s", f"median {r[key]['median_gbs']:.1f}")
        for key, text in names.items()
    ]
    return {"ok": all(r[k]["best_gbs"] > 0 for k in names), "figures": figures, "detail": ""}


def step_bench_optim(ctx: Context, timeout: float) -> dict:
    data = run_bench(ctx, "benchmarks/bench_optim.py", ["--device", "cuda", "--repeat", "10"], timeout)
    cuda = data.get("cuda")
    if not isinstance(cuda, dict):
        return {"ok": False, "figures": [], "detail": f"bench_optim: cuda {cuda}"}
    n = data["size"]
    figures = [figure("copy kernel (CuPy, 50M float32)", cuda["stream"]["copy_best_gbs"], "GB/s")]
    figures += [
        figure(f"{r['rule']} step, {n:,} params", r["gpunn_us"], "us", f"{r['gpunn_gbs']:.0f} GB/s")
        for r in cuda["rules"]
    ]
    figures.append(figure("Adam step, 784-64-16-10 network", cuda["small_net_adam_us"], "us"))
    return {"ok": True, "figures": figures, "detail": ""}


def step_bench_batchnorm(ctx: Context, timeout: float) -> dict:
    data = run_bench(ctx, "benchmarks/bench_batchnorm.py", ["--device", "cuda", "--rounds", "10"], timeout)
    cuda = data.get("cuda")
    if not isinstance(cuda, dict):
        return {"ok": False, "figures": [], "detail": f"bench_batchnorm: cuda {cuda}"}
    figures = []
    for r in cuda["results"]:
        figures.append(
            figure(
                f"BatchNorm {r['shape']} forward+backward",
                r["gpunn fwd+bwd"] * 1e6,
                "us",
                f"{r['gpunn fwd+bwd GB/s']:.0f} GB/s",
            )
        )
        figures.append(figure(f"BatchNorm {r['shape']} forward (train)", r["gpunn fwd (train)"] * 1e6, "us"))
        figures.append(figure(f"BatchNorm {r['shape']} forward (eval)", r["gpunn fwd (eval)"] * 1e6, "us"))
    return {"ok": bool(figures), "figures": figures, "detail": ""}


def step_bench_train(ctx: Context, timeout: float) -> dict:
    data = run_bench(
        ctx,
        "benchmarks/bench_train.py",
        ["--cases", "textbook,bn,relu100", "--steps", "20", "--rounds", "5"],
        timeout,
    )
    rows = data.get("rows", [])
    cpu = {r["case"]: r for r in rows if r["impl"] == "gpunn" and r["device"] == "cpu"}
    torch = {r["case"]: r for r in rows if r["impl"] == "torch"}
    figures = []
    for r in rows:
        if r["device"] == "cpu":
            continue
        notes = [f"{r['samples_per_s']:,.0f} samples/s"]
        for ref, label in ((cpu, "gpunn CPU"), (torch, "PyTorch CPU")):
            if r["case"] in ref:
                notes.append(f"{r['samples_per_s'] / ref[r['case']]['samples_per_s']:.1f}x {label}")
        figures.append(figure(f"training step, {r['case']}", r["step_us"], "us", ", ".join(notes)))
    ok = bool(figures)
    return {"ok": ok, "figures": figures, "detail": "" if ok else f"no CUDA rows (cuda: {data.get('cuda')})"}


def step_speed_comparison(ctx: Context, timeout: float) -> dict:
    r = run_worker(ctx, "speed", timeout)
    figures = [
        figure(
            f"{name}, CUDA",
            v["cuda_samples_per_s"],
            "samples/s",
            f"CPU {v['cpu_samples_per_s']:,.0f}; {v['speedup']:.1f}x",
        )
        for name, v in r.items()
    ]
    return {"ok": bool(figures), "figures": figures, "detail": ""}


PYTEST_SUMMARY = re.compile(r"\b\d+ (passed|failed|errors?|skipped)\b.* in [\d.]+s|no tests ran")


def pytest_counts(output: str) -> tuple[str, dict]:
    """pytest's final summary line and its counts: ``("1 failed, 9 passed in 2.0s", {"failed": 1, ...})``."""
    lines = reversed((output or "").splitlines())
    line = next((ln.strip(" =") for ln in lines if PYTEST_SUMMARY.search(ln)), "")
    counts = {}
    for num, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)", line):
        counts["errors" if word.startswith("error") else word] = int(num)
    return line, counts


def step_tests(ctx: Context, timeout: float) -> dict:
    for module in ("pytest", "hypothesis"):
        if importlib.util.find_spec(module) is None:
            raise StepFailed(f"{module} is not installed: pip install -e '.[test]' (or .[dev])")
    # the README's command: the suite's own tests of the CPU fallback must not meet GPUNN_REQUIRE_CUDA
    env = {k: v for k, v in ctx.env.items() if k != "GPUNN_REQUIRE_CUDA"}
    env["GPUNN_TEST_DEVICE"] = "cuda"
    cmd = [ctx.python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *ctx.pytest_args]
    rc, out = run_command(cmd, timeout, env, ctx.raw_dir / "tests.log")
    line, counts = pytest_counts(out)
    figures = [
        figure(f"tests {word}", counts[word])
        for word in ("passed", "failed", "errors", "skipped")
        if word in counts
    ]
    figures.append(figure("test summary", line or "(no summary line)"))
    first = next((ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))), None)
    if first:
        figures.append(figure("first failure", first[:200]))
    detail = "" if rc == 0 else f"pytest exited with status {rc}" + ("" if line else f":\n{tail(out)}")
    return {"ok": rc == 0, "figures": figures, "detail": detail}


STEPS = [  # (name, time limit in s, function), in the order they run
    Step("compile_cache", 150, step_compile_cache),
    Step("bandwidth", 60, step_bandwidth),
    Step("bench_optim", 60, step_bench_optim),
    Step("bench_batchnorm", 45, step_bench_batchnorm),
    Step("bench_train", 90, step_bench_train),
    Step("speed_comparison", 45, step_speed_comparison),
    Step("tests", 300, step_tests),
]


def run_steps(steps: list, ctx: Context, budget_s: float, clock=time.monotonic, echo=print) -> list[dict]:
    """Run every step within ``budget_s`` seconds in all: a step gets ``min(its limit, time left)``,
    and none starts with less than ``MIN_STEP_S`` left (it is recorded as skipped).  A step that
    fails, raises or times out is recorded with the reason and the next one runs."""
    start = clock()
    results = []
    for step in steps:
        left = budget_s - (clock() - start)
        res = {"step": step.name, "status": "skipped", "seconds": 0.0, "figures": [], "detail": ""}
        if left < MIN_STEP_S:
            res["detail"] = f"not run: {left:.0f} s left of the {budget_s:.0f} s budget"
        else:
            t0 = clock()
            res.update(_run_one(step, ctx, min(step.timeout_s, left)))
            res["seconds"] = clock() - t0
        results.append(res)
        echo(
            f"[gpu_check] {step.name}: {res['status']} ({res['seconds']:.1f} s)"
            + (f" -- {res['detail'].splitlines()[0]}" if res["detail"] else ""),
            flush=True,
        )
    return results


def _run_one(step: Step, ctx: Context, timeout: float) -> dict:
    try:
        out = step.run(ctx, timeout)
    except StepTimeout as exc:
        return {"status": "timeout", "detail": str(exc)}
    except Exception as exc:  # a broken step must not stop the others
        return {"status": "error", "detail": f"{exc.__class__.__name__}: {exc}"}
    return {"status": "passed" if out["ok"] else "failed", "figures": out["figures"], "detail": out["detail"]}


# -- the machine -------------------------------------------------------------------------------------
def no_gpu_reason() -> tuple[str | None, bool]:
    """``(None, _)`` when GPU 0 is usable (gpunn's own probe), else ``(reason, present)``:
    ``present`` is True when CuPy counts a device that gpunn still cannot use."""
    from gpunn import backend

    reason = backend._probe_cuda(0)
    if reason is None:
        return None, True
    try:
        import cupy

        present = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        present = False
    return reason, present


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _smi_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    """GPU 0, driver and CUDA versions, and the versions of the libraries gpunn uses."""
    import cupy
    import numba
    import numpy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    cupy_dists = sorted(d for d in ("cupy-cuda12x", "cupy-cuda13x", "cupy") if _dist_version(d))
    return {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "sm_count": props["multiProcessorCount"],
        "memory_gib": props["totalGlobalMem"] / GIB,
        "driver": _smi_driver(),
        "driver_cuda": _cuda_version(cupy.cuda.runtime.driverGetVersion()),
        "runtime_cuda": _cuda_version(cupy.cuda.runtime.runtimeGetVersion()),
        "cupy": f"{cupy.__version__} ({', '.join(cupy_dists) or '?'})",
        "numba_cuda": _dist_version("numba-cuda"),
        "cuda_bindings": _dist_version("cuda-bindings"),
        "numba": numba.__version__,
        "numpy": numpy.__version__,
        "torch": _dist_version("torch"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def commit_info() -> dict:
    def git(*args):
        try:
            out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "local_changes": None if status is None else bool(status)}


# -- the report --------------------------------------------------------------------------------------
def format_value(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    a = abs(v)
    return f"{v:,.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.3g}"


def table_rows(result: dict) -> list[list[str]]:
    """One row per figure (a step without figures gets one row with its reason)."""
    rows = []
    for s in result["steps"]:
        first = [s["step"], s["status"], f"{s['seconds']:.1f}"]
        figs = s["figures"] or [figure("", s["detail"].splitlines()[0] if s["detail"] else "")]
        for f in figs:
            value = format_value(f["value"]) + (f" {f['unit']}" if f["unit"] else "")
            rows.append(first + [f["name"], value + (f"  ({f['note']})" if f.get("note") else "")])
            first = ["", "", ""]
        if s["figures"] and s["detail"]:
            rows.append(["", "", "", "why", s["detail"].splitlines()[0]])
    return rows


def format_report(result: dict) -> str:
    m, c = result["machine"], result["commit"]
    head = [
        f"GPU: {m.get('gpu')} (compute capability {m.get('compute_capability')}, "
        f"{m.get('sm_count')} SMs, {m.get('memory_gib', 0):.0f} GiB); driver {m.get('driver')} "
        f"(CUDA {m.get('driver_cuda')}), runtime CUDA {m.get('runtime_cuda')}",
        f"CuPy {m.get('cupy')}, numba-cuda {m.get('numba_cuda')}, "
        f"cuda-bindings {m.get('cuda_bindings')}, numba {m.get('numba')}, PyTorch {m.get('torch')}; "
        f"commit {(c.get('commit') or '?')[:12]}" + (" with local changes" if c.get("local_changes") else ""),
    ]
    cells = [["step", "status", "s", "figure", "value"]] + table_rows(result)
    widths = [max(len(r[i]) for r in cells) for i in range(4)]
    lines = []
    for j, r in enumerate(cells):
        pairs = enumerate(zip(r[:4], widths, strict=True))
        lines.append("  ".join(c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in pairs) + "  " + r[4])
        if j == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    bad = [s["step"] for s in result["steps"] if s["status"] != "passed"]
    verdict = (
        "PASSED: every step"
        if not bad
        else f"FAILED: {len(bad)} of {len(result['steps'])} steps did not pass ({', '.join(bad)})"
    )
    return "\n".join(head + [""] + lines + ["", f"{verdict}; {result['seconds']:.0f} s in all"])


def write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


# -- workers: the in-process measurements, each run in a subprocess of its own ------------------------
def _kernel_cache_stats() -> dict:
    """Disk-cache hits and misses (compilations) of every gpunn CUDA kernel loaded in this process."""
    from numba.cuda.dispatcher import CUDADispatcher

    hits = misses = 0
    for modname, module in list(sys.modules.items()):
        if not (modname.startswith("gpunn.kernels.") and modname.endswith("_cuda")):
            continue
        for obj in vars(module).values():
            if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device"):
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
    return {"cache_hits": hits, "cache_misses": misses}


def worker_first_step() -> dict:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numpy as np

        import gpunn

        nets = {
            "textbook 784-64-16-10": dict(hidden=[64, 16], activation=["sigmoid", "tanh"], bn=False),
            "BatchNorm 784-256-256-10": dict(hidden=[256, 256], activation="relu", bn=True),
        }
        rng = np.random.default_rng(0)
        x, t = rng.random((64, 784), dtype=np.float32), rng.integers(0, 10, 64)
        first, second = {}, {}
        for name, spec in nets.items():
            net = gpunn.MLP(
                784,
                spec["hidden"],
                10,
                activation=spec["activation"],
                batchnorm=spec["bn"],
                device="cuda",
                seed=0,
            )
            opt = gpunn.optim.Adam(lr=1e-3)
            xd, td = net.device.to_device(x), net.device.to_device(t)
            for times in (first, second):
                t0 = time.perf_counter()
                opt.update(net.params, net.gradient(xd, td))
                net.device.synchronize()
                times[name] = time.perf_counter() - t0
    perf = [str(w.message) for w in caught if w.category.__name__ == "NumbaPerformanceWarning"]
    return {"first_step_s": first, "second_step_s": second, "perf_warnings": perf, **_kernel_cache_stats()}


def _event_times(cupy, fn, repeat: int) -> list[float]:
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    fn()
    cupy.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(repeat):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    return times


def worker_bandwidth(nbytes: int = GIB) -> dict:
    import cupy
    import cupyx
    import numpy as np

    n = nbytes // 4
    src, dst = cupy.ones(n, dtype=cupy.float32), cupy.empty(n, dtype=cupy.float32)
    pinned = cupyx.empty_pinned(n, dtype=np.float32)
    pinned[:] = 1
    pageable = np.ones(n, dtype=np.float32)
    copy = cupy.ElementwiseKernel("T x", "T y", "y = x", "gpunn_check_copy")
    stream = cupy.cuda.get_current_stream()
    cases = {  # name: (bytes counted, call, repeats)
        "d2d_memcpy": (2 * nbytes, lambda: dst.data.copy_from_device_async(src.data, nbytes), 10),
        "d2d_kernel": (2 * nbytes, lambda: copy(src, dst), 10),
        "h2d_pinned": (nbytes, lambda: dst.set(pinned, stream=stream), 5),
        "d2h_pinned": (nbytes, lambda: src.get(stream=stream, out=pinned), 5),
        "h2d_pageable": (nbytes, lambda: dst.set(pageable), 5),
    }
    out = {}
    for name, (counted, fn, repeat) in cases.items():
        t = _event_times(cupy, fn, repeat)
        out[name] = {
            "best_gbs": counted / min(t) / 1e9,
            "median_gbs": counted / statistics.median(t) / 1e9,
            "bytes": counted,
            "repeat": repeat,
        }
    return out


def worker_speed() -> dict:
    sys.path.insert(0, str(ROOT / "examples"))
    import speed_comparison as sc

    out = {}
    for name, spec in sc.NETWORKS.items():
        steps = spec["steps"]
        xs, ts = sc.batches(spec)
        t_cpu, _ = sc.time_gpunn(spec, "cpu", steps, xs, ts)
        t_gpu, _ = sc.time_gpunn(spec, "cuda", steps, xs, ts)
        n = steps * spec["batch"]
        out[name] = {
            "steps": steps,
            "cpu_samples_per_s": n / t_cpu,
            "cuda_samples_per_s": n / t_gpu,
            "speedup": t_cpu / t_gpu,
        }
    return out


WORKERS = {"first_step": worker_first_step, "bandwidth": worker_bandwidth, "speed": worker_speed}


# -- main --------------------------------------------------------------------------------------------
def subprocess_env(cache_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(GPUNN_REQUIRE_CUDA="1", NUMBA_CACHE_DIR=cache_dir, PYTHONUNBUFFERED="1")
    return env


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--json",
        default="out/gpu_check.json",
        metavar="PATH",
        help="where to write the results (default out/gpu_check.json)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=BUDGET_S,
        help=f"seconds for all steps together (default {BUDGET_S:.0f})",
    )
    ap.add_argument(
        "--steps",
        default=",".join(s.name for s in STEPS),
        help="comma-separated steps to run (default: all, in this order)",
    )
    ap.add_argument(
        "--pytest-args", default="tests", help="what the tests step passes to pytest (default: tests)"
    )
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = set(args.steps.split(",")) - {s.name for s in STEPS}
    if unknown:
        ap.error(f"unknown step(s) {sorted(unknown)}; the steps are {[s.name for s in STEPS]}")
    return args


def check(args) -> int:
    reason, present = no_gpu_reason()
    if reason is not None:
        if present:
            print(f"GPU present but not usable by gpunn: {reason}")
            return 1
        print(f"no GPU: {reason}")
        return 0
    started = time.time()
    json_path = Path(args.json).resolve()  # the steps run from the repository root
    raw_dir = json_path.with_suffix(".d")
    wanted = args.steps.split(",")
    result = {
        "schema": "gpunn.gpu_check/1",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine_info(),
        "commit": commit_info(),
        "budget_s": args.budget,
        "raw_dir": str(raw_dir),
    }
    with tempfile.TemporaryDirectory(prefix="gpunn-kernel-cache-") as cache_dir:
        ctx = Context(
            env=subprocess_env(cache_dir), raw_dir=raw_dir, pytest_args=shlex.split(args.pytest_args)
        )
        result["steps"] = run_steps([s for s in STEPS if s.name in wanted], ctx, args.budget)
    result["seconds"] = time.time() - started
    result["passed"] = all(s["status"] == "passed" for s in result["steps"])
    print()
    print(format_report(result))
    write_json(json_path, result)
    print(f"wrote {json_path}")
    return 0 if result["passed"] else 1


def main(argv=None) -> int:
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)  # the simulator is never a GPU
    args = parse_args(argv)
    if args.worker:
        os.environ["GPUNN_REQUIRE_CUDA"] = "1"
        write_json(Path(args.out), WORKERS[args.worker]())
        return 0
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
