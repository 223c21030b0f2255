"""Benchmark gpunn's fused BatchNorm kernels against the textbook NumPy version and PyTorch.

For float32 batches of shape (N, C) -- 4096×1024 and 64×64 by default -- in training mode:

* ``gpunn``: :class:`gpunn.batchnorm.BatchNorm` forward (batch statistics, running-statistics update,
  normalisation: one CPU kernel call) + backward (dγ, dβ, dx: one call); also forward alone,
  backward alone and the evaluation-mode forward.  The layer runs as inside :class:`gpunn.MLP`
  (``inplace``: ``y`` and ``dx`` written into buffers reused from call to call; PyTorch's autograd
  allocates both each step);
* ``numpy``: the textbook multi-operation version (``gpunn.batchnorm.batchnorm_forward_reference`` /
  ``batchnorm_backward_reference``, Saito's code: ~20 array operations);
* ``torch``: ``torch.nn.BatchNorm1d`` forward + ``backward`` (when torch is installed), with as many
  threads as gpunn uses (``numba.get_num_threads()``).

gpunn and torch are timed in the same process, in turns of ``TURN`` calls each per round
(``_common.interleaved``), so a change in the machine's state (another tenant's memory traffic) hits
both alike, while each is timed in its own steady state (alternating single calls of two libraries
on 16 MB arrays flushes the other's data from the caches and slowed both by 1.5-2× here).  The
ratio is taken round by round (median of the per-round ratios).  gpunn's CPU BatchNorm runs its row
chunks on its own helper threads, which sleep between calls, so torch's OpenMP pool has the cores
to itself during its turn.

The effective bandwidth of gpunn's forward+backward counts the bytes it must move (x read twice and
y written in forward; x, dy read twice and dx written in backward: 8 × N·C·4 bytes) next to the
machine's streaming bandwidth measured in the same run.  Times are medians of interleaved repeats
(gpunn's and torch's turns in each round; then the NumPy reference).
``--device cuda``/``all`` measures a real GPU when there is one, else prints
``cuda: not measured: no GPU``.  Run from the repository root::

    .venv/bin/python benchmarks/bench_batchnorm.py --json benchmarks/results/batchnorm.json
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
from _common import (
    bind_threads,
    cuda_status,
    interleaved,
    machine_info,
    print_table,
    stream_bandwidth,
    write_json,
)

import gpunn
from gpunn.batchnorm import BatchNorm, batchnorm_backward_reference, batchnorm_forward_reference

SHAPES = [(4096, 1024), (64, 64)]
TURN = 6
"""Consecutive calls per library per round (the first not counted): see ``_common.interleaved``."""
TARGET = "gpunn forward+backward on 4096x1024 no slower than torch.nn.BatchNorm1d (CPU)"


def _data(n, c, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal((n, c)).astype(np.float32)
    return x, dy


def cpu_calls(n, c) -> tuple[dict, dict]:
    """``{name: callable}`` of gpunn, and of the NumPy reference, for one shape on the CPU."""
    x, dy = _data(n, c)
    bn = BatchNorm("cpu", c)
    bn.inplace = True  # as inside gpunn.MLP: y and dx go to buffers reused from step to step
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)

    def gpunn_fb():
        bn.forward(x, True)
        bn.backward(dy)

    def numpy_fb():
        _, cache = batchnorm_forward_reference(x, gamma, beta, rm, rv)
        batchnorm_backward_reference(dy, cache)

    bn.forward(x, True)  # compile, and leave a training forward for the backward-only timing
    gpunn_calls = {
        "gpunn fwd+bwd": gpunn_fb,
        "gpunn fwd (train)": lambda: bn.forward(x, True),
        "gpunn bwd": lambda: bn.backward(dy),
        "gpunn fwd (eval)": lambda: bn.forward(x, False),
    }
    return gpunn_calls, {"numpy fwd+bwd": numpy_fb}


def torch_calls(torch, n, c) -> dict:
    x, dy = _data(n, c)
    tb = torch.nn.BatchNorm1d(c)
    xt = torch.from_numpy(x).requires_grad_()
    dyt = torch.from_numpy(dy)

    def torch_fb():
        xt.grad = None
        tb.zero_grad(set_to_none=True)
        tb(xt).backward(dyt)

    def torch_eval():
        tb.eval()
        with torch.no_grad():
            tb(xt)
        tb.train()

    return {"torch fwd+bwd": torch_fb, "torch fwd (eval)": torch_eval}


def agreement_data(torch, n, c) -> dict:
    """torch's (y, dx, dγ, dβ) for :func:`check_agreement`."""
    x, dy = _data(n, c, seed=1)
    tb = torch.nn.BatchNorm1d(c)
    xt = torch.from_numpy(x).requires_grad_()
    yt = tb(xt)
    yt.backward(torch.from_numpy(dy))
    return {
        "y": yt.detach().numpy().tolist(),
        "dx": xt.grad.numpy().tolist(),
        "dgamma": tb.weight.grad.numpy().tolist(),
        "dbeta": tb.bias.grad.numpy().tolist(),
    }


def check_agreement(n, c, ref) -> float:
    """Max relative difference of gpunn's (y, dx, dγ, dβ) from PyTorch's (sanity check of what is timed)."""
    x, dy = _data(n, c, seed=1)
    bn = BatchNorm("cpu", c)
    y = bn.forward(x, True)
    dx = bn.backward(dy)
    pairs = [(y, ref["y"]), (dx, ref["dx"]), (bn.dgamma, ref["dgamma"]), (bn.dbeta, ref["dbeta"])]
    return max(float(np.abs(a - np.asarray(b)).max() / np.abs(np.asarray(b)).max()) for a, b in pairs)


