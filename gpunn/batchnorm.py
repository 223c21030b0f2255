"""Batch normalisation for fully connected layers (Ioffe & Szegedy 2015; *Deep Learning from Scratch*
§6.3), as fused Numba kernels on the CPU and in CUDA, next to a NumPy reference.

For a row-major batch ``x`` of shape ``(N, C)`` the statistics are per feature (column), over the
batch::

    μ = mean(x)   σ² = mean((x − μ)²)   x̂ = (x − μ)/√(σ² + ε)   y = γ·x̂ + β      (γ = 1, β = 0 at first)

**Training mode** (``forward(x, train=True)``, N ≥ 2) uses the batch statistics and updates the
running statistics; **evaluation mode** uses the running statistics (any N ≥ 1).  Backward::

    dβ = Σₙ dy     dγ = Σₙ dy·x̂     dx = (γ/√(σ²+ε)) · (dy − dβ/N − x̂·dγ/N)

Conventions (PyTorch's ``BatchNorm1d``, chosen and tested):

* ``eps`` = 1e-5 (Saito's code uses ``10e-7`` = 1e-6, Chainer/DeZero 2e-5);
* ``momentum`` = 0.1 is the weight of the *new* batch:
  ``running ← (1 − momentum)·running + momentum·batch``.  Saito's ``momentum=0.9`` is the weight of
  the *old* value: his 0.9 equals gpunn's 0.1;
* the running variance is updated with the **unbiased** batch variance σ²·N/(N−1) (Saito: biased);
  normalisation in training mode uses the biased σ², as everyone does;
* running mean starts at 0, running variance at 1.

Saito's conventions are options: ``BatchNorm(..., eps=1e-6, momentum=0.1, unbiased=False,
running_var_init=0.0)`` (``MLP(..., bn_eps=1e-6, bn_unbiased=False, bn_running_var_init=0.0)``) is
his ``BatchNormalization`` -- biased running variance, starting at 0 -- and with ``unbiased=False`` a
training batch of one row is allowed (its variance is 0: x̂ = 0, y = β).

Inside an :class:`~gpunn.MLP` (``batchnorm=True``) γ and β are views of the model's flat parameter
buffer (``params["gamma1"]``, ``params["beta1"]``, …, not weight-decayed) and their gradients views of
the gradient buffer; the running statistics are the model's *buffers* (``net.buffers``,
``"running_mean1"``, ``"running_var1"``, …), which no optimizer touches and checkpoints save.

The layer keeps a reference to its training input ``x`` (as :class:`~gpunn.layers.Affine` does) and
recomputes x̂ from it in backward: do not modify ``x`` in place between forward and backward.
Inside an MLP (``inplace``) it writes ``y`` and ``dx`` into buffers reused from step to step (one
pair per batch shape, as the MLP's other layers do) instead of two fresh N×C arrays per step.
"""

from __future__ import annotations

from .backend import Device, empty_aligned, host_xp, on_device
from .backend import device as get_device
from .layers import Layer
from .validate import check_hyper, positive_int

__all__ = [
    "BatchNorm",
    "EPS",
    "MOMENTUM",
    "batchnorm_forward_reference",
    "batchnorm_backward_reference",
]

EPS = 1e-5
"""Default ε added to the variance (PyTorch's)."""

MOMENTUM = 0.1
"""Default weight of the new batch in the running statistics (PyTorch's; Saito's 0.9 ≙ 0.1 here)."""


