"""BatchNorm kernels for fully connected layers: per-feature statistics over the batch of a row-major
``(N, C)`` array.  Scalar rules here are shared by the CPU kernels below and the CUDA kernels in
``batchnorm_cuda.py`` (numba-cuda compiles them as device functions), so the two compute every
element with the same formula.

Forward (training)::

    μ_c = mean_n x[n, c]        σ²_c = mean_n (x[n, c] − μ_c)²        s_c = 1/√(σ²_c + ε)
    y[n, c] = (x[n, c] − μ_c) · (γ_c s_c) + β_c
    running_mean ← (1 − m)·running_mean + m·μ     running_var ← (1 − m)·running_var + m·Σ(x − μ)²/(N − ddof)

(``ddof`` = 1: the unbiased batch variance, PyTorch's convention; ``ddof`` = 0: the biased one, as in
*Deep Learning from Scratch*.)

Backward (x̂ = (x − μ)·s is recomputed from ``x``, never stored)::

    dβ_c = Σ_n dy        dγ_c = Σ_n dy·x̂        dx = γ_c s_c · (dy − dβ_c/N − x̂·dγ_c/N)

Evaluation: ``y = (x − running_mean) · γ/√(running_var + ε) + β``.

Accumulation (documented choice): the CPU kernels work in blocks of ``BLOCK`` = 32 rows.  Within a
block, sums run in the array dtype (float32: 32 terms, SIMD-wide) on data shifted by the first row
of the segment (a large common offset then costs no precision); the block's mean and its
M2 = Σ(x − block mean)² (the two-pass algorithm, on 32 rows that are still in L1/L2) are merged
into **float64** running statistics with Chan et al.'s pairwise formula, which is also how the
row segments are combined -- stable (no Σx² − (Σx)²/N cancellation) and, unlike a per-element
float64 Welford update, not compute-bound: the statistics pass ran 0.47 ms instead of 0.86 ms on
4096×1024 with 2 threads here.  Backward's Σdy and Σdy·x̂ likewise: 32-row sums in the array dtype
added into float64 totals.  The CUDA kernels use the two-pass
algorithm: each thread sums its rows in the array dtype (float32: at most ⌈N/rows-per-block⌉ terms
each), then the block's partial sums are reduced in a float64 tree in shared memory.  The per-feature
finalisation (mean, 1/√(σ²+ε), running statistics: C values) is computed in float64 on both devices
and rounded once to the array dtype; the per-element work (normalisation, dx) is pure array-dtype
arithmetic in the shared rules.

Outputs of at least ``intrinsics.STREAM_MIN_BYTES`` (8 MB) that the layer allocated 64-byte aligned
with 64-byte rows are written with streaming (non-temporal) stores: ``y`` and ``dx`` then go to
memory without first being read into the cache, a third less traffic for those passes.

CPU layout: the reductions (statistics, gradient sums) run over ``work.shape[0]`` fixed row
segments (:func:`n_segments`: 1 below ``PARALLEL_MIN`` elements, else ``SEGMENTS``, a function of
the shape alone), each summed on its own and merged in segment order, so the results are the same
bits whatever the thread count.  The segments (and the elementwise passes' rows) are shared out
into row chunks (:func:`n_row_chunks`: the thread budget), each walking whole rows so the inner loop
over features is contiguous and vectorises.  Several chunks run on gpunn's helper threads
(:func:`gpunn.kernels.threads.run_chunks`), two parallel phases per pass (statistics, then
normalisation; gradient sums, then dx) with the per-feature finalisation between them on the
calling thread.  ``work`` (float64, ``(segments, 2, C)``) and ``acc`` (the array dtype,
``(segments, 3, C)``: a chunk's scratch) are scratch arrays supplied by the caller (kernels
allocate nothing).
"""

import math

from numba import njit

from ..cpu_threads import kernel_threads
from . import RULE_OPTIONS
from .intrinsics import fence, stream_store, streamable
from .threads import run_chunks

SERIAL_OPTIONS = dict(error_model="numpy", cache=True, nogil=True)

BLOCK = 32
"""Rows per block of the CPU statistics passes (array-dtype sums inside, float64 across)."""

PARALLEL_MIN = 1 << 20
"""Below this many elements (N·C) the CPU kernels run on the calling thread alone: the first hand-off
to a helper that went to sleep costs 45-90 µs on the 2-core development VM (a thread wake-up; the
later ones of the same call ~16 µs, see ``threads.py``).  Forward + backward there, serial vs 2
chunks, medians measured with sleeping hand-offs: 512×1024 0.43 vs 0.62 ms, 1024×1024 0.88 vs
0.79 ms, 2048×1024 2.3 vs 1.5 ms, 4096×1024 5.6 vs 3.3 ms."""

