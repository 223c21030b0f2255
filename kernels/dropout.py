"""Dropout kernels (inverted dropout), with a counter-based mask: element ``i`` of a batch is kept iff
a hash of ``(i, key)`` clears a threshold.  The 62-bit ``key`` is drawn per training forward from the
layer's seeded *host* generator, so

* the same seed gives the same masks on every device (the hash is the same integer rule on the CPU
  and in CUDA; no device random generator is involved),
* nothing of the size of the batch crosses from host to device (one key per forward),
* the mask is never stored: backward recomputes it from the same key (the hash costs less than
  the memory traffic of writing and re-reading a mask array).

The hash is Chris Wellons' ``lowbias32`` integer mixer applied twice (to the low 32 bits of ``i``
xor the low key half, then with the high halves mixed in); the element is kept iff its top 24 bits
are ≥ ``thr`` = round(p·2²⁴), i.e. with probability 1 − thr/2²⁴.  The math is uint64 on 32-bit
values: a 32×32-bit product fits in 64 bits, so nothing ever overflows (Numba marks signed
multiplies ``nsw``, for which an overflow would be undefined), and LLVM vectorises the CPU loop
(0.55 ns per element on one core here, 25× faster than the same hash in int64 with 16-bit halves).
Every constant is a typed uint64 global: an int64 literal mixed with uint64 would become float64.
"""

from numba import njit, prange, uint64

from . import CPU_OPTIONS, RULE_OPTIONS

SERIAL_OPTIONS = dict(error_model="numpy", cache=True)

PARALLEL_MIN = 1 << 18
"""Below this many elements the CPU kernel runs on the calling thread: a ``prange`` region costs
80-120 µs to start and finish under Numba's ``workqueue`` threading layer, gpunn's default (see
``threads.py``), about what the serial hash takes on this many elements (0.55 ns each)."""

CHUNK = 1 << 14

_M32 = uint64(0xFFFFFFFF)
_C1 = uint64(0x7FEB352D)
_C2 = uint64(0x846CA68B)
_S8 = uint64(8)
_S15 = uint64(15)
_S16 = uint64(16)
_S32 = uint64(32)


@njit(**RULE_OPTIONS)
def mix32(h):
    """lowbias32 (a bijective 32-bit integer hash with good avalanche) on a uint64 in [0, 2³²)."""
    h ^= h >> _S16
    h = (h * _C1) & _M32
    h ^= h >> _S15
    h = (h * _C2) & _M32
    h ^= h >> _S16
    return h


@njit(**RULE_OPTIONS)
def keep(i, k0, k1, thr):
    """True when element ``i`` survives for key halves ``k0``, ``k1`` (uint64 in [0, 2³²)) and
    threshold ``thr`` (uint64)."""
    u = uint64(i)
    h = mix32((u & _M32) ^ k0)
    h = mix32(h ^ k1 ^ (u >> _S32))
    return (h >> _S8) >= thr


@njit(**RULE_OPTIONS)
def mask_value(i, k0, k1, thr, scale, zero):
    """The mask of element ``i``: ``scale`` = 1/(1−p) if kept, else 0 (a select, no branch: the
    output is then ``x·mask``, as in the textbook, so the CPU loop vectorises)."""
    return scale if keep(i, k0, k1, thr) else zero


@njit(**SERIAL_OPTIONS)
def _span(x, out, lo, k0, k1, thr, scale, zero):
    """Elements ``lo + j`` for the slices ``x``, ``out``: a loop from 0 (a loop from an arbitrary
    start keeps Numba's wrap-around index check and does not vectorise)."""
    for j in range(x.size):
        out[j] = x[j] * mask_value(lo + j, k0, k1, thr, scale, zero)


@njit(**CPU_OPTIONS)
def apply_cpu(x, out, k0, k1, thr, scale, zero):
    """``out = x · mask`` over 1-D (flattened, C-contiguous) arrays: forward on the activations,
    backward on the incoming gradient, with the same key (so the same mask, never stored)."""
    n = x.size
    if n < PARALLEL_MIN:
        _span(x, out, 0, k0, k1, thr, scale, zero)
    else:
        k = n // CHUNK
        for j in prange(k):
            lo, hi = j * n // k, (j + 1) * n // k
            _span(x[lo:hi], out[lo:hi], lo, k0, k1, thr, scale, zero)


def serial_kernel(rule: str):
    """The serial twin of ``apply_cpu`` (the only rule): the whole array as one span."""
    if rule != "apply":
        raise KeyError(rule)

    def run(x, out, *args):
        _span(x, out, 0, *args)

    return run