class BatchNorm(Layer):
    """BatchNorm over the features of ``(N, num_features)`` batches on device ``dev``.

    ``gamma``, ``beta`` (parameters), ``dgamma``, ``dbeta`` (their gradients, written by
    :meth:`backward`) and ``running_mean``, ``running_var`` may be given as views of a model's buffers;
    any left out are allocated (γ = 1, β = 0, running mean 0, running variance ``running_var_init``).
    ``unbiased``: update the running variance with the unbiased batch variance σ²·N/(N−1) (True,
    PyTorch) or the biased σ² (False, Saito; then a training batch of one row is allowed).
    """

    def __init__(
        self,
        dev,
        num_features: int,
        *,
        gamma=None,
        beta=None,
        dgamma=None,
        dbeta=None,
        running_mean=None,
        running_var=None,
        eps: float = EPS,
        momentum: float = MOMENTUM,
        dtype="float32",
        unbiased: bool = True,
        running_var_init: float = 1.0,
    ):
        dev = get_device(dev)
        super().__init__(dev.xp, dev)
        self.num_features = C = positive_int("num_features", num_features)
        self.eps = check_hyper("eps", eps, low=0, low_open=True)
        self.momentum = check_hyper("momentum", momentum, low=0, high=1)
        if not isinstance(unbiased, bool):
            raise TypeError(f"unbiased must be True or False, got {unbiased!r}")
        self.unbiased = unbiased
        running_var_init = check_hyper("running_var_init", running_var_init, low=0)
        dt = dev.dtype(gamma.dtype if gamma is not None else dtype)
        self.dtype = dt
        xp = dev.xp

        def own(a, fill):
            if a is None:
                return xp.full(C, fill, dtype=dt)
            if tuple(a.shape) != (C,) or a.dtype != dt:
                raise ValueError(
                    f"BatchNorm arrays must have shape ({C},) and dtype {dt.name}, got "
                    f"{tuple(a.shape)} {a.dtype}"
                )
            return a

        with dev:
            self.gamma, self.beta = own(gamma, 1), own(beta, 0)
            self.dgamma, self.dbeta = own(dgamma, 0), own(dbeta, 0)
            self.running_mean, self.running_var = own(running_mean, 0), own(running_var, running_var_init)
            self.mean = xp.zeros(C, dtype=dt)  # the last training batch's μ (saved for backward)
            self.invstd = xp.zeros(C, dtype=dt)  # and its 1/√(σ² + ε)
        self._work = {}  # scratch of the CPU operations (gpunn.kernels.cpu_ops fills it)
        self.x = None

    # -- helpers --------------------------------------------------------------------------------
    def _scalar(self, v):
        return Device.scalar(v, self.dtype)

    def _input(self, x, what):
        if tuple(x.shape[1:]) != (self.num_features,) or x.ndim != 2:
            raise ValueError(
                f"BatchNorm({self.num_features}): {what} must have shape (N, "
                f"{self.num_features}), got {tuple(x.shape)}"
            )
        if x.dtype != self.dtype:
            raise TypeError(
                f"BatchNorm({self.num_features}): {what} has dtype {x.dtype}, the layer {self.dtype.name}"
            )
        if not self.dev.owns(x):
            raise TypeError(
                f"BatchNorm: {what} is {self.dev.array_kind(x)}, the layer lives on {self.dev.name}"
            )
        return self.xp.ascontiguousarray(x)

    # -- forward / backward ---------------------------------------------------------------------
    def _out(self, key, like):
        """A fresh output array, or (``inplace``, set inside an MLP) one reused per batch shape; 64-byte
        aligned either way (streaming stores, see :mod:`gpunn.kernels.batchnorm`)."""
        if self.inplace:
            return self._buf(key, like.shape, like.dtype)
        return empty_aligned(self.xp, like.shape, like.dtype)

    @on_device
    def forward(self, x, train: bool = False):
        x = self._input(x, "x")
        n = x.shape[0]
        y = self._out("y", x)
        s = self._scalar
        if train:
            if n < 2 and self.unbiased:
                raise ValueError(
                    f"BatchNorm in training mode needs a batch of at least 2 rows (got {n}): "
                    "the unbiased batch variance of one sample is undefined.  Use a larger "
                    "batch, evaluation mode (train=False), which uses the running "
                    "statistics, or unbiased=False (Saito's biased running variance)"
                )
            args = (x, self.gamma, self.beta, self.running_mean, self.running_var, self.mean, self.invstd, y)
            hyper = (s(self.eps), s(self.momentum), s(1.0 - self.momentum))
            ddof = Device.scalar(1 if self.unbiased else 0, "int64")
            self.ops.batchnorm_forward_train(self.dev, *args, *hyper, ddof, self._work)
            self.x = x
        else:
            args = (x, self.gamma, self.beta, self.running_mean, self.running_var)
            self.ops.batchnorm_forward_eval(self.dev, *args, y, s(self.eps), self._work)
            self.x = None
        return y

    @on_device
    def backward(self, dout):
        """dx, given dout = ∂L/∂y of the last *training-mode* forward; writes ``dgamma``, ``dbeta``."""
        x = self.x
        if x is None:
            raise RuntimeError("BatchNorm.backward needs a preceding forward(x, train=True)")
        dout = self._input(dout, "dout")
        if dout.shape != x.shape:
            raise ValueError(
                f"BatchNorm.backward: dout has shape {tuple(dout.shape)}, the forward input {tuple(x.shape)}"
            )
        dx = self._out("dx", x)
        args = (dout, x, self.gamma, self.mean, self.invstd, dx, self.dgamma, self.dbeta)
        inv_n = self._scalar(1.0 / x.shape[0])
        self.ops.batchnorm_backward(self.dev, *args, inv_n, self._work)
        return dx

    def __repr__(self):
        extra = "" if self.unbiased else ", unbiased=False"
        return f"BatchNorm({self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}{extra})"


# ------------------------------------------------------------------------------------------------
# NumPy reference (the textbook's multi-operation code, for tests and benchmarks)
# ------------------------------------------------------------------------------------------------
def batchnorm_forward_reference(
    x,
    gamma,
    beta,
    running_mean,
    running_var,
    train: bool = True,
    eps: float = EPS,
    momentum: float = MOMENTUM,
    xp=None,
    unbiased: bool = True,
):
    """``(y, cache)``, Saito's ``BatchNormalization.forward`` with gpunn's conventions; updates
    ``running_mean``/``running_var`` in place in training mode (with the unbiased batch variance, or
    the biased one with ``unbiased=False``).  ``xp`` defaults to NumPy."""
    xp = host_xp() if xp is None else xp
    if train:
        n = x.shape[0]
        if n < 2 and unbiased:
            raise ValueError("training mode needs a batch of at least 2 rows")
        mu = x.mean(axis=0)
        xc = x - mu
        var = xp.mean(xc**2, axis=0)
        std = xp.sqrt(var + eps)
        xn = xc / std
        running_mean[...] = (1 - momentum) * running_mean + momentum * mu
        running_var[...] = (1 - momentum) * running_var + momentum * var * (n / (n - 1) if unbiased else 1)
        cache = (xc, std, xn, gamma)
    else:
        xn = (x - running_mean) / xp.sqrt(running_var + eps)
        cache = None
    return gamma * xn + beta, cache


def batchnorm_backward_reference(dout, cache, xp=None):
    """``(dx, dgamma, dbeta)``, Saito's ``BatchNormalization.backward`` (the computational graph)."""
    xp = host_xp() if xp is None else xp
    xc, std, xn, gamma = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = xp.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -xp.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / n) * xc * dvar
    dmu = xp.sum(dxc, axis=0)
    dx = dxc - dmu / n
    return dx, dgamma, dbeta
