"""Helpers shared by gpunn's benchmarks (``benchmarks/bench_*.py``).

* :func:`timeit` -- median (and best) seconds per call over repeats, each repeat looping the call
  enough times to last ``min_sample_s`` (so microsecond calls are timed without timer noise), with
  an optional ``sync`` called before reading the clock (a GPU stream synchronise);
  :func:`timeit_blocks` -- the best of a few such blocks, for steps whose timing swings.
* :func:`interleaved` -- several callables timed in rotation, so drifts of a shared machine hit
  all of them alike (the way to compare a kernel with the streaming bandwidth).
* :func:`stream_bandwidth` / :class:`StreamArrays` -- the machine's streaming memory bandwidth,
  measured in the same run with Numba ``prange`` kernels (copy, in-place scale-add, triad), each
  on arrays of its own, from a cold last-level cache.
* :func:`bind_threads` -- ``OMP_PROC_BIND=true`` (why: see its docstring).
* :func:`cuda_status` -- whether a real GPU can be measured, and the line to print when it cannot
  (``"cuda: not measured: no GPU"``).  The CUDA simulator is never timed.  :func:`cuda_sync`,
  :func:`cuda_stream_bandwidth` for real GPUs.
* :func:`machine_info`, :func:`write_json`, :func:`print_table`, :func:`add_common_args`.

Run benchmarks from the repository root: ``.venv/bin/python benchmarks/bench_optim.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parent))

NO_GPU = "not measured: no GPU"


# -- timing ------------------------------------------------------------------------------------
def timeit(fn, repeat: int = 20, warmup: int = 2, min_sample_s: float = 0.002, sync=None) -> dict:
    """Time ``fn()``: ``{"median_s", "best_s", "repeat", "number"}`` per call.

    Each of ``repeat`` samples runs ``fn`` ``number`` times back to back (``number`` chosen so a
    sample takes at least ``min_sample_s``), calling ``sync`` (if given) before each clock read.
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - t0, 1e-9)
    number = max(1, int(min_sample_s / once))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / number)
    return {
        "median_s": statistics.median(samples),
        "best_s": min(samples),
        "repeat": repeat,
        "number": number,
    }


def timeit_blocks(fn, blocks: int = 3, **kw) -> dict:
    """:func:`timeit` ``blocks`` times; the block with the lowest median, plus every block's median
    (``"block_medians_s"``).  For small steps whose timing swings with the state of a shared
    machine (thread wake-ups, other tenants): every implementation gets its best block."""
    runs = [timeit(fn, **kw) for _ in range(blocks)]
    best = min(runs, key=lambda r: r["median_s"])
    return {**best, "block_medians_s": [r["median_s"] for r in runs]}


def interleaved(
    fns: dict, rounds: int = 20, warmup: int = 1, sync=None, keep: bool = False, turn: int = 1
) -> dict:
    """Time several callables in rotation, so a change in the machine's state (another tenant,
    frequency, memory traffic) hits all of them alike: each round gives every callable a turn of
    ``turn`` consecutive calls.  With ``turn`` > 1 the first call of a turn is not counted and a
    sample is the median of the rest: each callable is then timed in its own steady state (its
    arrays in the caches), as when it runs alone, rather than right after another library has
    flushed them.

    Returns ``{name: {"median_s", "best_s", "samples"}}`` (seconds per call), with every round's
    sample as ``"all_s"`` if ``keep`` (for per-round ratios).
    """
    sync = sync or (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times = []
            for _ in range(turn):
                t0 = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - t0)
            samples[name].append(statistics.median(times[1:]) if turn > 1 else times[0])
    return {
        name: {
            "median_s": statistics.median(s),
            "best_s": min(s),
            "samples": len(s),
            **({"all_s": s} if keep else {}),
        }
        for name, s in samples.items()
    }


# -- streaming bandwidth -------------------------------------------------------------------------
@njit(parallel=True, error_model="numpy", cache=True)
def _copy(a, b):
    for i in prange(a.size):
        a[i] = b[i]


@njit(parallel=True, error_model="numpy", cache=True)
def _scale_add(a, b, s):
    for i in prange(a.size):
        a[i] += s * b[i]


