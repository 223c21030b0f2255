"""CUDA kernels of BatchNorm (see ``batchnorm.py`` for the formulas and the shared scalar rules).

A column reduction over a row-major ``(N, C)`` array: each thread block owns a tile of ``W``
consecutive features (``blockDim.x = W``) and ``TY`` row lanes (``blockDim.y = TY``, a power of
two).  Thread ``(tx, ty)`` walks rows ``ty, ty + TY, …`` of feature ``c = blockIdx.x·W + tx``, so a
warp reads whole 32-byte sectors of consecutive features of a few rows (coalesced).  The block's
partial sums meet in a float64 shared-memory tree over ``ty``.  Launch: ``grid = ⌈C/W⌉`` blocks of
``(W, TY)`` threads, ``W·TY ≤ MAX_THREADS`` (``gpunn.kernels.cuda_ops`` picks them).

* ``forward_train`` -- **one launch**: mean (pass 1), variance Σ(x − μ)² (pass 2, the two-pass
  algorithm: stable in float32), running statistics (variance Σ(x − μ)²/(N − ``ddof``), ``ddof`` an
  int64 scalar: 1 unbiased, 0 biased), then ``y`` (pass 3).  ``x`` is read three
  times, but a block re-reads its own tile, which is likely still in L2.
* ``backward`` -- **one launch**: dβ and dγ (one pass, two accumulators), then dx.
* ``forward_eval`` -- an elementwise grid-stride loop (no reduction).

Per-thread accumulators are of the array dtype (``zero`` is passed in as a typed scalar, so a
float32 kernel stays float32); only the block tree and the per-feature finalisation (C values) use
float64.  No warp intrinsics (the simulator has none), every thread reaches every ``syncthreads``.
"""

import math

from numba import cuda, float64

from . import batchnorm as rules

MAX_THREADS = 256
"""Threads per block at most (the size of the shared reduction arrays)."""

BACKWARD_SHARED = 2 * MAX_THREADS
"""Size of ``backward``'s shared array: the Σdy and Σdy·x̂ trees, ``MAX_THREADS`` each.  A module-level
constant because ``cuda.shared.array`` needs a compile-time constant: the real compiler rejects an
expression such as ``2 * MAX_THREADS`` in the kernel (a ``TypingError``; the simulator accepts it)."""

FLOAT64_INTENDED = {
    "forward_train": "the block's partial sums meet in a float64 shared-memory tree, and the per-feature "
    "mean, 1/sqrt(var + eps) and running statistics are computed in float64",
    "backward": "the block's partial sums of dy and dy*xhat meet in a float64 shared-memory tree",
}
"""Kernels whose float32 versions use float64 on purpose (see the module docstring): the real-compiler
check (:mod:`gpunn.kernels.compile_check`) accepts float64 instructions in these, and only these."""


@cuda.jit(device=True)
def _tree(sh, base, tx, ty, W, TY):
    """Sum ``sh[base + ty·W + tx]`` over ty into ``sh[base + tx]`` (TY a power of two)."""
    s = TY // 2
    while s > 0:
        if ty < s:
            sh[base + ty * W + tx] += sh[base + (ty + s) * W + tx]
        cuda.syncthreads()
        s //= 2


@cuda.jit(cache=True)
def forward_train(x, gamma, beta, rmean, rvar, mean, invstd, y, eps, mom, omm, ddof, zero):
    N = x.shape[0]
    C = x.shape[1]
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    W = cuda.blockDim.x
    TY = cuda.blockDim.y
    c = cuda.blockIdx.x * W + tx
    valid = c < C
    sh = cuda.shared.array(MAX_THREADS, float64)

    # pass 1: mean
    acc = zero
    if valid:
        for n in range(ty, N, TY):
            acc += x[n, c]
    sh[ty * W + tx] = acc
    cuda.syncthreads()
    _tree(sh, 0, tx, ty, W, TY)
    if ty == 0 and valid:
        mean[c] = sh[tx] / N
    cuda.syncthreads()
    m = mean[c] if valid else zero

    # pass 2: variance, Σ (x − μ)²
    acc = zero
    if valid:
        for n in range(ty, N, TY):
            d = x[n, c] - m
            acc += d * d
    sh[ty * W + tx] = acc
    cuda.syncthreads()
    _tree(sh, 0, tx, ty, W, TY)
    if ty == 0 and valid:
        q = sh[tx]
        invstd[c] = 1.0 / math.sqrt(q / N + eps)
        rmean[c] = rules.running(rmean[c], m, mom, omm)
        rvar[c] = rules.running(rvar[c], q / (N - ddof), mom, omm)
    cuda.syncthreads()

    # pass 3: y = (x − μ)·γs + β
    if valid:
        a = gamma[c] * invstd[c]
        b = beta[c]
        for n in range(ty, N, TY):
            y[n, c] = rules.normalize(x[n, c], m, a, b)


@cuda.jit(cache=True)
def backward(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, inv_n, zero):
    N = x.shape[0]
    C = x.shape[1]
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    W = cuda.blockDim.x
    TY = cuda.blockDim.y
    c = cuda.blockIdx.x * W + tx
    valid = c < C
    sh = cuda.shared.array(BACKWARD_SHARED, float64)

    m = mean[c] if valid else zero
    s = invstd[c] if valid else zero
    sb = zero
    sg = zero
    if valid:
        for n in range(ty, N, TY):
            d = dy[n, c]
            sb += d
            sg += d * rules.xhat(x[n, c], m, s)
    sh[ty * W + tx] = sb
    sh[MAX_THREADS + ty * W + tx] = sg
    cuda.syncthreads()
    _tree(sh, 0, tx, ty, W, TY)
    _tree(sh, MAX_THREADS, tx, ty, W, TY)
    if ty == 0 and valid:
        dbeta[c] = sh[tx]
        dgamma[c] = sh[MAX_THREADS + tx]
    cuda.syncthreads()

    if valid:
        k = gamma[c] * s
        mb = dbeta[c] * inv_n
        mg = dgamma[c] * inv_n
        for n in range(ty, N, TY):
            dx[n, c] = rules.dx_rule(dy[n, c], rules.xhat(x[n, c], m, s), k, mb, mg)


@cuda.jit(cache=True)
def forward_eval(x, gamma, beta, rmean, rvar, y, eps, one):
    C = x.shape[1]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n = i // C
        c = i - n * C
        y[n, c] = rules.normalize(x[n, c], rmean[c], gamma[c] * rules.inv_std(rvar[c], eps, one), beta[c])
