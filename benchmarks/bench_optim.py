"""Benchmark gpunn's fused optimizer steps against the memory bandwidth, NumPy and PyTorch.

For each update rule, on a ``--size``-parameter float32 flat buffer (10M by default; one
FlatDict, so one kernel launch per step):

* gpunn's step time and effective bandwidth -- bytes read + written per parameter (SGD 12 B:
  read θ, g, write θ; Momentum/Nesterov/AdaGrad/RMSprop 20 B; AdaDelta/Adam/AdamW 28 B) ÷ time --
  next to the machine's streaming bandwidth measured in the same run (best of Numba ``prange``
  copy / in-place scale-add / triad, before and after the rules);
* the textbook NumPy version (``gpunn.optim.references``: one array operation at a time);
* ``torch.optim`` when installed (``fused=True`` and ``foreach=True``), with as many threads as
  Numba uses.

Then the step of the 784-64-16-10 MNIST network (six arrays, 51,450 parameters): gpunn's single
launch on the flat buffer for every rule, against PyTorch's fused and foreach Adam on six tensors.

Times are the median (and best) of ``--repeat`` samples.  ``--device cuda`` (or ``all``) measures a
real GPU when there is one, and otherwise prints ``cuda: not measured: no GPU``; the CUDA simulator
is never timed.  Run from the repository root::

    .venv/bin/python benchmarks/bench_optim.py --json benchmarks/results/optim.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
from _common import (
    StreamArrays,
    add_common_args,
    bind_threads,
    cuda_status,
    cuda_stream_bandwidth,
    interleaved,
    machine_info,
    print_table,
    timeit,
    timeit_blocks,
    write_json,
)

import gpunn
from gpunn import optim
from gpunn.optim import references
from gpunn.params import FlatLayout


def bytes_per_param(cls, itemsize: int = 4) -> int:
    """Memory traffic of one step per parameter: θ and g read, θ written, each state array read and
    written (SGD 12 B in float32, Adam 28 B)."""
    return itemsize * (3 + 2 * len(cls.slots))


BYTES = {cls.__name__: bytes_per_param(cls) for cls in optim.OPTIMIZERS}
"""Per parameter, float32, for every rule of the registry."""
ALL_CPUS = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
"""The CPUs this process may use, read before any OpenMP runtime pins a thread."""
TARGET_STREAM = 0.85  # every fused CPU rule: ≥ 85 % of the streaming bandwidth
TARGET_SMALL = 3.0  # small network: gpunn Adam ≥ 3× faster than torch's fused Adam
SMALL_SIZES = [784, 64, 16, 10]


def torch_optimizer(torch, name, params, **impl):
    """The torch.optim equivalent of gpunn's ``name`` with gpunn's defaults, or None if the
    implementation (fused / foreach) is not available for it, or torch.optim has no such rule."""
    o = torch.optim
    make = {
        "SGD": lambda: o.SGD(params, lr=0.01, **impl),
        "Momentum": lambda: o.SGD(params, lr=0.01, momentum=0.9, **impl),
        "Nesterov": lambda: o.SGD(params, lr=0.01, momentum=0.9, nesterov=True, **impl),
        "AdaGrad": lambda: o.Adagrad(params, lr=0.01, eps=1e-6, **impl),
        "AdaDelta": lambda: o.Adadelta(params, lr=1.0, rho=0.9, eps=1e-5, **impl),
        "RMSprop": lambda: o.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-8, **impl),
        "Adam": lambda: o.Adam(params, lr=1e-3, **impl),
        "AdamW": lambda: o.AdamW(params, lr=1e-3, weight_decay=0.01, **impl),
    }.get(name)
    if make is None:  # no twin listed here
        return None
    try:
        opt = make()
        opt.step()
        return opt
    except (RuntimeError, ValueError, TypeError, NotImplementedError):
        return None


def flat_buffers(dev, n, seed=0):
    """A FlatDict pair of ``n`` float32 parameters on ``dev``: a weight (decayed) and a bias."""
    nb = min(1024, n // 2)
    layout = FlatLayout([("W", (n - nb,), True), ("b", (nb,), False)])
    rng = np.random.default_rng(seed)
    p = layout.views(dev.to_device(rng.standard_normal(n).astype(np.float32)), dev)
    g = layout.views(dev.to_device((0.01 * rng.standard_normal(n)).astype(np.float32)), dev)
    return p, g


def pause():
    """Let the previous measurement's spinning worker threads go idle before the next one."""
    time.sleep(0.05)


