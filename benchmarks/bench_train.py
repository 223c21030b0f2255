"""End-to-end training speed: gpunn against PyTorch (CPU) and the textbook's NumPy code.

Every ratio is measured in one run, implementations interleaved round by round (so a change in
the machine's state hits all alike), same architecture, same initial weights, batch size,
optimizer (Adam, η = 1e-3) and thread count.  The gpunn side is the textbook loop
``grads = net.gradient(x, t); optimizer.update(net.params, grads)``.

Cases (the targets of issue 8):

* ``textbook``: 784-64-16-10 Sigmoid/Tanh, batch 64 — gpunn vs PyTorch (target ≥ 3×)
* ``bn``: 784-512-512-10 ReLU + BatchNorm, batch 256 — gpunn vs PyTorch (target ≥ 1×)
* ``relu100``: 784-100-100-10 ReLU, batch 100 — gpunn vs the book's NumPy float64 (target ≥ 3×)
  The row ``gpunn_floor`` times only what no implementation of this step can skip on this CPU:
  the two 784-wide GEMMs (x·W1 forward, xᵀ·dZ1 for dW1, in NumPy's BLAS) and the Adam update of
  all 51,450 parameters -- the fastest a gpunn step could be with every other layer, the loss
  and Python free.  Its ratio to PyTorch is the ceiling of the textbook row's.
* ``epoch``: one epoch of 60,000 samples, textbook network, batch 64: ``gpunn.Trainer`` vs the
  equivalent PyTorch loop (median of ``--epoch-repeat`` epochs)

    python benchmarks/bench_train.py --json out/bench_train.json

A real GPU adds gpunn CUDA rows; without one they read "not measured: no GPU".

Threads: ``--threads N`` sets every pool (OpenBLAS, OpenMP/torch, MKL, Numba) before NumPy is
imported; without it each library uses all cores.  Numba's threading layer defaults to
``workqueue`` here (gpunn's documented policy; ``--numba-layer omp`` to compare): Numba's OpenMP
workers spin after each parallel region (gpunn's optimizers go parallel above 4M parameters) and
take the cores OpenBLAS's threads need -- 784-100-100-10 steps took 8.6 ms instead of 0.59 ms that
way on the 2-core dev VM.  OpenMP threads are pinned (``OMP_PROC_BIND=true``, see
``_common.bind_threads``).  The load average is printed: other tenants' processes skew 2-thread
rows most.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _preset_threads(argv):
    """``--threads N`` must reach OpenBLAS (NumPy's BLAS) before NumPy is imported: set the
    environment of every pool (OpenBLAS, OpenMP/torch, MKL, Numba) here."""
    for i, a in enumerate(argv):
        n = (
            a.split("=", 1)[1]
            if a.startswith("--threads=")
            else (argv[i + 1] if a == "--threads" and i + 1 < len(argv) else None)
        )
        if n:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
                os.environ[var] = n
        if a == "--passive":
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        layer = (
            a.split("=", 1)[1]
            if a.startswith("--numba-layer=")
            else (argv[i + 1] if a == "--numba-layer" and i + 1 < len(argv) else None)
        )
        if layer:
            os.environ["NUMBA_THREADING_LAYER"] = layer
    # gpunn's thread policy (gpunn.cpu_threads): Numba's parallel kernels on the workqueue
    # layer, whose idle workers sleep instead of spinning against OpenBLAS's threads
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")


_preset_threads(sys.argv[1:])

import numpy as np  # noqa: E402
from _common import bind_threads, cuda_status, interleaved, print_table, write_json  # noqa: E402
from textbook_numpy import Adam as NumpyAdam  # noqa: E402
from textbook_numpy import MultiLayerNet  # noqa: E402

import gpunn  # noqa: E402
from gpunn.torch_mirror import to_torch  # noqa: E402

CASES = {
    "textbook": dict(sizes=[784, 64, 16, 10], act=["sigmoid", "tanh"], batch=64, bn=False),
    "bn": dict(sizes=[784, 512, 512, 10], act=["relu", "relu"], batch=256, bn=True),
    "relu100": dict(sizes=[784, 100, 100, 10], act=["relu", "relu"], batch=100, bn=False),
}


def make_gpunn(case, device="cpu"):
    net = gpunn.MLP(
        case["sizes"][0],
        case["sizes"][1:-1],
        case["sizes"][-1],
        activation=case["act"],
        batchnorm=case["bn"],
        device=device,
        seed=0,
    )
    opt = gpunn.optim.Adam(lr=1e-3)

    def step(x, t):
        grads = net.gradient(x, t)
        opt.update(net.params, grads)

    return net, step


def make_torch(net):
    import torch

    model = to_torch(net)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, t):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), t).backward()
        opt.step()

    return model, step


def make_floor(net):
    """The textbook step's unavoidable part (see the module docstring): the first layer's two GEMMs
    and the optimizer update, on the model's own buffers."""
    W1, dW1 = net.params["W1"], net.grads["W1"]
    z1 = np.empty((CASES["textbook"]["batch"], W1.shape[1]), dtype=W1.dtype)
    opt = gpunn.optim.Adam(lr=1e-3)

    def step(x, t):
        np.matmul(x, W1, out=z1)
        np.matmul(x.T, z1, out=dW1)  # z1 stands in for dZ1: same shape, same cost
        opt.update(net.params, net.grads)

    return step


def make_numpy(net, case):
    weights = [gpunn.Device.to_numpy(net.params[f"W{i}"]) for i in range(1, len(case["sizes"]))]
    biases = [gpunn.Device.to_numpy(net.params[f"b{i}"]) for i in range(1, len(case["sizes"]))]
    book = MultiLayerNet(weights, biases, case["act"])
    opt = NumpyAdam(lr=1e-3)

    def step(x, t):
        opt.update(book.params, book.gradient(x, t))

    return step


def batches(case, n_batches=32, seed=0):
    rng = np.random.default_rng(seed)
    b = case["batch"]
    xs = [rng.random((b, case["sizes"][0]), dtype=np.float32) for _ in range(n_batches)]
    ts = [rng.integers(0, case["sizes"][-1], b) for _ in range(n_batches)]
    return xs, ts


def looped(step, xs, ts, steps):
    def run():
        for i in range(steps):
            step(xs[i % len(xs)], ts[i % len(ts)])

    return run


def bench_case(name, case, steps, rounds, have_torch, gpu):
    xs, ts = batches(case)
    net, g_step = make_gpunn(case)
    fns = {"gpunn": looped(g_step, xs, ts, steps)}
    if have_torch:
        import torch

        _, t_step = make_torch(net)
        fns["torch"] = looped(
            t_step, [torch.from_numpy(x) for x in xs], [torch.from_numpy(t) for t in ts], steps
        )
    if name == "textbook":
        fns["gpunn_floor"] = looped(make_floor(make_gpunn(case)[0]), xs, ts, steps)
    if name == "relu100":
        fns["numpy_f64"] = looped(make_numpy(net, case), [x.astype(np.float64) for x in xs], ts, steps)
    res = interleaved(fns, rounds=rounds)
    rows = []
    for impl, r in res.items():
        rows.append(
            {
                "case": name,
                "impl": impl,
                "device": "cpu",
                "step_us": r["median_s"] / steps * 1e6,
                "samples_per_s": steps * case["batch"] / r["median_s"],
            }
        )
    base = "numpy_f64" if name == "relu100" else "torch"
    ref = next((r for r in rows if r["impl"] == base), None)
    for r in rows:
        r["vs"] = base if ref else None
        r["ratio"] = r["samples_per_s"] / ref["samples_per_s"] if ref else None
    if gpu:
        cnet, c_step = make_gpunn(case, "cuda")
        dev = cnet.device
        cx = [dev.to_device(x) for x in xs]
        ct = [dev.to_device(t) for t in ts]
        r = interleaved({"gpunn_cuda": looped(c_step, cx, ct, steps)}, rounds=rounds, sync=dev.synchronize)
        t = r["gpunn_cuda"]["median_s"]
        rows.append(
            {
                "case": name,
                "impl": "gpunn",
                "device": dev.name,
                "step_us": t / steps * 1e6,
                "samples_per_s": steps * case["batch"] / t,
            }
        )
    return rows


def epoch_data():
    """60,000 training samples: Fashion-MNIST when installed, else uniform noise of that shape."""
    try:
        (x, t), _ = gpunn.datasets.load_fashion_mnist(download=False)
        return x[:60000], t[:60000], "Fashion-MNIST train"
    except gpunn.datasets.DatasetNotFoundError:
        rng = np.random.default_rng(0)
        return rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000), "random 60000x784"