def load_torch(threads: int):
    """torch with ``threads`` intra-op threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def bench_cpu(shapes, rounds, torch) -> list[dict]:
    rows = []
    for n, c in shapes:
        ours, reference = cpu_calls(n, c)
        calls = dict(ours)
        if torch is not None:
            calls.update(torch_calls(torch, n, c))
        t = interleaved(calls, rounds=rounds, warmup=2, keep=True, turn=TURN)
        # the NumPy reference after the others: its many N×C temporaries churn the heap and caches
        t.update(interleaved(reference, rounds=max(3, rounds // 3), warmup=1))
        nbytes = 8 * n * c * 4
        row = {"shape": f"{n}x{c}", "n": n, "c": c}
        for name, r in t.items():
            row[name] = r["median_s"]
            row[name + " best"] = r["best_s"]
        row["gpunn fwd+bwd GB/s"] = nbytes / row["gpunn fwd+bwd"] / 1e9
        row["vs numpy"] = row["numpy fwd+bwd"] / row["gpunn fwd+bwd"]
        if torch is not None:
            per_round = [
                b / a for a, b in zip(t["gpunn fwd+bwd"]["all_s"], t["torch fwd+bwd"]["all_s"], strict=True)
            ]
            row["vs torch"] = statistics.median(per_round)
            m = min(n, 512)
            row["max rel diff vs torch"] = check_agreement(m, c, agreement_data(torch, m, c))
        rows.append(row)
    return rows


def bench_cuda(shapes, rounds) -> list[dict]:
    from _common import cuda_sync

    dev = gpunn.device("cuda", strict=True)
    sync = cuda_sync(dev)
    rows = []
    with dev:
        for n, c in shapes:
            x, dy = (dev.to_device(a) for a in _data(n, c))
            bn = BatchNorm(dev, c)
            bn.forward(x, True)
            bn.backward(dy)

            def fb(bn=bn, x=x, dy=dy):
                bn.forward(x, True)
                bn.backward(dy)

            calls = {
                "gpunn fwd+bwd": fb,
                "gpunn fwd (train)": lambda bn=bn, x=x: bn.forward(x, True),
                "gpunn fwd (eval)": lambda bn=bn, x=x: bn.forward(x, False),
            }
            t = interleaved(calls, rounds=rounds, warmup=3, sync=sync)
            row = {"shape": f"{n}x{c}"}
            for name, r in t.items():
                row[name] = r["median_s"]
            row["gpunn fwd+bwd GB/s"] = 8 * n * c * 4 / row["gpunn fwd+bwd"] / 1e9
            rows.append(row)
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30, help="interleaved repeats (default 30)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--shapes", nargs="+", default=None, metavar="NxC", help="default: 4096x1024 64x64")
    args = ap.parse_args(argv)
    bind_threads()
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes] if args.shapes else SHAPES
    import numba

    payload = {"benchmark": "batchnorm", "dtype": "float32", "target": TARGET, "units": "seconds (median)"}
    if args.device in ("cpu", "all"):
        torch = None if args.no_torch else load_torch(numba.get_num_threads())
        bw = stream_bandwidth(n=8_000_000, repeat=5)
        rows = bench_cpu(shapes, args.rounds, torch)
        payload["cpu"] = {
            "stream_best_gbs": bw["best_gbs"],
            "results": rows,
            "torch": None if torch is None else torch.__version__,
            "torch_threads": None if torch is None else torch.get_num_threads(),
            "threads": numba.get_num_threads(),
        }
        cols = [("shape", "shape", "")]
        for name in rows[0]:
            if name in ("shape", "n", "c") or name.endswith(" best"):
                continue
            if "diff" in name:
                cols.append((name, "rel diff vs torch", "{:.1e}"))
            elif "vs" in name or "GB/s" in name:
                cols.append((name, name.replace("gpunn ", ""), "{:.2f}"))
            else:
                cols.append((name, name + " µs", "{:.1f}"))
        shown = [
            {k: v * 1e6 if any(k == c[0] and c[1].endswith("µs") for c in cols) else v for k, v in r.items()}
            for r in rows
        ]
        print(
            f"cpu ({numba.get_num_threads()} threads, streaming bandwidth {bw['best_gbs']:.1f} GB/s), "
            "medians:"
        )
        print_table(shown, cols)
        big = next((r for r in rows if (r["n"], r["c"]) == (4096, 1024)), None)
        if big is not None and torch is not None:
            ok = big["vs torch"] >= 1.0
            payload["cpu"]["target_met"] = ok
            print(
                f"target ({TARGET}): {'met' if ok else 'NOT met'} -- medians: gpunn "
                f"{big['gpunn fwd+bwd'] * 1e3:.2f} ms, torch {big['torch fwd+bwd'] * 1e3:.2f} ms; "
                f"median of the per-round ratios {big['vs torch']:.2f}x; best of {args.rounds}: gpunn "
                f"{big['gpunn fwd+bwd best'] * 1e3:.2f} ms, torch {big['torch fwd+bwd best'] * 1e3:.2f} ms "
                f"({big['torch fwd+bwd best'] / big['gpunn fwd+bwd best']:.2f}x)"
            )
    if args.device in ("cuda", "all"):
        ok, why = cuda_status()
        if ok:
            payload["cuda"] = {"results": bench_cuda(shapes, args.rounds)}
            for r in payload["cuda"]["results"]:
                print(
                    f"cuda {r['shape']}: fwd+bwd {r['gpunn fwd+bwd'] * 1e6:.1f} µs "
                    f"({r['gpunn fwd+bwd GB/s']:.0f} GB/s)"
                )
        else:
            payload["cuda"] = why
            print(f"cuda: {why}")
    if args.json:
        write_json(args.json, payload)
    else:
        payload["machine"] = machine_info()
    return payload


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
