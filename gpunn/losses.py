"""Loss functions: ``forward(y, t)`` → scalar loss (mean over the batch), ``backward()`` → ∂L/∂y.

``y`` is an ``(N, C)`` array of scores (or probabilities, for :class:`CrossEntropy` and
:class:`BinaryCrossEntropy`); ``t`` holds class indices ``(N,)`` or targets of the same shape
as ``y`` (one-hot, soft labels, regression targets).  Every loss is a *mean over the batch*:

======================  ======================================================  ====================
class                   L                                                       ∂L/∂y
======================  ======================================================  ====================
SoftmaxCrossEntropy     −(1/N) Σₙ Σₖ tₙₖ log softmax(yₙ)ₖ                      (softmax(y) − t)/N
CrossEntropy            −(1/N) Σₙ Σₖ tₙₖ log(yₙₖ + 1e-7)   (y: probabilities)  −t/((y+1e-7)·N)
BinaryCrossEntropy      −(1/N) Σ [t log y + (1−t) log(1−y)]  (y: probabilities;  (y − t)/(y(1−y)N);
                        ``from_logits=True``: y are logits, σ applied stably)    (σ(y) − t)/N
MeanSquaredError        (1/N) · ½ Σ (y − t)²                                    (y − t)/N
L1Loss                  (1/N) Σ |y − t|                                         sign(y − t)/N
Hinge                   (1/N) Σₙ Σ_{k≠tₙ} max(0, yₙₖ − yₙ,tₙ + 1)  (multiclass   see the code
                        SVM, as in CS231n)
======================  ======================================================  ====================
"""

from __future__ import annotations

__all__ = [
    "Loss",
    "SoftmaxCrossEntropy",
    "CrossEntropy",
    "BinaryCrossEntropy",
    "MeanSquaredError",
    "L1Loss",
    "Hinge",
    "get_loss",
    "loss_name",
    "one_hot",
]

from .backend import Device, host_xp
from .kernels import ops

EPS = 1e-7


def one_hot(xp, t, n_classes: int, dtype):
    """Class indices ``(N,)`` → one-hot ``(N, n_classes)`` of ``dtype``; 2-D ``t`` is returned cast."""
    if t.ndim == 2:
        return t.astype(dtype, copy=False)
    out = xp.zeros((t.shape[0], n_classes), dtype=dtype)
    out[xp.arange(t.shape[0]), t] = 1
    return out