SEGMENTS = 16
"""Row segments of the statistics and gradient sums from ``PARALLEL_MIN`` elements on: each segment's
sums are computed alone and the segments are merged in order, so the results do not depend on how
many threads share the segments (at most this many)."""


def n_segments(n_rows: int, n_cols: int) -> int:
    """How many row segments the reductions of an ``(n_rows, n_cols)`` batch run over: 1 below
    ``PARALLEL_MIN`` elements, else ``SEGMENTS`` (at most one per 2 rows).  A function of the shape
    only, never of the thread count."""
    if n_rows * n_cols < PARALLEL_MIN or n_rows < 2:
        return 1
    return max(1, min(SEGMENTS, n_rows // 2))


def n_row_chunks(n_rows: int, n_cols: int) -> int:
    """How many row chunks (threads) the CPU kernels split an ``(n_rows, n_cols)`` batch into: 1 below
    ``PARALLEL_MIN`` elements, else the thread budget of :func:`gpunn.cpu_threads.kernel_threads`
    (Numba's thread count, less the cores other processes keep busy), at most one per segment."""
    s = n_segments(n_rows, n_cols)
    return 1 if s == 1 else max(1, min(kernel_threads(), s))


def _spans(n_rows: int, chunks: int):
    """The row ranges ``[lo, hi)`` of ``chunks`` near-equal parts (segments or chunks of rows)."""
    return [(j * n_rows // chunks, (j + 1) * n_rows // chunks) for j in range(chunks)]


# --------------------------------------------------------------------------------------------
# Scalar rules (shared by CPU and CUDA).  No literals: constants arrive as arguments.
# --------------------------------------------------------------------------------------------
@njit(**RULE_OPTIONS)
def normalize(x, m, a, b):
    """y = (x − μ)·a + β with a = γ/√(σ² + ε)."""
    return (x - m) * a + b


@njit(**RULE_OPTIONS)
def xhat(x, m, s):
    """x̂ = (x − μ)·s, s = 1/√(σ² + ε)."""
    return (x - m) * s


@njit(**RULE_OPTIONS)
def dx_rule(dy, xh, k, mb, mg):
    """dx = k·(dy − dβ/N − x̂·dγ/N) with k = γ·s, ``mb`` = dβ/N, ``mg`` = dγ/N."""
    return k * (dy - mb - xh * mg)


@njit(**RULE_OPTIONS)
def inv_std(var, eps, one):
    """1/√(σ² + ε)."""
    return one / math.sqrt(var + eps)


@njit(**RULE_OPTIONS)
def running(r, stat, mom, omm):
    """Exponential moving average (PyTorch convention): r ← (1 − m)·r + m·stat."""
    return omm * r + mom * stat


# --------------------------------------------------------------------------------------------
# CPU helpers (serial, whole rows)
# --------------------------------------------------------------------------------------------
@njit(**SERIAL_OPTIONS)
def _stats_rows(x, lo, hi, mean, m2, bm, bq, sh):
    """Per-column mean and M2 = Σ(x − mean)² of rows [lo, hi) into float64 ``mean``, ``m2``:
    blocks of ``BLOCK`` rows, two-pass inside a block in the array dtype on data shifted by the
    chunk's first row ``sh`` (so a large common offset costs no precision), blocks merged in float64
    (Chan et al.).  ``bm``, ``bq``, ``sh``: array-dtype scratch."""
    C = x.shape[1]
    first = x[lo]
    for c in range(C):
        mean[c] = 0.0
        m2[c] = 0.0
        sh[c] = first[c]
    na = 0
    for b0 in range(lo, hi, BLOCK):
        b1 = min(b0 + BLOCK, hi)
        nb = b1 - b0
        for c in range(C):
            bm[c] = 0
            bq[c] = 0
        for n in range(b0, b1):
            row = x[n]
            for c in range(C):
                bm[c] += row[c] - sh[c]
        for c in range(C):
            bm[c] = bm[c] / nb  # the block mean minus the shift, in the array dtype
        for n in range(b0, b1):
            row = x[n]
            for c in range(C):
                d = (row[c] - sh[c]) - bm[c]
                bq[c] += d * d
        nab = na + nb
        f1 = nb / nab
        f2 = na * nb / nab
        for c in range(C):
            d = bm[c] - mean[c]  # mean holds (running mean − shift) until the end
            mean[c] += d * f1
            m2[c] += bq[c] + d * d * f2
        na = nab
    for c in range(C):
        mean[c] += sh[c]


@njit(**SERIAL_OPTIONS)
def _put(out, c, v, stream):
    """out[c] = v, as a streaming store when ``stream`` (LLVM unswitches the loop on it)."""
    if stream:
        stream_store(out, c, v)
    else:
        out[c] = v


@njit(**SERIAL_OPTIONS)
def _affine_rows(x, lo, hi, center, scale, beta, y):
    """y = (x − center)·scale + β over rows [lo, hi): the normalisation in both modes."""
    C = x.shape[1]
    stream = streamable(y)
    for n in range(lo, hi):
        row, out = x[n], y[n]
        for c in range(C):
            _put(out, c, normalize(row[c], center[c], scale[c], beta[c]), stream)
    if stream:
        fence()


@njit(**SERIAL_OPTIONS)
def _grad_sums_rows(dy, x, lo, hi, mean, invstd, sb, sg, bb, bg):
    """Σ dy and Σ dy·x̂ over rows [lo, hi) into float64 ``sb``, ``sg``: ``BLOCK``-row sums in the
    array dtype (``bb``, ``bg`` scratch) added into the float64 totals."""
    C = x.shape[1]
    for c in range(C):
        sb[c] = 0.0
        sg[c] = 0.0
    for b0 in range(lo, hi, BLOCK):
        for c in range(C):
            bb[c] = 0
            bg[c] = 0
        for n in range(b0, min(b0 + BLOCK, hi)):
            row, g = x[n], dy[n]
            for c in range(C):
                d = g[c]
                bb[c] += d
                bg[c] += d * xhat(row[c], mean[c], invstd[c])
        for c in range(C):
            sb[c] += bb[c]
            sg[c] += bg[c]


@njit(**SERIAL_OPTIONS)
def _stats_segments(x, s0, s1, work, bm, bq, sh):
    """``_stats_rows`` of segments [s0, s1) of ``work.shape[0]`` into ``work[s]`` (mean, M2)."""
    N, S = x.shape[0], work.shape[0]
    for s in range(s0, s1):
        _stats_rows(x, s * N // S, (s + 1) * N // S, work[s, 0], work[s, 1], bm, bq, sh)


@njit(**SERIAL_OPTIONS)
def _grad_sums_segments(dy, x, s0, s1, mean, invstd, work, bb, bg):
    """``_grad_sums_rows`` of segments [s0, s1) of ``work.shape[0]`` into ``work[s]`` (Σdy, Σdy·x̂)."""
    N, S = x.shape[0], work.shape[0]
    for s in range(s0, s1):
        _grad_sums_rows(dy, x, s * N // S, (s + 1) * N // S, mean, invstd, work[s, 0], work[s, 1], bb, bg)


@njit(**SERIAL_OPTIONS)
def _dx_rows(dy, x, lo, hi, mean, invstd, k, mb, mg, dx):
    """dx over rows [lo, hi), with the per-feature k = γ·s, mb = dβ/N, mg = dγ/N precomputed."""
    C = x.shape[1]
    stream = streamable(dx)
    for n in range(lo, hi):
        row, g, out = x[n], dy[n], dx[n]
        for c in range(C):
            _put(out, c, dx_rule(g[c], xhat(row[c], mean[c], invstd[c]), k[c], mb[c], mg[c]), stream)
    if stream:
        fence()


@njit(**SERIAL_OPTIONS)
def _finalize_stats(N, work, gamma, rmean, rvar, mean, invstd, scale, eps, mom, omm, ddof):
    """Merge the segments' (mean, M2), in order, with Chan et al.'s formula; write μ,
    s = 1/√(σ² + ε), the running statistics (variance M2/(N − ddof)) and ``scale`` = γ·s (array
    dtype) for the normalisation."""
    k, C = work.shape[0], work.shape[2]
    for c in range(C):
        na = N // k
        ma = work[0, 0, c]
        qa = work[0, 1, c]
        for j in range(1, k):
            nb = (j + 1) * N // k - j * N // k
            d = work[j, 0, c] - ma
            nab = na + nb
            ma += d * nb / nab
            qa += work[j, 1, c] + d * d * na * nb / nab
            na = nab
        mean[c] = ma
        invstd[c] = 1.0 / math.sqrt(qa / N + eps)
        rmean[c] = running(rmean[c], mean[c], mom, omm)
        rvar[c] = running(rvar[c], qa / (N - ddof), mom, omm)
        scale[c] = gamma[c] * invstd[c]


@njit(**SERIAL_OPTIONS)
def _finalize_grads(work, gamma, invstd, dgamma, dbeta, inv_n, k, mb, mg):
    """dβ, dγ from the segments' float64 sums (added in order); the per-feature factors of dx (array
    dtype)."""
    C = work.shape[2]
    for c in range(C):
        sb = work[0, 0, c]
        sg = work[0, 1, c]
        for j in range(1, work.shape[0]):
            sb += work[j, 0, c]
            sg += work[j, 1, c]
        dbeta[c] = sb
        dgamma[c] = sg
        k[c] = gamma[c] * invstd[c]
        mb[c] = dbeta[c] * inv_n
        mg[c] = dgamma[c] * inv_n


@njit(**SERIAL_OPTIONS)
def _forward_train_serial(x, gamma, beta, rmean, rvar, mean, invstd, y, work, acc, eps, mom, omm, ddof):
    """The three forward phases in one Numba call (small batches: one dispatch, not three)."""
    N = x.shape[0]
    _stats_segments(x, 0, work.shape[0], work, acc[0, 0], acc[0, 1], acc[0, 2])
    _finalize_stats(N, work, gamma, rmean, rvar, mean, invstd, acc[0, 0], eps, mom, omm, ddof)
    _affine_rows(x, 0, N, mean, acc[0, 0], beta, y)


@njit(**SERIAL_OPTIONS)
def _backward_serial(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, work, acc, inv_n):
    """The three backward phases in one Numba call (small batches: one dispatch, not three)."""
    N = x.shape[0]
    _grad_sums_segments(dy, x, 0, work.shape[0], mean, invstd, work, acc[0, 0], acc[0, 1])
    _finalize_grads(work, gamma, invstd, dgamma, dbeta, inv_n, acc[0, 0], acc[0, 1], acc[0, 2])
    _dx_rows(dy, x, 0, N, mean, invstd, acc[0, 0], acc[0, 1], acc[0, 2], dx)


@njit(**SERIAL_OPTIONS)
def _eval_scale(gamma, rvar, scale, eps, one):
    for c in range(gamma.shape[0]):
        scale[c] = gamma[c] * inv_std(rvar[c], eps, one)


# --------------------------------------------------------------------------------------------
# CPU kernels: one serial Numba call per pass, or row chunks on the helper threads
# --------------------------------------------------------------------------------------------
def forward_train_cpu(x, gamma, beta, rmean, rvar, mean, invstd, y, work, acc, eps, mom, omm, ddof=1):
    """Training forward: batch statistics into ``mean``/``invstd`` (saved for backward), running
    statistics updated in place (running variance from M2/(N − ``ddof``)), ``y`` written.  Needs
    N > ``ddof``.  ``work`` has one row per segment (:func:`n_segments`), ``acc`` one per segment
    too (a chunk's scratch); the chunk count is :func:`n_row_chunks` (results do not depend on it)."""
    k = n_row_chunks(x.shape[0], x.shape[1]) if work.shape[0] > 1 else 1
    ddof = int(ddof)
    if k == 1:
        _forward_train_serial(x, gamma, beta, rmean, rvar, mean, invstd, y, work, acc, eps, mom, omm, ddof)
        return
    run_chunks(
        _stats_segments,
        [
            (x, s0, s1, work, acc[j, 0], acc[j, 1], acc[j, 2])
            for j, (s0, s1) in enumerate(_spans(work.shape[0], k))
        ],
    )
    _finalize_stats(x.shape[0], work, gamma, rmean, rvar, mean, invstd, acc[0, 0], eps, mom, omm, ddof)
    run_chunks(_affine_rows, [(x, lo, hi, mean, acc[0, 0], beta, y) for lo, hi in _spans(x.shape[0], k)])


def backward_cpu(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, work, acc, inv_n):
    """Backward of the training forward: dγ, dβ written (into the gradient buffer views), dx written."""
    k = n_row_chunks(x.shape[0], x.shape[1]) if work.shape[0] > 1 else 1
    if k == 1:
        _backward_serial(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, work, acc, inv_n)
        return
    run_chunks(
        _grad_sums_segments,
        [
            (dy, x, s0, s1, mean, invstd, work, acc[j, 0], acc[j, 1])
            for j, (s0, s1) in enumerate(_spans(work.shape[0], k))
        ],
    )
    _finalize_grads(work, gamma, invstd, dgamma, dbeta, inv_n, acc[0, 0], acc[0, 1], acc[0, 2])
    run_chunks(
        _dx_rows,
        [
            (dy, x, lo, hi, mean, invstd, acc[0, 0], acc[0, 1], acc[0, 2], dx)
            for lo, hi in _spans(x.shape[0], k)
        ],
    )


def forward_eval_cpu(x, gamma, beta, rmean, rvar, scale, y, eps, one, chunks):
    """Evaluation forward with the running statistics; ``scale`` (C,) is scratch of the array dtype."""
    _eval_scale(gamma, rvar, scale, eps, one)
    run_chunks(_affine_rows, [(x, lo, hi, rmean, scale, beta, y) for lo, hi in _spans(x.shape[0], chunks)])
