"""Benchmark data-parallel training: samples/second on 1 and 2 processes, and the allreduce's share.

For each network (the textbook 784-64-16-10 with global batch 64, and a larger 784-1024-1024-10
with global batch 256; ``--configs`` to choose), trained with :class:`gpunn.Trainer` on the MNIST
t10k digits (8,000 training examples; random data of the same shape when they are missing):

* ``1 proc x 1 thread``, ``1 proc x 2 threads``: one process (``distributed=True``, world of 1: no
  collective), Numba/OpenMP/OpenBLAS threads set through the environment;
* ``2 procs x 1 thread``: ``mpiexec -n 2``, one thread per rank (this machine has 2 cores);
* ``2 solo x 1 thread (no MPI)``: the ceiling of the above on this machine: two independent
  one-process runs at the same time, each with half the global batch (a rank's share of the work)
  and no communication; their samples/second added.  What 2 ranks lose to it is the cost of the
  allreduce and of waiting for each other; what it loses to twice ``1 proc x 1 thread`` is the two
  processes slowing each other down (shared caches, memory bandwidth, the virtual CPUs' host).

Per run: training samples/second (examples x epochs / the training time of the epochs, evaluation
excluded; median over ``--repeat`` fits after a warm-up epoch that compiles the kernels; each setup
is run ``--rounds`` times, the setups in rotation, and the median run is reported), the step
time, the time each step spends in the gradient allreduce on rank 0 (``Context.stats``: includes
waiting for the slower rank) and its share of the step, and an allreduce of the same buffer alone
(no training: the transport's cost).  The CPU path reduces with MPI (mpi4py + MPICH); on GPUs the
NCCL path is measured when there are at least 2 GPUs, else ``cuda: not measured: no GPU`` (or
"fewer than 2 GPUs").  Run from the repository root::

    .venv/bin/python benchmarks/bench_data_parallel.py --json benchmarks/results/data_parallel.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import NO_GPU, cuda_status, machine_info, print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "small": ([784, 64, 16, 10], ["sigmoid", "tanh"], 64),  # (sizes, activation, global batch)
    "large": ([784, 1024, 1024, 10], "relu", 256),
}
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# -- the worker: runs inside each rank ---------------------------------------------------------------
def worker(args) -> None:
    import numpy as np

    import gpunn
    from gpunn import distributed as dist

    ctx = dist.init(timeout=600)
    sizes, act, batch = CONFIGS[args.config]
    batch = args.batch or batch
    data = ROOT.parent / "shared" / "data" / "mnist"
    try:
        (x, t), _ = gpunn.datasets.load_mnist_test_split(data, n_train=8000, seed=0, download=False)
        source = "MNIST t10k (8,000 train)"
    except Exception:  # noqa: BLE001 - benchmark on data of the same shape
        rng = np.random.default_rng(0)
        x, t = rng.random((8000, 784), dtype=np.float32), rng.integers(0, 10, 8000)
        source = "random 8,000 x 784"
    device = dist.local_device(args.device)
    net = gpunn.MLP(sizes[0], sizes[1:-1], sizes[-1], activation=act, device=device, seed=0)
    trainer = gpunn.Trainer(
        net, gpunn.optim.SGD(lr=0.05), epochs=1, batch_size=batch, seed=0, progress=False, distributed=ctx
    )
    trainer.fit(x, t)  # warm-up: compiles the kernels
    fits = []
    for _ in range(args.repeat):
        trainer.epochs = args.epochs
        ctx.stats.clear()
        ctx.barrier()
        h = trainer.fit(x, t)
        seconds = sum(h["epoch_time"][-args.epochs :])
        steps = args.epochs * -(-len(x) // batch)
        calls, ar_s = ctx.stats.get("allreduce_mean", [0, 0.0])
        fits.append(
            {
                "samples_per_s": len(x) * args.epochs / seconds,
                "step_ms": 1e3 * seconds / steps,
                "allreduce_ms": 1e3 * ar_s / max(calls, 1) if calls else 0.0,
                "allreduce_share": ar_s / seconds,
            }
        )
    # the allreduce alone, on the model's gradient buffer (a copy: the values do not matter)
    buf = net.grads.flat.copy()
    alone = []
    if ctx.world_size > 1:
        for _ in range(5):
            ctx.barrier()
            t0 = time.perf_counter()
            for _ in range(args.alone_reps):
                ctx.allreduce_mean(buf, name="bench")
            net.device.synchronize()
            alone.append(1e3 * (time.perf_counter() - t0) / args.alone_reps)
    if ctx.is_main:
        med = {k: statistics.median(f[k] for f in fits) for k in fits[0]}
        best = max(fits, key=lambda f: f["samples_per_s"])
        print(
            "BENCH "
            + json.dumps(
                {
                    "config": args.config,
                    "sizes": sizes,
                    "global_batch": batch,
                    "n_params": net.n_params,
                    "device": net.device.name,
                    "data": source,
                    "processes": ctx.world_size,
                    "threads": int(os.environ.get("NUMBA_NUM_THREADS", "0")) or None,
                    **med,
                    "best_samples_per_s": best["samples_per_s"],
                    "fits": fits,
                    "allreduce_alone_ms": statistics.median(alone) if alone else None,
                    "machine": machine_info(),
                }
            ),
            flush=True,
        )


# -- the driver ------------------------------------------------------------------------------------
def run(config, processes, threads, args, device="cpu", solo=False):
    """One setup: ``processes`` MPI ranks (or, ``solo``, that many independent processes at once,
    each with its share of the global batch) of ``threads`` threads each."""
    env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if processes == 1 and threads > 1:
        env.setdefault("OMP_PROC_BIND", "true")  # see _common.bind_threads (never with 2 processes:
        # they would be bound to the same core)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--config",
        config,
        "--device",
        device,
        "--epochs",
        str(args.epochs),
        "--repeat",
        str(args.repeat),
        "--alone-reps",
        str(args.alone_reps),
    ]
    if solo:
        cmd += ["--batch", str(CONFIGS[config][2] // processes)]
        procs = [
            subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for _ in range(processes)
        ]
        outs = [(p.communicate(timeout=3600), p.returncode) for p in procs]
    else:
        if processes > 1:
            cmd = [args.mpiexec, "-n", str(processes), *cmd]
        p = subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600, cwd=ROOT
        )
        outs = [((p.stdout, p.stderr), p.returncode)]
    results = []
    for (stdout, stderr), rc in outs:
        line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH ")), None)
        if rc != 0 or line is None:
            raise RuntimeError(f"{' '.join(cmd)} failed ({rc}):\n{stdout}\n{stderr}")
        results.append(json.loads(line[6:]))
    result = results[0]
    plural = "s" if threads > 1 else ""
    if solo:
        result = {
            **result,
            "global_batch": CONFIGS[config][2],
            "processes": processes,
            "samples_per_s": sum(r["samples_per_s"] for r in results),
            "best_samples_per_s": sum(r["best_samples_per_s"] for r in results),
            "step_ms": max(r["step_ms"] for r in results),
            "solo_runs": results,
        }
        result["setup"] = f"{processes} solo x {threads} thread{plural} (no MPI)"
    else:
        result["setup"] = f"{processes} proc{'s' if processes > 1 else ''} x {threads} thread{plural}"
    return result


def _combine(results):
    """The run with the median samples/second, with every round's figure (``rounds_samples_per_s``)."""
    ordered = sorted(results, key=lambda r: r["samples_per_s"])
    median = ordered[(len(ordered) - 1) // 2]
    return {
        **median,
        "rounds_samples_per_s": [r["samples_per_s"] for r in results],
        "rounds_allreduce_share": [r["allreduce_share"] for r in results],
    }


def _row(r):
    return {**r, "net": "-".join(map(str, r["sizes"])), "share": 100 * r["allreduce_share"]}


def _find_mpiexec():
    """The mpiexec next to this Python (the ``dist`` extra's), else the one on the PATH; exits without."""
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    if not Path(mpiexec).exists():
        mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit('mpiexec not found: pip install "gpunn[dist]" (mpi4py and MPICH)')
    return mpiexec


def _bench_cpu(args, rows, payload):
    """Every CPU setup on every config, in rotation for ``args.rounds`` rounds; the median run kept."""
    setups = ((1, 1, False), (1, 2, False), (2, 1, False), (2, 1, True))
    for config in args.configs.split(","):
        runs = {s: [] for s in setups}
        for i in range(args.rounds):  # the setups in rotation: a drift of the machine hits all alike
            for setup in setups:
                r = run(config, setup[0], setup[1], args, solo=setup[2])
                runs[setup].append(r)
                print(
                    f"  round {i + 1}: {r['setup']:<28} {r['config']:<6} "
                    f"{r['samples_per_s']:>10,.0f} samples/s",
                    flush=True,
                )
        for setup in setups:
            r = _combine(runs[setup])
            payload["cpu"].append(r)
            rows.append(_row(r))


def _bench_cuda(args, rows, payload):
    """Every config on 1, 2 and all GPUs (NCCL), or the reason there is no GPU in ``payload["cuda"]``."""
    ok, why = cuda_status()
    if not ok:
        print(f"cuda: {why or NO_GPU}")
        payload["cuda"] = why or NO_GPU
        return
    import gpunn

    n_gpus = gpunn.device("cuda").xp.cuda.runtime.getDeviceCount()
    payload["cuda"] = []
    for config in args.configs.split(","):
        for processes in sorted({1, min(n_gpus, 2), n_gpus}):
            if processes > 1 and n_gpus < 2:
                continue
            r = run(config, processes, 1, args, device="cuda")
            payload["cuda"].append(r)
            rows.append(_row(r))
    if n_gpus < 2:
        print("cuda (NCCL, 2 processes): not measured: fewer than 2 GPUs")


def _print_rows(rows):
    """The results table, with each setup's range over the rounds."""
    print()
    for r in rows:
        r["range"] = "{:,.0f}-{:,.0f}".format(
            min(r.get("rounds_samples_per_s", [r["samples_per_s"]])),
            max(r.get("rounds_samples_per_s", [r["samples_per_s"]])),
        )
    print_table(
        rows,
        [
            ("net", "network", ""),
            ("global_batch", "batch", ""),
            ("device", "device", ""),
            ("setup", "setup", ""),
            ("samples_per_s", "samples/s", "{:,.0f}"),
            ("range", "rounds' range", ""),
            ("step_ms", "step ms", "{:.3f}"),
            ("allreduce_ms", "allreduce ms/step", "{:.3f}"),
            ("share", "share %", "{:.1f}"),
            ("allreduce_alone_ms", "allreduce alone ms", "{:.3f}"),
        ],
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="small,large", help="comma-separated: small, large")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per fit (default 3)")
    ap.add_argument("--repeat", type=int, default=2, help="timed fits per run (default 2)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of every setup, in rotation; the median run is reported (default 3)",
    )
    ap.add_argument("--alone-reps", type=int, default=200, help="allreduce calls timed alone (default 200)")
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    args.mpiexec = _find_mpiexec()
    rows, payload = [], {"cpu": [], "cuda": None}
    if args.device in ("cpu", "all"):
        _bench_cpu(args, rows, payload)
    if args.device in ("cuda", "all"):
        _bench_cuda(args, rows, payload)
    _print_rows(rows)
    if args.json:
        write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