class Loss:
    """Base class; ``forward`` caches what ``backward`` needs."""

    #: True when the loss applies its own output non-linearity (softmax/sigmoid) to raw scores
    from_scores = True
    #: True when 2-D targets must be probability distributions (rows >= 0 summing to 1)
    targets_distribution = False

    def __init__(self, xp):
        self.xp = xp

    def __call__(self, y, t):
        return self.forward(y, t)

    def forward(self, y, t):
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError

    def _targets(self, y, t):
        return one_hot(self.xp, t, y.shape[1], y.dtype)

    def __repr__(self):
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax of the scores then cross-entropy, via log-softmax (no log(0), no overflow).

    With ``dev`` set (an :class:`~gpunn.MLP` does unless ``fused=False``) forward runs one fused
    kernel per batch (``gpunn.kernels.activations.softmax_xent*``) computing the loss *and* the
    gradient (into a buffer reused per batch size); ``backward`` returns that buffer."""

    dev = None
    targets_distribution = True

    def forward(self, y, t):
        if self.dev is not None and y.ndim == 2 and y.flags.c_contiguous and y.dtype == self._dtype_of(y):
            return self._fused(y, t)
        xp = self.xp
        self.d = None
        n = y.shape[0]
        shifted = y - y.max(axis=1, keepdims=True)
        log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_z
        self.p = xp.exp(log_p)
        self.t = t
        if t.ndim == 1:
            return -log_p[xp.arange(n), t].sum() / n
        return -(t * log_p).sum() / n

    @staticmethod
    def _dtype_of(y):
        return y.dtype if y.dtype.kind == "f" else None

    def _fused(self, y, t):
        dev, xp = self.dev, self.xp
        n = y.shape[0]
        dt = y.dtype
        st = getattr(self, "_state", None)
        if st is None or st[0].shape != y.shape or st[0].dtype != dt:
            # per batch shape: the gradient buffer, per-row losses (CUDA), and the kernel scalars
            st = self._state = (
                xp.empty(y.shape, dtype=dt),
                xp.empty(n, dtype=dt),
                *(Device.scalar(v, dt) for v in (1.0 / n, 1.0, 0.0, float("nan"))),
            )
        d, row_loss, inv_n, one, zero, nan = st
        if t.ndim == 2:
            t = xp.ascontiguousarray(t, dtype=dt)
        loss = ops(dev).softmax_xent(dev, y, t, d, row_loss, inv_n, one, zero, nan)
        self.d, self.t, self.p = d, t, None
        return loss

    def backward(self):
        if self.d is not None:
            return self.d
        n = self.p.shape[0]
        d = self.p.copy()
        if self.t.ndim == 1:
            d[self.xp.arange(n), self.t] -= 1
        else:
            d -= self.t
        d /= n
        return d


class CrossEntropy(Loss):
    """The textbook's ``cross_entropy_error`` on probabilities ``y`` (e.g. a softmax output)."""

    from_scores = False
    targets_distribution = True

    def forward(self, y, t):
        self.y, self.t = y, self._targets(y, t)
        return -(self.t * self.xp.log(y + EPS)).sum() / y.shape[0]

    def backward(self):
        return -self.t / ((self.y + EPS) * self.y.shape[0])


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy per output unit; ``from_logits=True`` applies the sigmoid stably."""

    def __init__(self, xp, from_logits: bool = False):
        super().__init__(xp)
        self.from_logits = from_logits
        self.from_scores = from_logits

    def forward(self, y, t):
        xp = self.xp
        self.t = t = self._targets(y, t)
        n = y.shape[0]
        if self.from_logits:
            self.p = 0.5 * (1 + xp.tanh(0.5 * y))
            # −[t log σ(y) + (1−t) log(1−σ(y))] = softplus(y) − t·y, softplus(y) = log(1+e^y)
            return (xp.logaddexp(0, y) - t * y).sum() / n
        self.y = xp.clip(y, EPS, 1 - EPS)
        return -(t * xp.log(self.y) + (1 - t) * xp.log(1 - self.y)).sum() / n

    def backward(self):
        if self.from_logits:
            return (self.p - self.t) / self.p.shape[0]
        y = self.y
        return (y - self.t) / (y * (1 - y) * y.shape[0])


class MeanSquaredError(Loss):
    """½ Σ (y − t)² averaged over the batch (the textbook's ``mean_squared_error`` / N)."""

    def forward(self, y, t):
        self.diff = y - self._targets(y, t)
        return 0.5 * (self.diff * self.diff).sum() / y.shape[0]

    def backward(self):
        return self.diff / self.diff.shape[0]


class L1Loss(Loss):
    """Σ |y − t| averaged over the batch."""

    def forward(self, y, t):
        self.diff = y - self._targets(y, t)
        return self.xp.abs(self.diff).sum() / y.shape[0]

    def backward(self):
        return self.xp.sign(self.diff) / self.diff.shape[0]


class Hinge(Loss):
    """Multiclass SVM loss with margin 1 (CS231n): Σ_{k≠y} max(0, s_k − s_y + 1), mean over N."""

    def forward(self, y, t):
        xp = self.xp
        n = y.shape[0]
        labels = t.argmax(axis=1) if t.ndim == 2 else t
        rows = xp.arange(n)
        margins = y - y[rows, labels][:, None] + 1
        margins[rows, labels] = 0
        self.active = (margins > 0).astype(y.dtype)
        self.rows, self.labels = rows, labels
        return (margins * self.active).sum() / n

    def backward(self):
        d = self.active.copy()
        d[self.rows, self.labels] = -self.active.sum(axis=1)
        d /= d.shape[0]
        return d


LOSSES = {
    "cross_entropy": SoftmaxCrossEntropy,
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "bce": lambda xp: BinaryCrossEntropy(xp, from_logits=True),
    "binary_cross_entropy": lambda xp: BinaryCrossEntropy(xp, from_logits=True),
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "l1": L1Loss,
    "hinge": Hinge,
}


def get_loss(name, xp) -> Loss:
    """The loss a model puts on its raw output scores, by name: ``"cross_entropy"`` (softmax +
    cross-entropy), ``"bce"`` (sigmoid + binary cross-entropy), ``"mse"``, ``"l1"``, ``"hinge"``."""
    if isinstance(name, Loss):
        return name
    if not isinstance(name, str) or name.strip().lower() not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name.strip().lower()](xp)


def loss_name(loss):
    """The name :func:`get_loss` builds ``loss`` from (the first of its aliases), or None for a loss
    object no name rebuilds (another class, or other settings): what a model's ``config`` stores."""
    for name, factory in LOSSES.items():
        try:
            fresh = factory(host_xp())
        except Exception:  # pragma: no cover - a factory needing more arguments
            continue
        if type(fresh) is type(loss) and all(
            getattr(loss, k, None) == v for k, v in vars(fresh).items() if k != "xp"
        ):
            return name
    return None
