"""CPU vs GPU: the same network, the same number of Adam steps, on every device this machine has.

Two networks, on random MNIST-shaped batches (the speed does not depend on the pixel values):

* the textbook network 784-64-16-10 (Sigmoid, Tanh), batch 64 -- small: launch- and
  Python-bound on a GPU;
* a BatchNorm MLP 784-1024-1024-10 (ReLU), batch 1024 -- GEMM-bound.

Each runs ``grads = net.gradient(x, t); optimizer.update(net.params, grads)`` for ``--steps``
steps on the CPU and, when a real GPU is present, on CUDA, and prints samples/second and the
GPU/CPU speedup.  With PyTorch installed it adds PyTorch CPU rows (same architecture, initial
weights, batch and optimizer; ``torch.optim.Adam(fused=True)``).  Without a GPU it says so: the
CUDA simulator is never timed.

    python examples/speed_comparison.py              # ~1 min on a 2-core CPU
    python examples/speed_comparison.py --steps 50
"""

from __future__ import annotations

import argparse
import os
import time

# Thread policy for small machines (set before NumPy, Numba or torch start their thread pools; see
# benchmarks/RESULTS.md): pin OpenMP workers to cores, and run Numba's parallel kernels on its
# workqueue layer, whose idle workers sleep -- OpenMP workers spin after each parallel region and
# fight OpenBLAS's threads for the cores (a 784-1024-1024-10 step took 2x longer that way here).
os.environ.setdefault("OMP_PROC_BIND", "true")
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import numpy as np  # noqa: E402

import gpunn  # noqa: E402
from gpunn.torch_mirror import to_torch  # noqa: E402

NETWORKS = {
    "textbook 784-64-16-10": dict(
        sizes=[784, 64, 16, 10], act=["sigmoid", "tanh"], batch=64, bn=False, steps=300
    ),
    "BatchNorm 784-1024-1024-10": dict(sizes=[784, 1024, 1024, 10], act="relu", batch=1024, bn=True, steps=8),
}


def gpu_status():
    """(True, "") when a real GPU can be timed, else (False, why)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return False, "the CUDA simulator is on (never timed)"
    if not gpunn.cuda_available():
        return False, "no GPU on this machine"
    return True, ""


def batches(spec, n=8, seed=0):
    rng = np.random.default_rng(seed)
    b = spec["batch"]
    return (
        [rng.random((b, spec["sizes"][0]), dtype=np.float32) for _ in range(n)],
        [rng.integers(0, spec["sizes"][-1], b) for _ in range(n)],
    )


def time_gpunn(spec, device, steps, xs, ts):
    net = gpunn.MLP(
        spec["sizes"][0],
        spec["sizes"][1:-1],
        spec["sizes"][-1],
        activation=spec["act"],
        batchnorm=spec["bn"],
        device=device,
        seed=0,
    )
    dev = net.device
    opt = gpunn.optim.Adam(lr=1e-3)
    xs = [dev.to_device(x) for x in xs]
    ts = [dev.to_device(t) for t in ts]

    def step(i):
        opt.update(net.params, net.gradient(xs[i % len(xs)], ts[i % len(ts)]))

    for i in range(3):  # compile, allocate the per-batch buffers
        step(i)
    dev.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    dev.synchronize()
    return time.perf_counter() - t0, net


def time_torch(net, steps, xs, ts):
    import torch

    model = to_torch(net)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs = [torch.from_numpy(x) for x in xs]
    ts = [torch.from_numpy(t) for t in ts]

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xs[i % len(xs)]), ts[i % len(ts)]).backward()
        opt.step()

    for i in range(3):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per network and device (default: 300 textbook, 8 BatchNorm)",
    )
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    args = ap.parse_args(argv)
    gpu, why = gpu_status()
    try:
        if args.no_torch:
            raise ImportError
        import torch

        have_torch = True
    except ImportError:
        have_torch = False
    import numba

    print(
        f"CPU: {os.cpu_count()} cores, {numba.get_num_threads()} Numba threads "
        f"({os.environ['NUMBA_THREADING_LAYER']} layer); "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(f"{'network':28s} {'implementation':16s} {'device':8s} {'steps':>6s} {'samples/s':>12s}")
    summary = []
    for name, spec in NETWORKS.items():
        steps = args.steps or spec["steps"]
        xs, ts = batches(spec)
        n = steps * spec["batch"]
        t_cpu, net = time_gpunn(spec, "cpu", steps, xs, ts)
        print(f"{name:28s} {'gpunn':16s} {'cpu':8s} {steps:6d} {n / t_cpu:12,.0f}")
        if have_torch:
            t_torch = time_torch(net, steps, xs, ts)
            impl = "PyTorch " + torch.__version__
            print(f"{name:28s} {impl:16s} {'cpu':8s} {steps:6d} {n / t_torch:12,.0f}")
        if gpu:
            t_gpu, _ = time_gpunn(spec, "cuda", steps, xs, ts)
            print(f"{name:28s} {'gpunn':16s} {'cuda':8s} {steps:6d} {n / t_gpu:12,.0f}")
            summary.append(f"{name}: GPU/CPU speedup {t_cpu / t_gpu:.1f}x")
        else:
            print(f"{name:28s} {'gpunn':16s} {'cuda':8s} {'':6s} {'not measured':>12s}")
    for line in summary:
        print(line)
    if not gpu:
        print(f"CUDA was not measured: {why}.  Only CPU speeds are shown.")


if __name__ == "__main__":
    main()
