"""The device backend: the one module of gpunn that touches NumPy or CuPy directly.

Everything else asks a :class:`Device` for its array namespace (``dev.xp``) and for the
host/device transfers, so the same model code runs on the CPU (NumPy) and on a GPU (CuPy).

``device("cpu" | "cuda" | "cuda:N" | "auto", strict=False)``

* ``"cpu"``: NumPy arrays, Numba CPU kernels.
* ``"cuda"`` / ``"cuda:N"``: CuPy arrays on GPU N, Numba CUDA kernels launched on CuPy's current
  stream.  Without a usable GPU (CuPy missing, no driver, no device, allocation failing) gpunn
  warns once and falls back to the CPU; ``strict=True`` or ``GPUNN_REQUIRE_CUDA=1`` raises
  :class:`DeviceError` instead.  Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the
  "cuda" device is *simulated*: :mod:`gpunn.simcupy` stands in for CuPy (NumPy underneath, but its
  arrays refuse host/device mixing as CuPy does) and the CUDA kernels run in the simulator, so the
  CUDA code path is exercised on machines without a GPU.
* ``"auto"``: CUDA when a usable GPU exists, else the CPU, silently.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
from functools import cache

import numpy

__all__ = [
    "Device",
    "DeviceError",
    "DeviceFallbackWarning",
    "device",
    "get_device",
    "cuda_available",
    "cuda_simulated",
    "device_of",
    "host_xp",
    "is_device_array",
    "on_device",
]

DTYPES = ("float32", "float64")


class DeviceError(RuntimeError):
    """Raised when a requested device cannot be used (strict mode) or arrays sit on the wrong one."""


class DeviceFallbackWarning(UserWarning):
    """Warned (once per process) when "cuda" was asked for but gpunn fell back to the CPU."""


def host_xp():
    """The host (CPU) array namespace, for code that reads files or formats numbers on the host."""
    return numpy


def empty_aligned(xp, shape, dtype, align: int = 64):
    """``xp.empty(shape, dtype)`` starting on an ``align``-byte boundary (host arrays: NumPy only
    promises 16 bytes; CuPy's allocations are already 256-byte aligned).  BatchNorm's streaming
    stores need 64-byte aligned rows (:mod:`gpunn.kernels.intrinsics`)."""
    if xp is not numpy:
        return xp.empty(shape, dtype=dtype)
    dtype = numpy.dtype(dtype)
    n = int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize
    raw = numpy.empty(n + align, dtype=numpy.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + n].view(dtype).reshape(shape)


def check_seed(seed):
    """``seed`` if it is None, a non-negative int or a NumPy ``SeedSequence``; else
    ``TypeError`` (not an integer) or ``ValueError`` (negative)."""
    if seed is None or isinstance(seed, numpy.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)):
        raise TypeError(f"seed must be None or a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
    return int(seed)


def cuda_simulated() -> bool:
    """True when Numba's CUDA simulator is switched on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def on_device(method):
    """Decorator for methods of objects that hold a :class:`Device` (``self.device``, or ``self.dev``
    for layers): the call runs with that device current, so on ``cuda:N`` CuPy allocates on GPU N
    and kernels launch there; the caller's current device is restored afterwards."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        dev = getattr(self, "device", None) or self.dev
        if dev.kind == "cpu":
            return method(self, *args, **kwargs)
        with dev:
            return method(self, *args, **kwargs)

    return run


def is_device_array(a) -> bool:
    """True for an array in GPU memory: a CuPy array, or a :mod:`gpunn.simcupy` one under the simulator."""
    if isinstance(a, numpy.ndarray):  # the common case first (neither kind is a NumPy subclass)
        return False
    from . import simcupy

    if isinstance(a, simcupy.ndarray):
        return True
    cupy = sys.modules.get("cupy")  # no CuPy imported: no CuPy arrays exist
    return cupy is not None and isinstance(a, cupy.ndarray)


def device_of(a) -> Device | None:
    """The :class:`Device` array ``a`` lives on (``cuda:N`` for GPU arrays, the CPU for NumPy
    arrays), or None for anything else (scalars, lists)."""
    if isinstance(a, numpy.ndarray):
        return _make("cpu", 0)
    if is_device_array(a):
        return _make("cuda", a.device.id)
    return None


@cache
def _probe_cuda(index: int) -> str | None:
    """Return None if GPU ``index`` is usable through CuPy and numba-cuda, else the reason why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return f"CuPy is not installed or failed to import ({exc.__class__.__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no CUDA driver or device ({exc.__class__.__name__}: {exc})"
    if index >= count:
        return f"cuda:{index} asked for but only {count} CUDA device(s) exist"
    try:
        with cupy.cuda.Device(index):
            cupy.zeros(1, dtype=cupy.float32) + 1  # allocation and a kernel launch must work
            cupy.cuda.Stream.null.synchronize()
    except Exception as exc:
        return f"allocating on cuda:{index} failed ({exc.__class__.__name__}: {exc})"
    try:
        from numba import cuda as ncuda

        if not ncuda.is_available():
            return "numba-cuda cannot see a CUDA driver"
    except Exception as exc:
        return f"numba-cuda is not usable ({exc.__class__.__name__}: {exc})"
    return None


def cuda_available(index: int = 0) -> bool:
    """True when a real GPU ``index`` is usable (the simulator does not count)."""
    return not cuda_simulated() and _probe_cuda(index) is None


_warned_fallback = False


def _fallback(reason: str, strict: bool) -> Device:
    global _warned_fallback
    if strict or os.environ.get("GPUNN_REQUIRE_CUDA", "0") not in ("", "0"):
        raise DeviceError(f"device 'cuda' requested but not usable: {reason}")
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"gpunn: device 'cuda' requested but not usable: {reason}. Falling back to the CPU "
            "(NumPy). Install the 'cuda12' or 'cuda13' extra on a machine with an NVIDIA GPU, "
            "or pass strict=True / set GPUNN_REQUIRE_CUDA=1 to make this an error.",
            DeviceFallbackWarning,
            stacklevel=_caller_stacklevel(),
        )
    return _make("cpu", 0)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` pointing a warning at the first frame outside gpunn (the user's line)."""
    inside = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def _parse(name: str) -> tuple[str, int]:
    if not isinstance(name, str):
        raise TypeError(f"device must be a str like 'cpu', 'cuda', 'cuda:0' or 'auto', got {name!r}")
    low = name.strip().lower()
    if low in ("cpu", "auto", "cuda", "gpu"):
        return ("cuda" if low == "gpu" else low), 0
    if low.startswith("cuda:"):
        index = low[5:]
        if index.isdigit():
            return "cuda", int(index)
    raise ValueError(f"unknown device {name!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


def device(name: str | Device = "auto", strict: bool = False) -> Device:
    """Resolve a device name to a :class:`Device` (see the module docstring for the semantics)."""
    if isinstance(name, Device):
        return name
    kind, index = _parse(name)
    if kind == "cpu":
        return _make("cpu", 0)
    if cuda_simulated():
        return _make("cuda", index)
    reason = _probe_cuda(index)
    if reason is None:
        return _make("cuda", index)
    if kind == "auto":
        return _make("cpu", 0)
    return _fallback(reason, strict)


get_device = device


@cache
def _make(kind: str, index: int) -> Device:
    return Device(kind, index)


class Device:
    """One compute device: its array namespace ``xp`` and the transfers to and from it.

    Obtain instances through :func:`device`; they are cached, so ``device("cpu") is device("cpu")``.
    """

    def __init__(self, kind: str, index: int = 0):
        self.kind = kind
        self.index = index
        self.simulated = kind == "cuda" and cuda_simulated()
        if self.simulated:
            from . import simcupy

            self.xp = simcupy
        elif kind == "cuda":
            import cupy

            self.xp = cupy
        else:
            self.xp = numpy
        self._entered = threading.local()

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def is_cuda(self) -> bool:
        """True for a real or simulated CUDA device (the CUDA kernels are used)."""
        return self.kind == "cuda"

    def __repr__(self) -> str:
        return f"Device({self.name!r}{', simulated' if self.simulated else ''})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and (self.kind, self.index) == (other.kind, other.index)

    def __hash__(self) -> int:
        return hash((self.kind, self.index))

    def __enter__(self):
        """Make this GPU the current one (CuPy's allocations and Numba's launches go to it); nests,
        and is per thread.  A no-op on the CPU."""
        if self.xp is not numpy:
            stack = self._entered.__dict__.setdefault("stack", [])
            ctx = self.xp.cuda.Device(self.index)
            ctx.__enter__()
            stack.append(ctx)
        return self

    def __exit__(self, *exc):
        if self.xp is not numpy:
            self._entered.stack.pop().__exit__(*exc)

    # -- dtypes ---------------------------------------------------------------------------
    @staticmethod
    def dtype(dtype="float32"):
        """Validate and return a floating dtype gpunn computes in (float32 default, float64 allowed)."""
        dt = numpy.dtype(dtype)
        if dt.name not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dt.name}")
        return dt

    @staticmethod
    def scalar(value, dtype):
        """``value`` as a NumPy scalar of ``dtype``: how hyper-parameters reach kernels without
        silently promoting float32 arithmetic to float64."""
        return numpy.dtype(dtype).type(value)

    # -- arrays ---------------------------------------------------------------------------
    def owns(self, a) -> bool:
        """True if ``a`` is an array living on this device."""
        if self.xp is numpy:
            return isinstance(a, numpy.ndarray)
        return isinstance(a, self.xp.ndarray) and a.device.id == self.index

    def array_kind(self, a) -> str:
        """A short description of where ``a`` lives, for error messages."""
        if isinstance(a, numpy.ndarray):
            return "a NumPy (host) array"
        if is_device_array(a):
            return f"an array of {device_of(a).name}"
        mod = type(a).__module__.split(".")[0]
        return f"a {mod} {type(a).__name__}" if mod != "builtins" else f"a {type(a).__name__}"

    def to_device(self, a, dtype=None):
        """Copy host data (or an array of another device) onto this device, C-contiguous
        (0-d arrays stay 0-d)."""
        if self.xp is not numpy:
            with self.xp.cuda.Device(self.index):
                out = self.xp.asarray(a, dtype=dtype)
        elif dtype is None and type(a) is numpy.ndarray and a.flags.c_contiguous:
            return a  # the training step's common case, kept cheap (asarray would return it too)
        else:
            out = numpy.asarray(self.to_numpy(a), dtype=dtype)
        return out if out.flags.c_contiguous else self.xp.ascontiguousarray(out)

    @staticmethod
    def to_numpy(a):
        """Bring an array (NumPy, CuPy, or a scalar) to the host as a NumPy array."""
        if isinstance(a, numpy.ndarray):
            return a
        if is_device_array(a):
            return a.get()
        return numpy.asarray(a)

    def synchronize(self) -> None:
        """Block until queued work on this device has finished (no-op on the CPU)."""
        if self.xp is not numpy:
            with self.xp.cuda.Device(self.index):
                self.xp.cuda.get_current_stream().synchronize()

    def host_rng(self, seed=None):
        """A seeded host generator (``numpy.random.Generator``): gpunn draws every random number on
        the host (initial weights, data order, dropout mask keys), so that a seed gives the same
        run on every device.  (No device generator is offered: CuPy's lacks ``permutation``,
        ``shuffle``, ``choice`` and ``normal``, which gpunn's callers need.)"""
        return numpy.random.default_rng(check_seed(seed))
