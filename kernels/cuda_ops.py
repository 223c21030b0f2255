"""The kernel operations on a CUDA device (real or simulated): the same functions, with the same
signatures, as :mod:`gpunn.kernels.cpu_ops`, launching the ``@cuda.jit`` kernels of the
``*_cuda.py`` modules through :func:`gpunn.kernels.launch` (the GPU, CuPy's current stream, the
recorded signatures) over the grids chosen here.

This module does not import numba.cuda: :func:`gpunn.kernels.launch` looks the kernels up.
"""

from __future__ import annotations

from functools import cache, partial

from . import consts, launch


# -- grids --------------------------------------------------------------------------------------
@cache
def _sm_count(dev) -> int:
    """The number of streaming multiprocessors of GPU ``dev``."""
    return dev.xp.cuda.Device(dev.index).attributes["MultiProcessorCount"]


def _elementwise_grid(dev, n: int) -> tuple[int, int]:
    """(blocks, threads per block) for a grid-stride loop over ``n`` elements.

    On a GPU: 256 threads, at most 32 blocks per SM (the loop strides over the rest).  In the
    simulator (one OS thread per CUDA thread): 32 threads, at most 2 blocks.
    """
    if dev.simulated:
        threads, cap = 32, 2
    else:
        threads, cap = 256, 32 * _sm_count(dev)
    return max(1, min(cap, -(-n // threads))), threads


def _tile_shape(dev, n_features: int) -> tuple[int, tuple[int, int]]:
    """``(blocks, (W, TY))`` of a BatchNorm reduction launch (``batchnorm_cuda.py``): ``W`` features per
    block, ``TY`` row lanes (a power of two), ``W·TY`` ≤ 256 threads (its ``MAX_THREADS``).

    On a GPU, the widest tile (32, 16 or 8 features: whole 128/64/32-byte segments of a row) that
    still gives at least two blocks per SM, with 256 threads per block.  In the simulator (one OS
    thread per CUDA thread) 8 × 4 threads."""
    if dev.simulated:
        W, TY = 8, 4
    else:
        target = 2 * _sm_count(dev)
        W = 8
        for w in (32, 16):
            if -(-n_features // w) >= target:
                W = w
                break
        TY = 256 // W
    return -(-n_features // W), (W, TY)


def _launch(dev, topic, name, n, *args):
    """Launch kernel ``name`` of ``topic`` over ``n`` elements (none when ``n == 0``)."""
    if n:
        launch(dev, topic, name, _elementwise_grid(dev, n), *args)


# -- fused MLP-step kernels (activations_cuda.py) -----------------------------------------------
def add_bias(dev, z, b):
    """``z += b`` on every row of ``z``."""
    _launch(dev, "activations", "add_bias", z.size, z, b)


def col_sum(dev, d, db):
    """``db = Σ_rows d``."""
    _launch(dev, "activations", "col_sum", db.size, d, db, consts(d.dtype)[2])


def bias_act(dev, z, b, out, kind, slope):
    """``out = act(z + b)`` (activation code ``kind``, its scalar ``slope``)."""
    half, one, zero, s = consts(z.dtype, slope)
    _launch(dev, "activations", "bias_act", z.size, z, b, out, kind, s, half, one, zero)


def act(dev, z, out, kind, slope):
    """``out = act(z)``."""
    half, one, zero, s = consts(z.dtype, slope)
    _launch(dev, "activations", "act", z.size, z.reshape(-1), out.reshape(-1), kind, s, half, one, zero)


def act_grad(dev, d, a, dz, kind, slope):
    """``dz = d ⊙ act'`` (``a``: the activation's output, or its input for GELU)."""
    half, one, zero, s = consts(d.dtype, slope)
    args = (d.reshape(-1), a.reshape(-1), dz.reshape(-1), kind, s, one, zero)
    _launch(dev, "activations", "act_grad", d.size, *args)


def act_grad_bias(dev, d, a, dz, db, kind, slope):
    """:func:`act_grad`, and ``db = Σ_rows dz`` (two launches on a GPU)."""
    act_grad(dev, d, a, dz, kind, slope)
    col_sum(dev, dz, db)


def softmax_xent(dev, y, t, d, row_loss, inv_n, one, zero, nan):
    """Softmax cross-entropy of scores ``y`` and targets ``t`` (class indices, or 2-D
    distributions): the gradient into ``d``, the mean loss returned (a 0-d device array: summed from
    the per-row losses in ``row_loss`` on the device, no host synchronisation).  A row whose label is
    out of range gets the loss ``nan``."""
    grid = _elementwise_grid(dev, y.shape[0])
    if t.ndim == 2:
        launch(dev, "activations", "softmax_xent_soft", grid, y, t, d, row_loss, inv_n, one, zero)
    else:
        launch(dev, "activations", "softmax_xent", grid, y, t, d, row_loss, inv_n, one, zero, nan)
    return row_loss.sum() * inv_n


# -- BatchNorm (batchnorm_cuda.py) --------------------------------------------------------------
def batchnorm_forward_train(dev, x, gamma, beta, rmean, rvar, mean, invstd, y, eps, mom, omm, ddof, work):
    """Training forward: batch statistics into ``mean``/``invstd``, running statistics updated, ``y``
    written (one launch).  ``work``: the layer's scratch dict (used by the CPU, not here)."""
    args = (x, gamma, beta, rmean, rvar, mean, invstd, y, eps, mom, omm, ddof, consts(x.dtype)[2])
    launch(dev, "batchnorm", "forward_train", _tile_shape(dev, x.shape[1]), *args)


def batchnorm_forward_eval(dev, x, gamma, beta, rmean, rvar, y, eps, work):
    """Evaluation forward with the running statistics into ``y``."""
    grid = _elementwise_grid(dev, x.size)
    launch(dev, "batchnorm", "forward_eval", grid, x, gamma, beta, rmean, rvar, y, eps, consts(x.dtype)[1])


def batchnorm_backward(dev, dy, x, gamma, mean, invstd, dx, dgamma, dbeta, inv_n, work):
    """Backward of the training forward: ``dgamma``, ``dbeta`` and ``dx`` written (one launch)."""
    args = (dy, x, gamma, mean, invstd, dx, dgamma, dbeta, inv_n, consts(x.dtype)[2])
    launch(dev, "batchnorm", "backward", _tile_shape(dev, x.shape[1]), *args)


# -- elementwise topics (optim_cuda.py, dropout_cuda.py) ----------------------------------------
@cache
def elementwise(dev, topic, rule):
    """``f(n, *args)`` launching kernel ``rule`` of ``topic`` over ``n`` elements."""
    return partial(_launch, dev, topic, rule)
