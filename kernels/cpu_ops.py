"""The kernel operations on the CPU: the serial ``@njit`` kernels of ``activations.py`` and
``batchnorm.py``, and the elementwise topics' CPU loops (:func:`elementwise`).

:mod:`gpunn.kernels.cuda_ops` defines the same functions with the same signatures; callers get one
of the two from :func:`gpunn.kernels.ops` and pass the device first.  Scalars the kernels need besides
the caller's (½, 1, 0, the activation's slope) come from :func:`gpunn.kernels.consts`.
"""

from __future__ import annotations

from functools import cache

from ..backend import host_xp
from ..cpu_threads import parallel_kernel
from . import _module, consts
from . import activations as _act
from . import batchnorm as _bn

np = host_xp()


# -- fused MLP-step kernels (activations.py) ----------------------------------------------------
def add_bias(dev, z, b):
    """``z += b`` on every row of ``z``."""
    _act.add_bias_cpu(z, b)


def col_sum(dev, d, db):
    """``db = Σ_rows d``."""
    _act.col_sum_cpu(d, db, consts(d.dtype)[2])


def _tanh(out, kind, half, one):
    """Sigmoid/tanh after the affine part is in ``out``: NumPy's SIMD tanh, then σ = ½(1 + tanh)."""
    np.tanh(out, out=out)
    if kind == 1:
        _act.sigmoid_finish_cpu(out.reshape(-1), half, one)


def bias_act(dev, z, b, out, kind, slope):
    """``out = act(z + b)`` (activation code ``kind``, its scalar ``slope``)."""
    half, one, zero, s = consts(z.dtype, slope)
    if kind in (1, 2):
        _act.bias_scale_cpu(z, b, out, half if kind == 1 else one)
        _tanh(out, kind, half, one)
    else:
        _act.bias_act_cpu(z, b, out, kind, s, half, one, zero)


def act(dev, z, out, kind, slope):
    """``out = act(z)``."""
    half, one, zero, s = consts(z.dtype, slope)
    if kind in (1, 2):
        np.multiply(z, half if kind == 1 else one, out=out)
        _tanh(out, kind, half, one)
    else:
        _act.act_cpu(z.reshape(-1), out.reshape(-1), kind, s, half, one, zero)


def act_grad(dev, d, a, dz, kind, slope):
    """``dz = d ⊙ act'`` (``a``: the activation's output, or its input for GELU)."""
    half, one, zero, s = consts(d.dtype, slope)
    _act.act_grad_cpu(d.reshape(-1), a.reshape(-1), dz.reshape(-1), kind, s, one, zero)


def act_grad_bias(dev, d, a, dz, db, kind, slope):
    """:func:`act_grad`, and ``db = Σ_rows dz`` (one pass on the CPU)."""
    half, one, zero, s = consts(d.dtype, slope)
    _act.act_grad_bias_cpu(d, a, dz, db, kind, s, one, zero)


def softmax_xent(dev, y, t, d, row_loss, inv_n, one, zero, nan):
    """Softmax cross-entropy of scores ``y`` and targets ``t`` (class indices, or 2-D
    distributions): the gradient into ``d``, the mean loss returned (a scalar of ``y``'s dtype).
    ``row_loss`` and ``nan`` are the CUDA kernels' (per-row losses; the loss of a bad label): unused
    here, where the labels were checked and the kernel sums the losses itself."""
    kernel = _act.softmax_xent_soft_cpu if t.ndim == 2 else _act.softmax_xent_cpu
    return y.dtype.type(kernel(y, t, d, inv_n, one, zero))


# -- BatchNorm (batchnorm.py) -------------------------------------------------------------------
def _workspace(work, x):
    """The training kernels' scratch for the shape of ``x``, kept in the layer's ``work`` dict: float64
    ``(segments, 2, C)`` and the array dtype ``(segments, 3, C)``."""
    k = _bn.n_segments(*x.shape)
    w = work.get(("segments", k))
    if w is None:
        C = x.shape[1]
        w = work["segments", k] = (np.empty((k, 2, C), dtype="float64"), np.empty((k, 3, C), dtype=x.dtype))
    return w


def batchnorm_forward_train(dev, x, gamma, beta, rmean, rvar, mean, invstd, y, eps, mom, omm, ddof, work):
    """Training forward: batch statistics into ``mean``/``invstd``, running statistics updated, ``y``
    written.  ``work``: the layer's scratch dict (filled here on the CPU, unused by CUDA)."""
    sums, acc = _workspace(work, x)
    _bn.forward_train_cpu(x, gamma, beta, rmean, rvar, mean, invstd, y, sums, acc, eps, mom, omm, ddof)


def batchnorm_forward_eval(dev, x, gamma, beta, rmean, rvar, y, eps, work):
    """Evaluation forward with the running statistics into ``y``."""
    scale = work.get("scale")
    if scale is None:
        scale = work["scale"] = np.empty(x.shape[1], dtype=x.dtype)
    _bn.forward_eval_cpu(
        x, gamma, beta, rmean, rvar, scale, y, eps, consts(x.dtype)[1], _bn.n_row_chunks(*x.shape)
    )


def batchnorm_backward(dev, dy, x, gamma, mean, invstd, dx, dgamma, dbeta, inv_n, work):
    """Backward of the training forward: ``dgamma``, ``dbeta`` and ``dx`` written."""
    sums, acc = _workspace(work, x)
    _bn.backward_cpu(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, sums, acc, inv_n)


# -- elementwise topics (optim.py, dropout.py) --------------------------------------------------
@cache
def elementwise(dev, topic, rule):
    """``f(n, *args)`` running kernel ``<rule>_cpu`` of ``topic`` over ``n`` elements.

    A topic with ``PARALLEL_MIN`` and ``serial_kernel(rule)`` (optim, dropout) runs calls of at least
    ``PARALLEL_MIN`` elements through :func:`gpunn.cpu_threads.parallel_kernel`: its ``prange``
    kernel on the policy's thread count, or the serial twin (same results) on one thread or while
    another Python thread is inside a parallel kernel."""
    module = _module(topic, False)
    kernel = getattr(module, f"{rule}_cpu")
    parallel_min = getattr(module, "PARALLEL_MIN", None)
    serial = module.serial_kernel(rule) if hasattr(module, "serial_kernel") else None

    def run(n, *args):
        if serial is not None and n >= parallel_min:
            parallel_kernel(kernel, serial, args)
        elif n:
            kernel(*args)

    return run
