"""Regularisation: inverted Dropout and L2 weight decay (*Deep Learning from Scratch* §6.4).

**Dropout** (``Dropout(dev, p)``): in training mode each element is zeroed with probability ``p``
and the survivors are scaled by 1/(1−p) (*inverted* dropout, so evaluation mode is the identity;
Saito scales by (1−p) at test time instead, which gives the same expected outputs).  Backward
multiplies by the *same* mask.

Masks are seeded and device-independent: each training forward draws one 62-bit key from the
layer's host generator ``layer.rng`` (a ``numpy.random.Generator`` seeded from the model's ``seed``;
checkpoints save its state), and a Numba kernel -- the same integer rule on the CPU and in CUDA --
keeps element ``i`` iff a hash of ``(i, key)`` clears the threshold (see ``gpunn/kernels/dropout.py``).
So the same seed gives bit-identical masks on the CPU and on a (simulated or real) GPU, and no
batch-sized mask crosses from host to device.  The mask is not stored either: backward recomputes it
from the same key in the same kind of kernel (``dx = dout · mask``).  ``layer.key`` is the key of the
last mask; ``layer.mask`` computes the mask itself (1/(1−p) or 0 per element) for inspection.

**Saito's dropout** is two options: ``inverted=False`` keeps the survivors unscaled in training and
scales by (1−p) in evaluation mode instead (his ``Dropout``), and ``rand=numpy.random.rand`` draws each
mask on the host as ``rand(*shape) > p`` -- from the global NumPy generator, in layer order, as his code
does, so ``numpy.random.seed`` reproduces his masks -- and copies it to the device (a batch-sized
transfer per training forward; the mask is kept for backward).

**Weight decay** λ (``MLP(..., weight_decay=λ)``): the loss gets ½λ·Σ‖W‖² over the weight matrices
and each weight gradient λW; biases and BatchNorm γ/β are not decayed.  Thanks to the flat-buffer
layout (weights first) both are one operation on the prefix ``[0, n_decay)`` of the buffers:
:func:`weight_decay_loss` and :func:`add_weight_decay`.
"""

from __future__ import annotations

from .backend import Device, on_device
from .backend import device as get_device
from .layers import Layer
from .validate import check_hyper

__all__ = ["Dropout", "weight_decay_loss", "add_weight_decay", "dropout_threshold"]

_BITS = 24
_M32 = 0xFFFFFFFF


def dropout_threshold(p: float) -> int:
    """The integer threshold of the mask kernel: an element is kept iff its 24-bit hash ≥ this,
    i.e. with probability 1 − round(p·2²⁴)/2²⁴."""
    return int(round(p * (1 << _BITS)))


