"""Lion: the sign of an interpolated momentum."""

from .base import Optimizer, unit_interval
from .references import _xp, _zeros_like

__all__ = ["Lion"]


class Lion(Optimizer):
    """Lion:  c = β1 m + (1−β1) g;  θ ← θ − η (sign(c) + λθ);  m ← β2 m + (1−β2) g.

    Chen et al., "Symbolic Discovery of Optimization Algorithms" (2023), Program 1, as optax's
    ``lion`` and the authors' code write it: every parameter moves by exactly ±η (0 where c = 0),
    so η is typically 3-10× smaller than AdamW's, and the update is interpolated with β1 but the
    momentum is tracked with β2.  Weight decay is decoupled and scaled by η, as in AdamW, on weights
    only (the kernel shrinks θ ← θ − ηλθ before the sign step, which is the same update).

    Defaults: ``lr=1e-4``, ``beta1=0.9``, ``beta2=0.99`` (the paper's), ``weight_decay=0`` (optax's
    default is 1e-3; the authors' PyTorch code, like this, 0).  ``beta1``, ``beta2`` in [0, 1).
    State: ``m`` (one moment: half of Adam's memory).
    """

    rule = "lion"
    slots = ("m",)
    beta1 = unit_interval()
    beta2 = unit_interval()

    def __init__(
        self,
        lr: float = 1e-4,
        beta1: float = 0.9,
        beta2: float = 0.99,
        weight_decay: float = 0.0,
        device=None,
    ):
        super().__init__(lr, weight_decay, device, beta1=beta1, beta2=beta2)

    def scalars(self):
        return {
            "lr": self.lr,
            "b1": self.beta1,
            "omb1": 1 - self.beta1,
            "b2": self.beta2,
            "omb2": 1 - self.beta2,
        }

    def decay(self):
        return self.lr * self.weight_decay

    class Reference:
        """The textbook form, for tests: plain array math on dicts (see
        :mod:`gpunn.optim.references`); decoupled decay on weights (``ndim >= 2``)."""

        def __init__(self, lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0):
            self.lr, self.beta1, self.beta2, self.weight_decay = lr, beta1, beta2, weight_decay
            self.m = None

        def update(self, params, grads):
            xp = _xp(params)
            if self.m is None:
                self.m = _zeros_like(params)
            for key in params.keys():
                g = grads[key]
                c = self.beta1 * self.m[key] + (1 - self.beta1) * g
                if params[key].ndim >= 2:
                    params[key] -= self.lr * self.weight_decay * params[key]
                params[key] -= self.lr * xp.sign(c)
                self.m[key] = self.beta2 * self.m[key] + (1 - self.beta2) * g
