"""Layers with the textbook's forward and backward passes.

Convention (as in *Deep Learning from Scratch* and the ai-edu course): a batch is a row-major
``(N, features)`` array, ``forward(x, train)`` caches what ``backward(dout)`` needs, and
``backward`` returns ∂L/∂x given ``dout`` = ∂L/∂out.  Parameter layers write their gradients
*into* views of the model's flat gradient buffer, never allocating new gradient arrays.

Every layer gets its array namespace ``xp`` (NumPy or CuPy) from the device; none imports NumPy.

**Fast path.**  A layer built without a device (``Sigmoid(xp)``) runs the textbook's array code
(the reference).  A layer given its device (``dev=``, as :class:`~gpunn.MLP` does unless
``fused=False``) runs fused Numba kernels (``gpunn.kernels.activations``, CPU or CUDA, through
:func:`gpunn.kernels.ops`) and reuses preallocated buffers per batch size; inside an MLP it also
works in place (``inplace``): an activation overwrites its input and its incoming gradient, a
hidden Affine leaves its bias to the activation after it (``act.bias``: one bias + activation
kernel, one activation-gradient + bias gradient kernel) and the first Affine skips ∂L/∂x
(``need_dx = False``: never used).
"""

from __future__ import annotations

import math

from . import cpu_threads
from .backend import empty_aligned, host_xp
from .kernels import ops

__all__ = [
    "Layer",
    "Affine",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "GELU",
    "Identity",
    "get_activation",
    "softmax",
    "ACTIVATIONS",
]