class Dropout(Layer):
    """Dropout with drop probability ``p`` (0 ≤ p < 1), masks seeded by ``seed``.

    ``forward(x, train=True)`` draws a new mask (a new key from ``self.rng``) unless the layer is
    ``frozen``, in which case it reuses the last key (same shape → same mask): for gradient checks.
    ``forward(x, train=False)`` returns ``x`` unchanged (and backward then passes gradients through).
    ``backward(dout)`` multiplies by the mask of the last training forward, recomputed from its key.

    ``inverted=False``: Saito's convention -- survivors are not scaled in training, and evaluation
    mode returns ``x·(1−p)``.  ``rand``: a host function ``rand(*shape)`` of uniforms in [0, 1)
    (e.g. ``numpy.random.rand``); when given, each training mask is ``rand(*x.shape) > p``, drawn on
    the host and copied to the device, instead of the seeded hash kernel.
    """

    def __init__(self, dev, p: float = 0.5, seed=None, *, inverted: bool = True, rand=None):
        dev = get_device(dev)
        super().__init__(dev.xp, dev)
        self.p = check_hyper("dropout", p, low=0, high=1, high_open=True)
        if not isinstance(inverted, bool):
            raise TypeError(f"inverted must be True or False, got {inverted!r}")
        if rand is not None and not callable(rand):
            raise TypeError(
                f"rand must be None or a function rand(*shape) -> uniforms in [0, 1), got {rand!r}"
            )
        self.inverted = inverted
        self.rand = rand
        self.rng = dev.host_rng(seed)
        self.key = None  # key of the last mask drawn
        self.frozen = False
        self._shape = None  # shape of the last training forward's input (None: identity)
        self._mask = None  # the last mask (``rand`` masks only: kept for backward)

    def draw_key(self) -> int:
        """A fresh 62-bit mask key from the layer's generator (advances it)."""
        self.key = int(self.rng.integers(0, 1 << 62))
        return self.key

    def _scale(self) -> float:
        """What a kept element is multiplied by in training: 1/(1−p), or 1 when not inverted."""
        return 1.0 / (1.0 - self.p) if self.inverted else 1.0

    def _apply(self, a):
        if self.rand is not None:
            return a * self._mask
        a = self.xp.ascontiguousarray(a)
        out = self.xp.empty_like(a)
        key, dt = self.key, a.dtype
        ints = [Device.scalar(v, "uint64") for v in (key & _M32, key >> 32, dropout_threshold(self.p))]
        self.ops.elementwise(self.dev, "dropout", "apply")(
            a.size,
            a.reshape(-1),
            out.reshape(-1),
            *ints,
            Device.scalar(self._scale(), dt),
            Device.scalar(0, dt),
        )
        return out

    def _draw_rand_mask(self, shape, dtype):
        """A host mask ``rand(*shape) > p`` (times the training scale) as a device array."""
        u = Device.to_numpy(self.rand(*shape))
        if tuple(u.shape) != tuple(shape):
            raise ValueError(f"Dropout: rand{tuple(shape)} returned shape {tuple(u.shape)}")
        keep = u > self.p
        mask = keep * self._scale() if self.inverted else keep
        self._mask = self.dev.to_device(mask, dtype)

    @on_device
    def forward(self, x, train: bool = False):
        if not train or self.p == 0:
            self._shape = None
            if train or self.inverted or self.p == 0:
                return x
            return x * Device.scalar(1.0 - self.p, x.dtype)
        shape = tuple(x.shape)
        if self.rand is not None:
            if not (self.frozen and self._mask is not None and self._shape == shape):
                self._draw_rand_mask(shape, x.dtype)
        elif not (self.frozen and self.key is not None):
            self.draw_key()
        self._shape, self._dtype = shape, x.dtype
        return self._apply(x)

    @on_device
    def backward(self, dout):
        if self._shape is None:
            return dout
        if tuple(dout.shape) != self._shape:
            raise ValueError(
                f"Dropout.backward: dout has shape {tuple(dout.shape)}, the forward input {self._shape}"
            )
        return self._apply(dout)

    @property
    @on_device
    def mask(self):
        """The last training forward's mask (1/(1−p), or 1 when not inverted, where kept; 0 where
        dropped), computed on demand; None when the last forward was in evaluation mode."""
        if self._shape is None:
            return None
        return self._apply(self.xp.ones(self._shape, dtype=self._dtype))

    def __repr__(self):
        extra = "" if self.inverted else ", inverted=False"
        if self.rand is not None:
            extra += f", rand={getattr(self.rand, '__name__', 'custom')}"
        return f"Dropout(p={self.p:g}{extra})"


def weight_decay_loss(params, lam: float):
    """½λ·Σ‖W‖² over the weight prefix of a model's flat parameter buffer (an array scalar)."""
    w = params.flat[: params.layout.n_decay]
    return w.dot(w) * (0.5 * lam)


def add_weight_decay(params, grads, lam: float):
    """grads[W] += λ·W for every weight matrix (the prefix ``[0, n_decay)`` of the flat buffers)."""
    nd = params.layout.n_decay
    g = grads.flat[:nd]
    g += params.flat[:nd] * Device.scalar(lam, g.dtype)
