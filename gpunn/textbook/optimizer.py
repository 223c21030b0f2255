"""The book's ``common/optimizer.py``: ``SGD``, ``Momentum``, ``Nesterov``, ``AdaGrad``, ``RMSprop``,
``Adam`` with its arguments and defaults, as gpunn's fused optimizers.

``optimizer.update(params, grads)`` updates in place.  For a network of this package (its ``params``
and the dict its ``gradient`` returns) a step is one fused kernel launch over the flat buffer, on the
network's device.  Any other dict of arrays is updated array by array; a dict of Python numbers (the
book's ``optimizer_compare_naive.py`` moves ``params['x']``, ``params['y']``) gets new numbers, as
the book's code rebinds them.

The book's conventions, exactly: ``AdaGrad`` and ``RMSprop`` add ε = 1e-7 to √h; ``RMSprop``'s
``decay_rate`` is 0.99 and its ``lr`` 0.01; ``Adam`` folds the bias corrections into the learning
rate and adds ε = 1e-7 to √v (:class:`gpunn.optim.Adam` with ``eps_on="v"``); ``Nesterov`` is the
book's rule θ ← θ + μ²v − (1+μ)ηg with the new v (:class:`gpunn.optim.Nesterov` with
``form="saito"``).

``from gpunn.textbook.optimizer import *`` also gives ``np`` (NumPy), as the book's module does.
"""

from __future__ import annotations

from .. import optim as _optim
from ..backend import host_xp, is_device_array

np = host_xp()

__all__ = ["np", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]

EPS = 1e-7
"""The ε of the book's AdaGrad, RMSprop and Adam."""


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or is_device_array(v)


class _BookUpdate:
    """Mixin: the book's ``update(params, grads)``, also for dicts holding Python numbers."""

    def update(self, params, grads):
        """One step of the rule, in place (numbers in ``params`` are replaced by the new numbers)."""
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError(
                f"update(params, grads) takes two dicts, got {type(params).__name__} and "
                f"{type(grads).__name__}"
            )
        if getattr(params, "flat", None) is not None or all(_is_array(v) for v in params.values()):
            return super().update(params, grads)
        return self._update_numbers(params, grads)

    def _update_numbers(self, params, grads):
        """Numbers (and arrays) by key: numbers travel as one-element float64 arrays."""
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"grads has no entry for params {missing}")
        boxes = {}
        for k, v in params.items():
            boxes[k] = v if _is_array(v) else np.array([v], dtype=np.float64)
        gboxes = {}
        for k in params:
            g = grads[k]
            if _is_array(g) and _is_array(params[k]):
                gboxes[k] = g
            else:
                gboxes[k] = np.array([g], dtype=np.float64).reshape(boxes[k].shape)
        super().update(boxes, gboxes)
        for k, v in params.items():
            if not _is_array(v):
                params[k] = float(boxes[k][0])


class SGD(_BookUpdate, _optim.SGD):
    """SGD: θ ← θ − lr·g (the book's defaults: ``lr=0.01``)."""

    def __init__(self, lr=0.01):
        super().__init__(lr=lr)


class Momentum(_BookUpdate, _optim.Momentum):
    """Momentum SGD: v ← momentum·v − lr·g;  θ ← θ + v (``lr=0.01``, ``momentum=0.9``)."""

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr=lr, momentum=momentum)


class Nesterov(_BookUpdate, _optim.Nesterov):
    """The book's Nesterov: v ← μv − lr·g;  θ ← θ + μ²v − (1+μ)·lr·g (``lr=0.01``, ``momentum=0.9``)."""

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr=lr, momentum=momentum, form="saito")


class AdaGrad(_BookUpdate, _optim.AdaGrad):
    """AdaGrad: h ← h + g²;  θ ← θ − lr·g/(√h + 1e-7) (``lr=0.01``)."""

    def __init__(self, lr=0.01):
        super().__init__(lr=lr, eps=EPS)


class RMSprop(_BookUpdate, _optim.RMSprop):
    """RMSprop: h ← decay_rate·h + (1 − decay_rate)·g²;  θ ← θ − lr·g/(√h + 1e-7)
    (``lr=0.01``, ``decay_rate=0.99``)."""

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr=lr, rho=decay_rate, eps=EPS)

    @property
    def decay_rate(self) -> float:
        """The book's name of ρ."""
        return self.rho

    @decay_rate.setter
    def decay_rate(self, value):
        self.rho = value


class Adam(_BookUpdate, _optim.Adam):
    """Adam as in the book: lr_t = lr·√(1 − β2ᵗ)/(1 − β1ᵗ);  θ ← θ − lr_t·m/(√v + 1e-7)
    (``lr=0.001``, ``beta1=0.9``, ``beta2=0.999``); ``iter`` counts the steps."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr=lr, beta1=beta1, beta2=beta2, eps=EPS, eps_on="v")

    @property
    def iter(self) -> int:
        """The book's step counter (gpunn's ``t``)."""
        return self.t
