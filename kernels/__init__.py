"""gpunn's Numba kernels (installed as ``gpunn.kernels``).

Layout, per topic ``T``:

* ``T.py`` -- scalar rules as ``@njit`` functions (no signature, scalar in / scalar out) and the CPU
  kernels: module-level ``@njit(parallel=True, error_model="numpy", cache=True)`` loops calling
  them.  Named ``<rule>_cpu``.
  BatchNorm's CPU passes are ``nogil`` serial loops instead, run in row chunks on gpunn's own
  helper threads (``threads.py``) for large batches.
* ``intrinsics.py`` -- LLVM-level helpers Numba lacks on the CPU: atomics and the spin-wait hint
  (the helper threads' hand-off), streaming stores and a fence (BatchNorm's large outputs).
* ``T_cuda.py`` -- the CUDA kernels calling *the same* scalar rules (numba-cuda compiles a CPU
  ``@njit`` dispatcher called from a ``@cuda.jit`` kernel as a device function), grid-stride loops
  named ``<rule>``.  Imported lazily: only a CUDA device (real or simulated) loads numba.cuda.

* ``cpu_ops.py`` / ``cuda_ops.py`` -- the kernel operations a layer, loss or optimizer calls: the same
  functions with the same signatures, device first (``add_bias(dev, z, b)``, ...,
  ``elementwise(dev, topic, rule)``, which returns ``f(n, *args)`` running kernel ``rule`` of
  ``topic`` over ``n`` elements).  The CPU ones call the ``@njit`` kernels; the CUDA ones choose the
  grid and launch through :func:`launch`, on CuPy's current stream.

:func:`ops` returns the operations of a device: the one place gpunn chooses between its CPU and CUDA
kernels.  Hyper-parameters must arrive as scalars of the array dtype (``Device.scalar``;
:func:`consts` for ½, 1, 0 and an activation's slope) or float32 rules silently become float64.
"""

from __future__ import annotations

import importlib
import os
from functools import cache

import numba

from ..backend import Device, host_xp

if "NUMBA_THREADING_LAYER" not in os.environ:
    # OpenMP workers spin after each parallel region and take the cores OpenBLAS's threads need
    # (measured on 2 cores: a 784-100-100-10 training step 8.6 ms instead of 0.6 ms); the
    # workqueue layer's idle workers sleep.  Set NUMBA_THREADING_LAYER to choose another layer
    # (workqueue must not be entered from several Python threads at once: gpunn.cpu_threads.parallel_kernel
    # lets one thread in at a time; tbb would burn more CPU between regions, see benchmarks/RESULTS.md).
    numba.config.THREADING_LAYER = "workqueue"

CPU_OPTIONS = dict(parallel=True, error_model="numpy", cache=True)
"""Options of every CPU loop: ``error_model="numpy"`` lets LLVM vectorise divisions."""

RULE_OPTIONS = dict(error_model="numpy")
"""Options of every scalar rule (no signature, no ``parallel``/``cache``: those break the GPU path)."""


def _module(topic: str, cuda: bool):
    return importlib.import_module(f"{__name__}.{topic}{'_cuda' if cuda else ''}")


def ops(dev):
    """The kernel operations of device ``dev``: :mod:`gpunn.kernels.cpu_ops`, or for a CUDA device (real
    or simulated) :mod:`gpunn.kernels.cuda_ops` (imported on first use)."""
    if dev.is_cuda:
        from . import cuda_ops

        return cuda_ops
    return cpu_ops


_consts: dict = {}


def consts(dtype, slope=0.0) -> tuple:
    """(½, 1, 0, ``slope``) as scalars of ``dtype`` (no float64 promotion in float32 kernels)."""
    c = _consts.get((dtype, slope))
    if c is None:
        c = _consts[dtype, slope] = tuple(Device.scalar(v, dtype) for v in (0.5, 1.0, 0.0, slope))
    return c


def cuda_kernel(topic: str, name: str):
    """The raw ``@cuda.jit`` kernel ``name`` of ``topic``."""
    return getattr(_module(topic, True), name)