@njit(parallel=True, error_model="numpy", cache=True)
def _triad(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


STREAM_KERNELS = {  # name: (bytes moved per element in units of the itemsize, call)
    "copy": (2, lambda a, b, c, s: _copy(a, b)),  # read b, write a
    "scale_add": (3, lambda a, b, c, s: _scale_add(a, b, s)),  # read a, b, write a (in place)
    "triad": (3, lambda a, b, c, s: _triad(a, b, c, s)),  # read b, c, write a
}


class StreamArrays:
    """The stream kernels over arrays of ``n`` elements, for :func:`interleaved`.

    Each kernel gets arrays of its own: run in rotation, a kernel must not find the previous
    kernel's arrays still in the last-level cache (an in-place scale-add right after a copy of the
    same arrays reads the copy's tail from L3 and looks up to ~1.7x faster than memory allows).
    """

    def __init__(self, n: int, dtype="float32"):
        rng = np.random.default_rng(0)
        self.n = n
        self.arrays = {
            name: [rng.random(n).astype(dtype) for _ in range(3 if name == "triad" else 2)]
            for name in STREAM_KERNELS
        }
        self.s = np.dtype(dtype).type(1e-3)
        self.itemsize = np.dtype(dtype).itemsize

    def calls(self) -> dict:
        out = {}
        for name, (_, call) in STREAM_KERNELS.items():
            a, b, *c = self.arrays[name]
            out[f"stream_{name}"] = lambda call=call, a=a, b=b, c=(c[0] if c else None): call(a, b, c, self.s)
        return out

    def gbs(self, timings: dict) -> dict:
        """``{kernel: {"best_gbs", "median_gbs"}}`` from :func:`interleaved` timings of :meth:`calls`."""
        out = {}
        for name, (words, _) in STREAM_KERNELS.items():
            t = timings[f"stream_{name}"]
            nbytes = words * self.itemsize * self.n
            out[name] = {"best_gbs": nbytes / t["best_s"] / 1e9, "median_gbs": nbytes / t["median_s"] / 1e9}
        return out


def stream_bandwidth(n: int = 10_000_000, repeat: int = 10, dtype="float32") -> dict:
    """Streaming bandwidth of this machine with Numba's threads, in GB/s (1e9 B/s).

    The three kernels run in rotation (:func:`interleaved`, each on arrays of its own, from a cold
    last-level cache) ``repeat`` times.  Returns ``{"kernels": {name: {"best_gbs", "median_gbs"}},
    "best_gbs", "best_kernel", "median_gbs", "median_kernel"}``: the best kernel by its best
    repeat and by its median.  Bytes are counted as the kernel's reads and writes (the STREAM
    convention: a write-allocate read is not counted, which is why the in-place scale-add usually
    shows the highest figure on CPUs).
    """
    arrays = StreamArrays(n, dtype)
    out = arrays.gbs(interleaved(arrays.calls(), rounds=repeat, warmup=1))
    best = max(out, key=lambda k: out[k]["best_gbs"])
    median = max(out, key=lambda k: out[k]["median_gbs"])
    return {
        "n": n,
        "dtype": str(np.dtype(dtype)),
        "kernels": out,
        "best_gbs": out[best]["best_gbs"],
        "best_kernel": best,
        "median_gbs": out[median]["median_gbs"],
        "median_kernel": median,
    }


# -- threads ----------------------------------------------------------------------------------
def bind_threads() -> None:
    """Pin OpenMP threads to cores (``OMP_PROC_BIND=true`` unless already set), for Numba's ``omp``
    threading layer and PyTorch alike.  Call before the first parallel region runs.

    Why: on a small VM (2 vCPUs here) an unbound OpenMP worker can end up on the same CPU as the
    main thread; the spin-wait at the end of each parallel region then burns a whole scheduler
    time slice, and every region takes ~8 ms however little work it has, until the scheduler
    separates them again.  Seen here at random in about half the runs of identical commands, for
    gpunn's kernels and torch.optim alike; binding removed it in every run.
    """
    os.environ.setdefault("OMP_PROC_BIND", "true")


# -- devices -------------------------------------------------------------------------------------
def cuda_status() -> tuple[bool, str]:
    """``(True, "")`` when a real GPU is usable, else ``(False, "not measured: no GPU")`` (the
    simulator never counts: timing it would be meaningless)."""
    import gpunn

    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return False, NO_GPU + " (the CUDA simulator is on; it is never timed)"
    return (True, "") if gpunn.cuda_available() else (False, NO_GPU)


def cuda_sync(dev):
    """A ``sync`` for :func:`timeit` on a GPU device."""
    return dev.synchronize


def cuda_stream_bandwidth(dev, n: int = 50_000_000, repeat: int = 10) -> dict:
    """Device-to-device copy bandwidth of a real GPU (CuPy), read + write, in GB/s."""
    xp = dev.xp
    with dev:
        a = xp.zeros(n, dtype=xp.float32)
        b = xp.ones(n, dtype=xp.float32)
        t = timeit(lambda: a.__setitem__(Ellipsis, b), repeat=repeat, sync=dev.synchronize)
    return {
        "n": n,
        "copy_best_gbs": 8 * n / t["best_s"] / 1e9,
        "copy_median_gbs": 8 * n / t["median_s"] / 1e9,
    }


# -- reporting -----------------------------------------------------------------------------------
def machine_info() -> dict:
    """CPU, core count, Numba threads and threading layer, library versions, load average."""
    import numba

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    try:
        info["threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        info["threading_layer"] = None
    info["env"] = {
        k: os.environ[k]
        for k in (
            "OMP_PROC_BIND",
            "OMP_NUM_THREADS",
            "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER",
            "OMP_WAIT_POLICY",
        )
        if k in os.environ
    }
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    return info


def write_json(path, payload: dict) -> None:
    """Write ``payload`` (plus ``machine``) as indented JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "machine": machine_info()}
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {path}")


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as an aligned table; ``columns`` are ``(key, header, format)``."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append(
            [
                ("" if row.get(k) is None else (fmt.format(row[k]) if fmt else str(row[k])))
                for k, _, fmt in columns
            ]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for j, r in enumerate(cells):
        pairs = enumerate(zip(r, widths, strict=True))
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def add_common_args(parser: argparse.ArgumentParser, size: int, repeat: int) -> argparse.ArgumentParser:
    """``--size``, ``--repeat``, ``--json PATH`` and ``--device {cpu,cuda,all}``."""
    parser.add_argument("--size", type=int, default=size, help=f"elements (default {size:,})")
    parser.add_argument("--repeat", type=int, default=repeat, help=f"timed repeats (default {repeat})")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "all"),
        default="all",
        help="which devices to measure (default all; cuda needs a real GPU)",
    )
    return parser
