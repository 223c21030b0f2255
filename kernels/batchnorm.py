"""BatchNorm kernels for fully connected layers: per-feature statistics over the batch of a row-major
``(N, C)`` array.  Scalar rules here are shared by the CPU kernels below and the CUDA kernels in
``batchnorm_cuda.py`` (numba-cuda compiles them as device functions), so the two compute every
element with the same formula.

Forward (training)::

    μ_c = mean_n x[n, c]        σ²_c = mean_n (x[n, c] − μ_c)²        s_c = 1/√(σ²_c + ε)
    y[n, c] = (x[n, c] − μ_c) · (γ_c s_c) + β_c
    running_mean ← (1 − m)·running_mean + m·μ        running_var ← (1 − m)·running_var + m·σ²·N/(N−1)

Backward (x̂ = (x − μ)·s is recomputed from ``x``, never stored)::

    dβ_c = Σ_n dy        dγ_c = Σ_n dy·x̂        dx = γ_c s_c · (dy − dβ_c/N − x̂·dγ_c/N)

Evaluation: ``y = (x − running_mean) · γ/√(running_var + ε) + β``.

Accumulation (documented choice): the CPU kernels work in blocks of ``BLOCK`` = 32 rows.  Within a
block, sums run in the array dtype (float32: 32 terms, SIMD-wide) on data shifted by the first row
of the thread's chunk (a large common offset then costs no precision); the block's mean and its
M2 = Σ(x − block mean)² (the two-pass algorithm, on 32 rows that are still in L1/L2) are merged
into **float64** running statistics with Chan et al.'s pairwise formula, which is also how the
per-thread row chunks are combined -- stable (no Σx² − (Σx)²/N cancellation) and, unlike a per-element
float64 Welford update, not compute-bound: the statistics pass ran 0.47 ms instead of 0.86 ms on
4096×1024 with 2 threads here.  Backward's Σdy and Σdy·x̂ likewise: 32-row sums in the array dtype
added into float64 totals.  The CUDA kernels use the two-pass
algorithm: each thread sums its rows in the array dtype (float32: at most ⌈N/rows-per-block⌉ terms
each), then the block's partial sums are reduced in a float64 tree in shared memory.  The per-feature
finalisation (mean, 1/√(σ²+ε), running statistics: C values) is computed in float64 on both devices
and rounded once to the array dtype; the per-element work (normalisation, dx) is pure array-dtype
arithmetic in the shared rules.

CPU layout: row chunks, one per Numba thread (``work.shape[0]`` of them, chosen by
:func:`n_row_chunks`; 1 = serial below ``PARALLEL_MIN`` elements), each walking whole rows so the
inner loop over features is contiguous and vectorises.  ``work`` (float64, ``(chunks, 2, C)``) and
``acc`` (the array dtype, ``(chunks, 3, C)``) are scratch arrays supplied by the caller (kernels
allocate nothing).
"""

import math

import numba
from numba import get_num_threads, njit, prange

from . import CPU_OPTIONS, RULE_OPTIONS

SERIAL_OPTIONS = dict(error_model="numpy", cache=True)

BLOCK = 32
"""Rows per block of the CPU statistics passes (array-dtype sums inside, float64 across)."""

PARALLEL_MIN = 1 << 18
"""Below this many elements (N·C) a CPU kernel runs on the calling thread.  Measured on 2 cores,
forward + backward: 128×1024 serial 171 µs vs parallel 165 µs with spinning OpenMP threads, but
153 vs 369 µs with ``OMP_WAIT_POLICY=passive`` (each parallel region then pays a ~150 µs wake-up);
256×1024: 249 vs 180 µs (spinning), 275 vs 380 µs (passive).  Typical MLP batches stay serial."""


def _threading_layer() -> str:
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet: the configured one
        return str(numba.config.THREADING_LAYER)


