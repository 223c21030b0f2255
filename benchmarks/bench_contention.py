"""Training on a machine that is doing something else: gpunn's thread policy against PyTorch.

    python benchmarks/bench_contention.py --data-dir ../shared/data/mnist [--json out/contention.json]

Three comparisons, each job a fresh process with no thread environment variables unless stated:

* **main job, idle vs one core busy**: ``examples/mnist_mlp.py``'s network (784-64-16-10, Sigmoid/Tanh,
  SGD η = 0.5, batch 64, validation after each epoch) trained by the example itself (gpunn) and by
  the same loop in PyTorch (``gpunn.torch_mirror.to_torch`` of the same net), first alone, then
  with a busy process (``python -c "while True: pass"``) started before and killed after.  The
  ratio busy / idle is printed per library (target for gpunn: ≤ 1.5×).  A control runs the gpunn
  job with every pool at one thread (``OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 …``): its ratio
  is what the busy process costs a serial job under the machine's current load.
* **``mpirun -n 2 examples/mnist_data_parallel.py``** with default threads against
  ``OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1`` (one thread per rank; target ≤ 1.5×).

Each job reports its own training wall time; jobs are interleaved over ``--rounds`` rounds and
the medians are compared (the load average is printed with every measurement: other tenants'
processes skew any one run).  Bounded: ``--epochs`` (default 20) keeps a round near a minute on
the 2-core development VM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
WALL = re.compile(r"wall time ([0-9.]+) s")
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _env(one_thread: bool = False) -> dict:
    """The parent's environment without thread variables (the default a user gets), or with every
    pool at one thread."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if one_thread:
        env.update({k: "1" for k in THREAD_VARS})
    return env


def _run(cmd: list[str], env: dict, timeout: float) -> float:
    """Run ``cmd``; return the training wall time it printed (``wall time X s``)."""
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    m = WALL.findall(out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        )
    return float(m[-1])


def torch_worker(data_dir: str, epochs: int, seed: int = 0) -> None:
    """The example's training loop in PyTorch (same net, weights, batches, SGD, per-epoch validation);
    prints ``wall time X s`` like the example."""
    import numpy as np
    import torch

    sys.path.insert(0, str(EXAMPLES))
    from _common import load_mnist_or_split
    from mnist_mlp import build

    from gpunn.torch_mirror import to_torch

    (xtr, ttr), (xte, tte), _ = load_mnist_or_split(data_dir)
    model = to_torch(build("cpu", seed))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = torch.nn.CrossEntropyLoss()

    def tensors(xs, ts):
        labels = ts.argmax(1) if ts.ndim == 2 else ts
        xs = np.ascontiguousarray(xs, dtype=np.float32)
        return torch.from_numpy(xs), torch.from_numpy(labels.astype(np.int64))

    x, y = tensors(xtr, ttr)
    xv, yv = tensors(xte, tte)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            acc = (model(xv).argmax(1) == yv).float().mean().item()
    print(f"torch: test accuracy {acc:.4f}, wall time {time.perf_counter() - start:.2f} s")


class Busy:
    """``python -c "while True: pass"`` for the duration of a ``with`` block (one core taken)."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        return False


def _jobs(args) -> dict:
    """name -> (command, env, busy?)."""
    py, data = sys.executable, ["--data-dir", args.data_dir]
    example = [
        py,
        str(EXAMPLES / "mnist_mlp.py"),
        "--device",
        "cpu",
        *data,
        "--epochs",
        str(args.epochs),
        "--no-plot",
        "--no-progress",
    ]
    torch_job = [py, __file__, "--worker", "torch", *data, "--epochs", str(args.epochs)]
    jobs = {
        "gpunn idle": (example, _env(), False),
        "gpunn busy": (example, _env(), True),
        # the control: the same job with every pool at one thread (what the busy process costs
        # a purely serial job on this machine now)
        "gpunn 1-thread env idle": (example, _env(one_thread=True), False),
        "gpunn 1-thread env busy": (example, _env(one_thread=True), True),
    }
    if not args.no_torch:
        jobs.update({"torch idle": (torch_job, _env(), False), "torch busy": (torch_job, _env(), True)})
    if not args.no_mpi:
        mpirun = Path(py).with_name("mpirun")
        dp = [
            str(mpirun if mpirun.exists() else "mpirun"),
            "-n",
            "2",
            py,
            str(EXAMPLES / "mnist_data_parallel.py"),
            "--device",
            "cpu",
            *data,
            "--epochs",
            str(args.mpi_epochs),
            "--no-progress",
        ]
        jobs.update(
            {
                "mpirun -n 2 default": (dp, _env(), False),
                "mpirun -n 2 one thread/rank": (dp, _env(one_thread=True), False),
            }
        )
    return jobs


def _ratio(res, a, b):
    if a in res and b in res:
        return statistics.median(res[a]) / statistics.median(res[b])
    return None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data-dir", default=os.environ.get("GPUNN_DATA", str(ROOT.parent / "shared/data/mnist"))
    )
    ap.add_argument("--epochs", type=int, default=20, help="epochs of the main job (the README command: 20)")
    ap.add_argument("--mpi-epochs", type=int, default=10, help="epochs of the mpirun job")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=240, help="seconds one job may take")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-mpi", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", choices=["torch"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "torch":
        torch_worker(args.data_dir, args.epochs)
        return {}

    jobs = _jobs(args)
    res, log = {}, []
    for r in range(args.rounds):
        for name, (cmd, env, busy) in jobs.items():
            load = _load()
            try:
                if busy:
                    with Busy():
                        s = _run(cmd, env, args.timeout)
                else:
                    s = _run(cmd, env, args.timeout)
            except subprocess.TimeoutExpired:
                s = float("inf")
            res.setdefault(name, []).append(s)
            log.append({"round": r, "job": name, "seconds": s, "load_before": load})
            print(f"round {r}  {name:<30} {s:8.2f} s   ({load})", flush=True)
    ratios = {
        "gpunn busy/idle": _ratio(res, "gpunn busy", "gpunn idle"),
        "gpunn 1-thread env busy/idle (control)": _ratio(
            res, "gpunn 1-thread env busy", "gpunn 1-thread env idle"
        ),
        "torch busy/idle": _ratio(res, "torch busy", "torch idle"),
        "mpirun default/one thread per rank": _ratio(
            res, "mpirun -n 2 default", "mpirun -n 2 one thread/rank"
        ),
        "torch idle/gpunn idle": _ratio(res, "torch idle", "gpunn idle"),
    }
    print(f"\nmedians over {args.rounds} rounds ({_load()}):")
    for name, v in res.items():
        print(f"  {name:<30} {statistics.median(v):8.2f} s   (range {min(v):.2f}-{max(v):.2f})")
    for name, v in ratios.items():
        if v is not None:
            print(f"  {name:<40} {v:.2f}x")
    out = {
        "seconds": res,
        "ratios": ratios,
        "runs": log,
        "epochs": args.epochs,
        "mpi_epochs": args.mpi_epochs,
        "load_end": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