def bench_epoch(repeat, have_torch):
    case = CASES["textbook"]
    x, t, what = epoch_data()
    times = {"gpunn": [], "torch": []}
    for r in range(repeat):
        net, _ = make_gpunn(case)
        trainer = gpunn.Trainer(
            net, gpunn.optim.Adam(lr=1e-3), epochs=1, batch_size=case["batch"], seed=r, progress=False
        )
        trainer.fit(x, t)
        times["gpunn"].append(trainer.history["epoch_time"][0])
        if have_torch:
            import torch

            model, t_step = make_torch(net)
            xt, tt = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))
            start = time.perf_counter()
            order = torch.from_numpy(np.random.default_rng(r).permutation(len(x)))
            for s in range(0, len(x), case["batch"]):
                idx = order[s : s + case["batch"]]
                t_step(xt[idx], tt[idx])
            times["torch"].append(time.perf_counter() - start)
    rows = []
    for impl, ts_ in times.items():
        if ts_:
            rows.append(
                {
                    "case": "epoch",
                    "impl": impl,
                    "device": "cpu",
                    "epoch_s": statistics.median(ts_),
                    "samples_per_s": len(x) / statistics.median(ts_),
                    "data": what,
                }
            )
    if len(rows) == 2:
        for r in rows:
            r["vs"], r["ratio"] = "torch", rows[1]["epoch_s"] / r["epoch_s"]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="textbook,bn,relu100,epoch")
    ap.add_argument("--steps", type=int, default=50, help="training steps per timed round")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median reported)")
    ap.add_argument("--epoch-repeat", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for every pool: OpenBLAS, Numba, torch (default: all cores)",
    )
    ap.add_argument(
        "--passive",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE for every OpenMP runtime (Numba's and torch's): idle "
        "workers sleep instead of spinning against OpenBLAS's threads",
    )
    ap.add_argument(
        "--numba-layer",
        default=None,
        choices=("workqueue", "omp", "tbb", "default"),
        help="Numba threading layer (default workqueue, gpunn's policy; omp: its OpenMP "
        "workers spin after each parallel region and fight OpenBLAS's threads)",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    bind_threads()
    import numba

    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
        have_torch = True
    except ImportError:
        have_torch = False
        print("torch: not installed (pip install torch==2.13.0): PyTorch rows skipped")
    gpu, why = cuda_status()
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "all cores")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"threads: {threads} (Numba, torch; OpenBLAS: {blas}); Numba layer: "
        f"{os.environ.get('NUMBA_THREADING_LAYER')}; OMP_WAIT_POLICY: "
        f"{os.environ.get('OMP_WAIT_POLICY', 'default')}; load average: {load}; "
        f"cuda: {'measured' if gpu else why}"
    )
    rows = []
    for name in args.cases.split(","):
        if name == "epoch":
            rows += bench_epoch(args.epoch_repeat, have_torch)
        else:
            rows += bench_case(name, CASES[name], args.steps, args.rounds, have_torch, gpu)
    print_table(
        rows,
        [
            ("case", "case", ""),
            ("impl", "impl", ""),
            ("device", "device", ""),
            ("step_us", "µs/step", "{:.1f}"),
            ("epoch_s", "s/epoch", "{:.2f}"),
            ("samples_per_s", "samples/s", "{:,.0f}"),
            ("ratio", "× baseline", "{:.2f}"),
            ("vs", "baseline", ""),
        ],
    )
    if not gpu:
        print(f"cuda: {why}")
    if args.json:
        write_json(args.json, {"rows": rows, "threads": threads, "cuda": "measured" if gpu else why})
    return rows


if __name__ == "__main__":
    main()