def launch(dev, topic: str, name: str, grid, *args) -> None:
    """Launch CUDA kernel ``name`` of ``topic`` on ``dev``: every CUDA launch of gpunn goes through here.

    ``grid`` is ``(blocks, threads)`` (``threads`` an int or a tuple).  The kernel runs on GPU
    ``dev.index`` (made current for the launch), on CuPy's current stream.  Under the simulator
    the stand-in device arrays (:mod:`gpunn.simcupy`) are checked to live on ``dev`` and handed
    over as the NumPy arrays they wrap.  While :func:`record_signatures` is on, the argument types
    of each launch are recorded (the real-compiler check compiles exactly these)."""
    if _signatures is not None:
        _signatures.add((topic, name, tuple(arg_type(a) for a in args)))
    if dev.simulated:
        from gpunn import simcupy

        args = simcupy.kernel_args(dev.index, args)
    blocks, threads = grid
    with dev:
        configure(cuda_kernel(topic, name), blocks, threads, stream(dev))(*args)


def configure(kernel, blocks, threads, cuda_stream):
    """``kernel[blocks, threads, cuda_stream]`` without numba-cuda's low-occupancy warning.

    numba-cuda warns (``NumbaPerformanceWarning``, "Grid size N will likely result in GPU
    under-utilization due to low occupancy") when it builds a launch configuration of fewer than 128
    blocks (``numba.cuda.dispatcher._LaunchConfiguration``; ``NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS``).
    gpunn's grids are as large as their work (:mod:`gpunn.kernels.cuda_ops`; a 64x16 layer is 4 blocks
    of 256 threads), so for its launches the warning is noise.  The switch is off only while gpunn's own
    configuration is built (numba-cuda caches configurations per kernel, grid and stream: this is the
    only moment it could warn), so the user's kernels still warn."""
    config = _numba_cuda_config()
    saved = config.CUDA_LOW_OCCUPANCY_WARNINGS
    config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
    try:
        return kernel[blocks, threads, cuda_stream]
    finally:
        config.CUDA_LOW_OCCUPANCY_WARNINGS = saved


@cache
def _numba_cuda_config():
    from numba.cuda.core import config

    return config


_signatures: set | None = None


def record_signatures() -> set:
    """Start recording the argument types of every CUDA launch (see :func:`launch`); returns the set
    the records go to: ``(topic, kernel name, (arg_type(a) for each argument))``."""
    global _signatures
    if _signatures is None:
        _signatures = set()
    return _signatures


def arg_type(a) -> tuple:
    """How Numba types a launch argument: ``("array", dtype, ndim, layout)`` with layout "C", "F" or
    "A", or ``("scalar", dtype)`` (Python ints, floats and bools as Numba types them)."""
    numpy = host_xp()
    if isinstance(a, numpy.generic):
        return ("scalar", a.dtype.name)
    if isinstance(a, (bool, int, float)):
        return ("scalar", {bool: "bool", int: "int64", float: "float64"}[type(a)])
    f = a.flags
    layout = "C" if f.c_contiguous else "F" if f.f_contiguous else "A"
    return ("array", numpy.dtype(a.dtype).name, a.ndim, layout)


_streams: dict = {}


def stream(dev):
    """Numba's handle on CuPy's current stream of GPU ``dev`` (0, the default stream, in the
    simulator), made once per (GPU, stream): numba-cuda caches launch configurations per stream
    object, and a handle belongs to the context of the GPU that was current when it was made (the
    null stream's pointer, 0, is the same on every GPU).  Called by :func:`launch`, with ``dev``
    current."""
    if dev.simulated:
        return 0
    key = (dev.index, dev.xp.cuda.get_current_stream().ptr)
    s = _streams.get(key)
    if s is None:
        from numba import cuda

        s = _streams[key] = cuda.external_stream(key[1])
    return s


from . import cpu_ops  # noqa: E402  (it imports the names above)