def n_row_chunks(n_rows: int, n_cols: int) -> int:
    """How many row chunks the CPU kernels split an ``(n_rows, n_cols)`` batch into.

    1 (serial) below ``PARALLEL_MIN`` elements, and always under Numba's ``workqueue`` threading
    layer: there the two-region kernels measured slower in parallel than serially at every size on
    2 cores (forward + backward, medians of 40 interleaved calls: 512×1024 serial 0.43-0.50 ms vs
    parallel 1.2 ms; 4096×1024 4.8-5.5 ms vs 6.2-8.0 ms), while under ``omp`` the parallel path
    is 1.5× faster (4096×1024: 4.9-6.0 ms serial vs 3.7-4.0 ms parallel)."""
    if n_rows * n_cols < PARALLEL_MIN or n_rows < 2 or _threading_layer() == "workqueue":
        return 1
    return max(1, min(get_num_threads(), n_rows // 2))


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
            bm[c] = bm[c] / nb          # the block mean minus the shift, in the array dtype
        for n in range(b0, b1):
            row = x[n]
            for c in range(C):
                d = (row[c] - sh[c]) - bm[c]
                bq[c] += d * d
        nab = na + nb
        f1 = nb / nab
        f2 = na * nb / nab
        for c in range(C):
            d = bm[c] - mean[c]         # mean holds (running mean − shift) until the end
            mean[c] += d * f1
            m2[c] += bq[c] + d * d * f2
        na = nab
    for c in range(C):
        mean[c] += sh[c]


@njit(**SERIAL_OPTIONS)
def _normalize_rows(x, lo, hi, mean, invstd, gamma, beta, y):
    C = x.shape[1]
    for n in range(lo, hi):
        row, out = x[n], y[n]
        for c in range(C):
            out[c] = normalize(row[c], mean[c], gamma[c] * invstd[c], beta[c])


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
def _dx_rows(dy, x, lo, hi, mean, invstd, gamma, dgamma, dbeta, inv_n, dx):
    C = x.shape[1]
    for n in range(lo, hi):
        row, g, out = x[n], dy[n], dx[n]
        for c in range(C):
            out[c] = dx_rule(g[c], xhat(row[c], mean[c], invstd[c]), gamma[c] * invstd[c],
                             dbeta[c] * inv_n, dgamma[c] * inv_n)


@njit(**SERIAL_OPTIONS)
def _eval_rows(x, lo, hi, rmean, scale, beta, y):
    C = x.shape[1]
    for n in range(lo, hi):
        row, out = x[n], y[n]
        for c in range(C):
            out[c] = normalize(row[c], rmean[c], scale[c], beta[c])


# --------------------------------------------------------------------------------------------
# CPU kernels
# --------------------------------------------------------------------------------------------
@njit(**CPU_OPTIONS)
def forward_train_cpu(x, gamma, beta, rmean, rvar, mean, invstd, y, work, acc, eps, mom, omm):
    """Training forward: batch statistics into ``mean``/``invstd`` (saved for backward), running
    statistics updated in place, ``y`` written.  Needs N ≥ 2."""
    N, C = x.shape
    k = work.shape[0]
    if k == 1:
        _stats_rows(x, 0, N, work[0, 0], work[0, 1], acc[0, 0], acc[0, 1], acc[0, 2])
    else:
        for j in prange(k):
            _stats_rows(x, j * N // k, (j + 1) * N // k, work[j, 0], work[j, 1], acc[j, 0], acc[j, 1],
                            acc[j, 2])
    for c in range(C):
        # Chan et al.: merge (count, mean, M2) of the row chunks
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
        var = qa / N
        mean[c] = ma
        invstd[c] = 1.0 / math.sqrt(var + eps)
        rmean[c] = running(rmean[c], mean[c], mom, omm)
        rvar[c] = running(rvar[c], qa / (N - 1), mom, omm)
    if k == 1:
        _normalize_rows(x, 0, N, mean, invstd, gamma, beta, y)
    else:
        for j in prange(k):
            _normalize_rows(x, j * N // k, (j + 1) * N // k, mean, invstd, gamma, beta, y)


@njit(**CPU_OPTIONS)
def backward_cpu(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, work, acc, inv_n):
    """Backward of the training forward: dγ, dβ written (into the gradient buffer views), dx written."""
    N, C = x.shape
    k = work.shape[0]
    if k == 1:
        _grad_sums_rows(dy, x, 0, N, mean, invstd, work[0, 0], work[0, 1], acc[0, 0], acc[0, 1])
    else:
        for j in prange(k):
            _grad_sums_rows(dy, x, j * N // k, (j + 1) * N // k, mean, invstd, work[j, 0], work[j, 1],
                            acc[j, 0], acc[j, 1])
    for c in range(C):
        sb = work[0, 0, c]
        sg = work[0, 1, c]
        for j in range(1, k):
            sb += work[j, 0, c]
            sg += work[j, 1, c]
        dbeta[c] = sb
        dgamma[c] = sg
    if k == 1:
        _dx_rows(dy, x, 0, N, mean, invstd, gamma, dgamma, dbeta, inv_n, dx)
    else:
        for j in prange(k):
            _dx_rows(dy, x, j * N // k, (j + 1) * N // k, mean, invstd, gamma, dgamma, dbeta, inv_n, dx)


@njit(**CPU_OPTIONS)
def forward_eval_cpu(x, gamma, beta, rmean, rvar, scale, y, eps, one, chunks):
    """Evaluation forward with the running statistics; ``scale`` (C,) is scratch of the array dtype."""
    N, C = x.shape
    for c in range(C):
        scale[c] = gamma[c] * inv_std(rvar[c], eps, one)
    if chunks == 1:
        _eval_rows(x, 0, N, rmean, scale, beta, y)
    else:
        for j in prange(chunks):
            _eval_rows(x, j * N // chunks, (j + 1) * N // chunks, rmean, scale, beta, y)
