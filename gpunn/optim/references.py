"""Reference optimizers written the way the textbooks write them: plain array math on dicts.

One class per rule of :mod:`gpunn.optim` (the textbook's eight here, the others nested in their
optimizer classes as ``Reference`` and found here by name), with the same constructor arguments and
defaults and ``update(params, grads)`` updating ``params`` in place, in the style of *Deep Learning
from Scratch* (``common/optimizer.py``) and CS231n's ``optim.py``.  They allocate temporaries freely
and are slow; they exist so the fused kernels can be tested against something that obviously follows
the formulas.

The array namespace comes from the arrays' device (NumPy for host arrays, CuPy for GPU arrays);
Python-float hyper-parameters keep float32 arrays float32 (NumPy ≥ 2 / CuPy treat them as "weak").

Each reference's formula is in its optimizer class's docstring.  Weight decay (see :mod:`gpunn.optim`)
applies to arrays with ``ndim >= 2`` (weights), as in gpunn; for a model's FlatDict the views have
their natural shapes, so this is the same split as the flat path.
"""

from __future__ import annotations

from ..backend import device_of

TEXTBOOK = ["SGD", "Momentum", "Nesterov", "AdaGrad", "AdaDelta", "RMSprop", "Adam", "AdamW"]
"""The references written here; every other rule's is the ``Reference`` class nested in its optimizer
class (found through :data:`gpunn.optim.OPTIMIZERS`, so this module lists no rule it does not hold)."""


def _nested() -> dict:
    """``{name: reference}`` of the optimizers that carry their own ``Reference`` class."""
    from . import OPTIMIZERS

    return {cls.__name__: vars(cls)["Reference"] for cls in OPTIMIZERS if "Reference" in vars(cls)}


__all__ = [*TEXTBOOK, "array_namespace"]


def __getattr__(name):
    """The references nested in their optimizer classes (``references.Lion`` is
    ``gpunn.optim.Lion.Reference``), looked up when first asked for (``gpunn.optim`` imports the
    modules that import this one); they are documented with their optimizer, so ``__all__`` lists
    only what this module holds."""
    ref = None if name.startswith("__") else _nested().get(name)  # the import system asks for __path__
    if ref is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return ref


def array_namespace(a):
    """NumPy or CuPy: the namespace of the device array ``a`` lives on."""
    return device_of(a).xp


def _xp(params):
    return array_namespace(next(iter(params.values())))


def _zeros_like(params):
    xp = _xp(params)
    return {key: xp.zeros_like(val) for key, val in params.items()}


def _grad(params, grads, key, weight_decay):
    """The gradient with L2 weight decay on weights (ndim >= 2)."""
    if weight_decay and params[key].ndim >= 2:
        return grads[key] + weight_decay * params[key]
    return grads[key]


class SGD:
    """:class:`gpunn.optim.SGD`'s rule (formula in its docstring)."""

    def __init__(self, lr=0.01, weight_decay=0.0):
        self.lr, self.weight_decay = lr, weight_decay

    def update(self, params, grads):
        for key in params.keys():
            params[key] -= self.lr * _grad(params, grads, key, self.weight_decay)


class Momentum:
    """:class:`gpunn.optim.Momentum`'s rule (formula in its docstring)."""

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = _zeros_like(params)
        for key in params.keys():
            g = _grad(params, grads, key, self.weight_decay)
            self.v[key] = self.momentum * self.v[key] - self.lr * g
            params[key] += self.v[key]


class Nesterov:
    """:class:`gpunn.optim.Nesterov`'s rule, PyTorch's ``nesterov=True`` form (formula in its docstring)."""

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.b = None

    def update(self, params, grads):
        if self.b is None:
            self.b = _zeros_like(params)
        for key in params.keys():
            g = _grad(params, grads, key, self.weight_decay)
            self.b[key] = self.momentum * self.b[key] + g
            params[key] -= self.lr * (g + self.momentum * self.b[key])


class AdaGrad:
    """:class:`gpunn.optim.AdaGrad`'s rule (formula in its docstring)."""

    def __init__(self, lr=0.01, eps=1e-6, weight_decay=0.0):
        self.lr, self.eps, self.weight_decay = lr, eps, weight_decay
        self.r = None

    def update(self, params, grads):
        xp = _xp(params)
        if self.r is None:
            self.r = _zeros_like(params)
        for key in params.keys():
            g = _grad(params, grads, key, self.weight_decay)
            self.r[key] += g * g
            params[key] -= self.lr * g / (xp.sqrt(self.r[key]) + self.eps)


class AdaDelta:
    """:class:`gpunn.optim.AdaDelta`'s rule (formula in its docstring)."""

    def __init__(self, lr=1.0, rho=0.9, eps=1e-5, weight_decay=0.0):
        self.lr, self.rho, self.eps, self.weight_decay = lr, rho, eps, weight_decay
        self.s = self.r = None

    def update(self, params, grads):
        xp = _xp(params)
        if self.s is None:
            self.s, self.r = _zeros_like(params), _zeros_like(params)
        for key in params.keys():
            g = _grad(params, grads, key, self.weight_decay)
            self.s[key] = self.rho * self.s[key] + (1 - self.rho) * g * g
            delta = xp.sqrt((self.r[key] + self.eps) / (self.s[key] + self.eps)) * g
            params[key] -= self.lr * delta
            self.r[key] = self.rho * self.r[key] + (1 - self.rho) * delta * delta


class RMSprop:
    """:class:`gpunn.optim.RMSprop`'s rule (formula in its docstring)."""

    def __init__(self, lr=0.001, rho=0.9, eps=1e-8, weight_decay=0.0):
        self.lr, self.rho, self.eps, self.weight_decay = lr, rho, eps, weight_decay
        self.r = None

    def update(self, params, grads):
        xp = _xp(params)
        if self.r is None:
            self.r = _zeros_like(params)
        for key in params.keys():
            g = _grad(params, grads, key, self.weight_decay)
            self.r[key] = self.rho * self.r[key] + (1 - self.rho) * g * g
            params[key] -= self.lr * g / (xp.sqrt(self.r[key]) + self.eps)


class Adam:
    """:class:`gpunn.optim.Adam`'s rule (formula in its docstring), written as CS231n's ``adam``."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.weight_decay = weight_decay
        self.iter = 0
        self.m = self.v = None

    def _gradient(self, params, grads, key):
        return _grad(params, grads, key, self.weight_decay)

    def update(self, params, grads):
        xp = _xp(params)
        if self.m is None:
            self.m, self.v = _zeros_like(params), _zeros_like(params)
        self.iter += 1
        for key in params.keys():
            g = self._gradient(params, grads, key)
            self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
            self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
            m_hat = self.m[key] / (1 - self.beta1**self.iter)
            v_hat = self.v[key] / (1 - self.beta2**self.iter)
            params[key] -= self.lr * m_hat / (xp.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """:class:`gpunn.optim.AdamW`'s rule (decoupled decay on weights only; see its docstring)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay)

    def _gradient(self, params, grads, key):
        if params[key].ndim >= 2:
            params[key] -= self.lr * self.weight_decay * params[key]
        return grads[key]