def bench_cpu_rules(args):
    """gpunn's step on the flat buffer, timed in rotation with the stream kernels, and NumPy's."""
    cpu = gpunn.device("cpu")
    n = args.size
    stream = StreamArrays(n)
    rows = []
    for cls in optim.OPTIMIZERS:
        name = cls.__name__
        params, grads = flat_buffers(cpu, n)
        opt = cls()
        opt.update(params, grads)  # compile (or load from cache) and create the state
        pause()
        calls = {
            "gpunn": lambda opt=opt, params=params, grads=grads: opt.update(params, grads),
            **stream.calls(),
        }
        t = interleaved(calls, rounds=args.repeat)
        bw = stream.gbs(t)
        ref_best = max(bw.values(), key=lambda k: k["best_gbs"])["best_gbs"]
        ref_median = max(bw.values(), key=lambda k: k["median_gbs"])["median_gbs"]
        nbytes = BYTES[name] * n
        row = {
            "rule": name,
            "bytes_per_param": BYTES[name],
            "gpunn_ms": t["gpunn"]["median_s"] * 1e3,
            "gpunn_best_ms": t["gpunn"]["best_s"] * 1e3,
            "gpunn_gbs": nbytes / t["gpunn"]["median_s"] / 1e9,
            "gpunn_best_gbs": nbytes / t["gpunn"]["best_s"] / 1e9,
            "stream": bw,
            "stream_median_gbs": ref_median,
            "stream_best_gbs": ref_best,
        }
        row["pct_stream"] = 100 * row["gpunn_gbs"] / ref_median
        row["pct_stream_best"] = 100 * row["gpunn_best_gbs"] / ref_best
        # back to back, as torch.optim is timed (the second thread's half of the buffer may still
        # be in the last-level cache from the previous step): the figure compared with torch
        pause()
        t = timeit_blocks(calls["gpunn"], repeat=args.repeat)
        row["gpunn_b2b_ms"] = t["median_s"] * 1e3
        del params, grads, opt, calls

        p = {"W": np.random.default_rng(1).standard_normal(n).astype(np.float32)}
        g = {"W": (0.01 * np.random.default_rng(2).standard_normal(n)).astype(np.float32)}
        naive = getattr(references, name)()
        naive.update(p, g)
        t = timeit(
            lambda naive=naive, p=p, g=g: naive.update(p, g), repeat=max(3, args.repeat // 4), warmup=1
        )
        row["numpy_ms"] = t["median_s"] * 1e3
        del p, g, naive
        rows.append(row)
        print(f"  {name}: {row['gpunn_ms']:.2f} ms, {row['pct_stream']:.0f}% of stream", flush=True)
    return rows


def bench_small_net(args):
    """gpunn: one optimizer step of the 784-64-16-10 network (six arrays, one launch)."""
    net = gpunn.MLP(SMALL_SIZES[0], SMALL_SIZES[1:-1], SMALL_SIZES[-1], device="cpu", seed=0)
    rng = np.random.default_rng(0)
    net.grads.flat[...] = (0.01 * rng.standard_normal(net.grads.flat.size)).astype(np.float32)
    out = {"n_params": int(net.n_params), "arrays": len(net.params), "gpunn_us": {}}
    for cls in optim.OPTIMIZERS:
        opt = cls()
        opt.update(net.params, net.grads)
        pause()
        t = timeit_blocks(lambda opt=opt: opt.update(net.params, net.grads), repeat=max(args.repeat, 30))
        out["gpunn_us"][cls.__name__] = {"median": t["median_s"] * 1e6, "best": t["best_s"] * 1e6}
    return out


def torch_worker(args):
    """(Run in its own process, so PyTorch's OpenMP pool never competes with Numba's.)
    torch.optim fused / foreach on the big buffer for every rule, and Adam on the six arrays of
    the small network.  Prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    n = args.size
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rules": {}, "small_net": {}}
    # the small network first, before the big buffers have churned the allocator
    net = gpunn.MLP(SMALL_SIZES[0], SMALL_SIZES[1:-1], SMALL_SIZES[-1], device="cpu", seed=0)
    rng = np.random.default_rng(0)
    for impl in ("fused", "foreach"):
        tensors = [torch.from_numpy(np.array(a)) for a in net.params.values()]
        for tp in tensors:
            tp.grad = torch.from_numpy((0.01 * rng.standard_normal(tuple(tp.shape))).astype(np.float32))
        topt = torch_optimizer(torch, "Adam", tensors, **{impl: True})
        if topt is not None:
            pause()
            t = timeit_blocks(topt.step, repeat=max(args.repeat, 30))
            out["small_net"][f"adam_{impl}"] = {"median": t["median_s"] * 1e6, "best": t["best_s"] * 1e6}
    for cls in optim.OPTIMIZERS:
        name = cls.__name__
        row = out["rules"][name] = {}
        for impl in ("fused", "foreach"):
            tp = torch.from_numpy(np.random.default_rng(1).standard_normal(n).astype(np.float32))
            g = (0.01 * np.random.default_rng(2).standard_normal(n)).astype(np.float32)
            tp.grad = torch.from_numpy(g)
            topt = torch_optimizer(torch, name, [tp], **{impl: True})
            if topt is not None:
                pause()
                t = timeit_blocks(topt.step, repeat=args.repeat)
                row[impl] = {"median_ms": t["median_s"] * 1e3, "best_ms": t["best_s"] * 1e3}
            del tp, topt
    print(json.dumps(out))


def run_torch_worker(args):
    """torch_worker in a subprocess (same interpreter, same environment); None without torch."""
    import numba

    if importlib.util.find_spec("torch") is None:
        return None
    cmd = [
        sys.executable,
        __file__,
        "--torch-worker",
        "--size",
        str(args.size),
        "--repeat",
        str(args.repeat),
        "--threads",
        str(numba.get_num_threads()),
    ]
    # with OMP_PROC_BIND, the OpenMP runtime has pinned this (main) thread to one CPU; a child
    # would inherit that mask and run all of torch's threads on one CPU: give it every CPU back
    cpus = ALL_CPUS
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    if proc.returncode != 0:
        print(f"torch.optim: the worker failed:\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_cuda(args):
    """gpunn's rules on a real GPU (CuPy buffers); only called when one is usable."""
    dev = gpunn.device("cuda", strict=True)
    n = args.size
    out = {"device": dev.name, "stream": cuda_stream_bandwidth(dev), "rules": []}
    for cls in optim.OPTIMIZERS:
        params, grads = flat_buffers(dev, n)
        opt = cls()
        opt.update(params, grads)
        dev.synchronize()
        t = timeit(
            lambda opt=opt, params=params, grads=grads: opt.update(params, grads),
            repeat=args.repeat,
            sync=dev.synchronize,
        )
        name = cls.__name__
        out["rules"].append(
            {
                "rule": name,
                "gpunn_us": t["median_s"] * 1e6,
                "gpunn_gbs": BYTES[name] * n / t["median_s"] / 1e9,
            }
        )
    net = gpunn.MLP(SMALL_SIZES[0], SMALL_SIZES[1:-1], SMALL_SIZES[-1], device=dev, seed=0)
    opt = optim.Adam()
    opt.update(net.params, net.grads)
    t = timeit(lambda: opt.update(net.params, net.grads), repeat=max(args.repeat, 30), sync=dev.synchronize)
    out["small_net_adam_us"] = t["median_s"] * 1e6
    return out


def _add_torch(args, rows, small):
    """torch.optim's timings (measured in its own process) added to the rows, unless --no-torch."""
    tw = None if args.no_torch else run_torch_worker(args)
    if tw is None:
        return
    print(f"  torch {tw['torch']}: measured in its own process, {tw['threads']} threads", flush=True)
    for row in rows:
        for impl, t in tw["rules"][row["rule"]].items():
            row[f"torch_{impl}_ms"] = t["median_ms"]
            row[f"torch_{impl}_best_ms"] = t["best_ms"]
        if row.get("torch_fused_ms"):
            row["speedup_vs_torch_fused"] = row["torch_fused_ms"] / row["gpunn_b2b_ms"]
    small["torch_us"] = tw["small_net"]


def _print_cpu(args, rows, small):
    """The rules' table and the small network's table."""
    print(
        f"\nOne step on {args.size:,} float32 parameters.  "
        f"gpunn ms, GB/s: median of {args.repeat} rounds, "
        "each timing the step and the stream kernels\n(copy, in-place scale-add, triad; own arrays, "
        "cold cache) in turn.  GB/s = bytes/param x n / time.  % stream = gpunn GB/s / the best\n"
        "stream kernel's GB/s (median/median and best/best).  b2b ms: steps back to back, as torch "
        "is timed (in its own process; best of 3 blocks for both); x torch = torch fused ms / b2b ms."
    )
    print_table(
        rows,
        [
            ("rule", "rule", ""),
            ("bytes_per_param", "B/param", "{}"),
            ("gpunn_ms", "gpunn ms", "{:.2f}"),
            ("gpunn_gbs", "GB/s", "{:.1f}"),
            ("stream_median_gbs", "stream GB/s", "{:.1f}"),
            ("pct_stream", "% stream", "{:.0f}"),
            ("pct_stream_best", "% (best)", "{:.0f}"),
            ("numpy_ms", "NumPy ms", "{:.1f}"),
            ("gpunn_b2b_ms", "b2b ms", "{:.2f}"),
            ("torch_fused_ms", "torch fused ms", "{:.2f}"),
            ("torch_foreach_ms", "torch foreach ms", "{:.2f}"),
            ("speedup_vs_torch_fused", "x torch", "{:.2f}"),
        ],
    )
    net = "-".join(map(str, SMALL_SIZES))
    print(
        f"\nOne step of the {net} network ({small['n_params']:,} parameters, "
        f"{small['arrays']} arrays; gpunn: one launch on the flat buffer), steps back to back, "
        "best of 3 blocks"
    )
    small_rows = [
        {"impl": f"gpunn {k}", "median": v["median"], "best": v["best"]} for k, v in small["gpunn_us"].items()
    ]
    for impl, t in small.get("torch_us", {}).items():
        small_rows.append({"impl": f"torch {impl.replace('_', ' ')}", **t})
    print_table(
        small_rows,
        [("impl", "implementation", ""), ("median", "median us", "{:.1f}"), ("best", "best us", "{:.1f}")],
    )


def _cpu_targets(args, rows, small):
    """The targets (streaming bandwidth; Adam against torch's fused Adam), printed and returned."""
    targets = {
        "stream_pct_min": min(r["pct_stream"] for r in rows),
        "stream_pct_best_min": min(r["pct_stream_best"] for r in rows),
    }
    adam = next(r for r in rows if r["rule"] == "Adam")
    if adam.get("torch_fused_ms"):
        targets["adam_vs_torch_fused_big"] = adam["torch_fused_ms"] / adam["gpunn_b2b_ms"]
    if "adam_fused" in small.get("torch_us", {}):
        targets["adam_vs_torch_fused_small"] = (
            small["torch_us"]["adam_fused"]["median"] / small["gpunn_us"]["Adam"]["median"]
        )
    print("\nTargets:")
    ok = targets["stream_pct_min"] >= 100 * TARGET_STREAM
    print(
        f"  every rule >= {TARGET_STREAM:.0%} of streaming bandwidth: "
        f"lowest {targets['stream_pct_min']:.0f}% "
        f"(medians), {targets['stream_pct_best_min']:.0f}% (bests) -> {'met' if ok else 'MISSED'}"
    )
    if "adam_vs_torch_fused_big" in targets:
        x = targets["adam_vs_torch_fused_big"]
        print(
            f"  Adam at least as fast as torch fused Adam ({args.size:,}): {x:.2f}x -> "
            f"{'met' if x >= 1 else 'MISSED'}"
        )
    if "adam_vs_torch_fused_small" in targets:
        x = targets["adam_vs_torch_fused_small"]
        print(
            f"  Adam >= {TARGET_SMALL:.0f}x torch fused Adam on the small network: {x:.2f}x -> "
            f"{'met' if x >= TARGET_SMALL else 'MISSED'}"
        )
    return targets


def _bench_cpu_all(args, result):
    """The CPU part: every rule on the big buffer, the small network, torch when there."""
    info = machine_info()
    print(
        f"cpu: {info.get('cpu')}, {info['numba_threads']} Numba threads, "
        f"OMP_PROC_BIND={os.environ.get('OMP_PROC_BIND', '(unset)')}; "
        f"{args.size:,} float32 parameters, {args.repeat} rounds",
        flush=True,
    )
    rows = bench_cpu_rules(args)
    small = bench_small_net(args)
    _add_torch(args, rows, small)
    _print_cpu(args, rows, small)
    result["cpu"] = {"rules": rows, "small_net": small}
    result["cpu"]["targets"] = _cpu_targets(args, rows, small)


def _bench_cuda_all(args, result):
    """The CUDA part, or the reason it was not measured."""
    ok, reason = cuda_status()
    if not ok:
        print(f"\ncuda: {reason}")
        result["cuda"] = reason
    else:
        cuda = bench_cuda(args)
        result["cuda"] = cuda
        print(f"\ncuda ({cuda['device']}): copy bandwidth {cuda['stream']['copy_best_gbs']:.0f} GB/s")
        print_table(
            cuda["rules"],
            [("rule", "rule", ""), ("gpunn_us", "gpunn us", "{:.1f}"), ("gpunn_gbs", "GB/s", "{:.0f}")],
        )
        print(f"small network Adam step: {cuda['small_net_adam_us']:.1f} us")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, size=10_000_000, repeat=20)
    parser.add_argument("--no-torch", action="store_true", help="skip torch.optim even if installed")
    parser.add_argument(
        "--no-bind",
        action="store_true",
        help="do not set OMP_PROC_BIND=true (see benchmarks/_common.py: bind_threads)",
    )
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.no_bind:
        bind_threads()
    if args.torch_worker:
        return torch_worker(args)
    result = {"size": args.size, "repeat": args.repeat, "dtype": "float32"}

    if args.device in ("cpu", "all"):
        _bench_cpu_all(args, result)
    if args.device in ("cuda", "all"):
        _bench_cuda_all(args, result)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