class Layer:
    """A differentiable step of a network (``dev``: run the fused kernels of that device, through its
    kernel operations ``ops``, :func:`gpunn.kernels.ops`).

    ``is_activation``: whether the layer is a hidden layer's activation (``MLP`` puts a layer's
    Dropout after it, and finds it by this attribute; :func:`get_activation` sets it on any layer it
    builds)."""

    is_activation = False

    def __init__(self, xp, dev=None):
        self.xp = xp
        self.dev = dev
        self.ops = None if dev is None else ops(dev)  # the kernel operations of dev
        self.inplace = False
        self._bufs = {}

    def _buf(self, key, shape, dtype):
        """A preallocated scratch array per (key, shape, dtype): reused from step to step."""
        k = (key, shape, dtype)
        a = self._bufs.get(k)
        if a is None:
            if len(self._bufs) > 16:  # many batch sizes: forget the old ones
                self._bufs.clear()
            a = self._bufs[k] = empty_aligned(self.xp, shape, dtype)
        return a

    def forward(self, x, train: bool = False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Affine(Layer):
    """Z = X·W + B.  Backward: dW = Xᵀ·dZ, dB = Σ_rows dZ, dX = dZ·Wᵀ.

    ``W``, ``b`` are views of the model's parameter buffer and ``dW``, ``db`` of its gradient buffer.
    """

    def __init__(self, xp, W, b, dW, db, dev=None):
        super().__init__(xp, dev)
        self.W, self.b, self.dW, self.db = W, b, dW, db
        self.x = None
        self._host = xp is host_xp()  # host GEMMs go through gpunn.cpu_threads.matmul
        self.bias_deferred = False  # fast path: the next activation adds b and computes db
        self.need_dx = True  # fast path: False for a first layer (∂L/∂x unused)

    def forward(self, x, train=False):
        self.x = x
        if self.dev is None:
            out = self._mm(x, self.W, train=train)
            out += self.b
            return out
        out = self._buf("out", (x.shape[0], self.W.shape[1]), self.W.dtype) if self.inplace else None
        out = self._mm(x, self.W, out, train)
        if not self.bias_deferred:
            self.ops.add_bias(self.dev, out, self.b)
        return out

    def backward(self, dout):
        self._mm(self.x.T, dout, self.dW)
        if self.dev is None:
            self.xp.sum(dout, axis=0, out=self.db)
            return self._mm(dout, self.W.T)
        if not self.bias_deferred:
            self.ops.col_sum(self.dev, dout, self.db)
        if not self.need_dx:
            return None
        dx = self._buf("dx", (dout.shape[0], self.W.shape[0]), dout.dtype) if self.inplace else None
        return self._mm(dout, self.W.T, dx)

    def _mm(self, a, b, out=None, train=True):
        """``a @ b`` (into ``out`` when given); on the host with the BLAS thread count of
        :func:`gpunn.cpu_threads.gemm_threads` (see there for ``train``)."""
        if self._host:
            return cpu_threads.matmul(self.xp.matmul, a, b, out, train)
        return self.xp.matmul(a, b, out=out)

    def __repr__(self):
        return f"Affine({self.W.shape[0]}, {self.W.shape[1]})"


class _Activation(Layer):
    """An elementwise activation: the textbook code (``_ref_forward``/``_ref_backward``) without a
    device, the fused kernels of ``gpunn.kernels.activations`` with one.

    What a subclass declares (class attributes; the kernels' rules are in
    ``gpunn.kernels.activations``):

    * ``KIND`` -- its code in the kernels; ``slope`` -- the one scalar the kernels get for it.
    * ``GRAD_FROM`` -- ``"output"`` (default) when its derivative is a function of its output
      (σ' = σ(1 − σ)): the fused forward may then overwrite its input; ``"input"`` when it needs
      the input (GELU): the layer keeps z and writes its output elsewhere.
    * ``FUSES_BIAS`` -- whether an ``MLP`` may hand it the preceding Affine's bias (one bias +
      activation kernel forward, one activation-gradient + bias-gradient kernel backward).  Only
      for an output-gradient activation: the fused forward never writes z + b.
    * ``AUTO_INIT`` -- the weight initialiser ``init="auto"`` picks for the Affine before it.
    """

    KIND = 0
    slope = 0.0
    is_activation = True
    GRAD_FROM = "output"
    FUSES_BIAS = True
    AUTO_INIT = "xavier_normal"
    bias = None  # fast path inside an MLP: the preceding Affine's b (added here) ...
    db = None  # ... and its gradient (written by backward)

    def forward(self, x, train=False):
        if self.dev is None:
            return self._ref_forward(x)
        if self.GRAD_FROM == "input":
            self.x = x
            out = self._buf("out", x.shape, x.dtype) if self.inplace else self.xp.empty_like(x)
        else:
            out = x if self.inplace else self.xp.empty_like(x)
        if self.bias is not None:
            self.ops.bias_act(self.dev, x, self.bias, out, self.KIND, self.slope)
        else:
            self.ops.act(self.dev, x, out, self.KIND, self.slope)
        self.out = out
        return out

    def backward(self, dout):
        if self.dev is None:
            return self._ref_backward(dout)
        dz = dout if self.inplace else self.xp.empty_like(dout)
        a = self.x if self.GRAD_FROM == "input" else self.out
        if self.db is not None:
            self.ops.act_grad_bias(self.dev, dout, a, dz, self.db, self.KIND, self.slope)
        else:
            self.ops.act_grad(self.dev, dout, a, dz, self.KIND, self.slope)
        return dz


class Sigmoid(_Activation):
    """A = σ(Z) = 1/(1+e^(−Z)), computed as ½(1+tanh(Z/2)) (no overflow).  dZ = dA ⊙ A ⊙ (1 − A)."""

    KIND = 1

    def _ref_forward(self, x):
        out = self.xp.tanh(x * 0.5)
        out += 1
        out *= 0.5
        self.out = out
        return out

    def _ref_backward(self, dout):
        a = self.out
        return dout * a * (1 - a)


class Tanh(_Activation):
    """A = tanh(Z).  dZ = dA ⊙ (1 − A²)."""

    KIND = 2

    def _ref_forward(self, x):
        self.out = self.xp.tanh(x)
        return self.out

    def _ref_backward(self, dout):
        a = self.out
        return dout * (1 - a * a)


class ReLU(_Activation):
    """A = max(0, Z).  dZ = dA where Z > 0, else 0.  As the textbooks' mask code (``mask = Z <= 0``):
    −∞ gives 0, NaN stays NaN, and a masked gradient is 0 even when dA is NaN."""

    KIND = 3
    AUTO_INIT = "he_normal"

    def _ref_forward(self, x):
        self.mask = x <= 0
        return self.xp.where(self.mask, x.dtype.type(0), x)

    def _ref_backward(self, dout):
        return self.xp.where(self.mask, dout.dtype.type(0), dout)


class LeakyReLU(_Activation):
    """A = Z if Z > 0 else α·Z (α = ``slope``, default 0.01).  dZ = dA ⊙ (1 if Z > 0 else α)."""

    KIND = 4
    AUTO_INIT = "he_normal"

    def __init__(self, xp, slope: float = 0.01, dev=None):
        super().__init__(xp, dev)
        if not (0 <= slope < 1):
            raise ValueError(f"LeakyReLU slope must be in [0, 1), got {slope}")
        self.slope = float(slope)

    def _ref_forward(self, x):
        self.mask = x > 0
        return self.xp.where(self.mask, x, x * self.slope)

    def _ref_backward(self, dout):
        return self.xp.where(self.mask, dout, dout * self.slope)

    def __repr__(self):
        return f"LeakyReLU(slope={self.slope})"


class GELU(_Activation):
    """A = ½ Z (1 + tanh(√(2/π) (Z + 0.044715 Z³))): GELU in its tanh approximation (Hendrycks &
    Gimpel 2016; PyTorch's ``GELU(approximate="tanh")``, ``jax.nn.gelu``'s default; within ~1e-3 of
    the exact Z·Φ(Z), which needs erf -- not a NumPy function).  With t the tanh above,
    dZ = dA ⊙ (½(1 + t) + ½ Z (1 − t²) √(2/π) (1 + 3·0.044715 Z²)): a function of the *input* Z, so
    the layer keeps Z (``GRAD_FROM = "input"``) and does not take the Affine's bias into its kernel
    (``FUSES_BIAS = False``).  He initialisation under ``init="auto"``, as for ReLU."""

    KIND = 5
    slope = 0.044715  # the kernels' scalar: the cubic coefficient
    GRAD_FROM = "input"
    FUSES_BIAS = False
    AUTO_INIT = "he_normal"

    def _ref_forward(self, x):
        self.x = x
        k = math.sqrt(2 / math.pi)
        self.t = self.xp.tanh(k * (x + 0.044715 * x**3))
        return 0.5 * x * (1 + self.t)

    def _ref_backward(self, dout):
        x, t = self.x, self.t
        k = math.sqrt(2 / math.pi)
        return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))


class Identity(_Activation):
    """A = Z."""

    KIND = 0

    def forward(self, x, train=False):
        if self.dev is None or self.bias is None:
            return x
        return super().forward(x, train)

    def backward(self, dout):
        if self.dev is None or self.db is None:
            return dout
        return super().backward(dout)


ACTIVATIONS = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "leakyrelu": LeakyReLU,
    "gelu": GELU,
    "identity": Identity,
    "linear": Identity,
}


def get_activation(name, xp, dev=None) -> Layer:
    """An activation layer from its name (``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"leaky_relu"``,
    ``"gelu"``, ``"identity"``: the keys of ``ACTIVATIONS``) or a ``Layer`` subclass; ``dev``: use the
    fused kernels of that device (only for gpunn's own activations)."""
    if isinstance(name, type) and issubclass(name, Layer):
        if issubclass(name, _Activation):
            return name(xp, dev=dev)
        layer = name(xp)
        layer.is_activation = True  # built as an activation: MLP finds it by this
        return layer
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name or a Layer class, got {name!r}")
    cls = ACTIVATIONS.get(name.strip().lower())
    if cls is None:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    return cls(xp, dev=dev)


def softmax(xp, z):
    """Row-wise softmax, stable: exp(z − max z) / Σ exp(z − max z)."""
    e = z - z.max(axis=1, keepdims=True)
    xp.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e
