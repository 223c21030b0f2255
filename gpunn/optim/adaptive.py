"""Per-parameter adaptive learning rates: AdaGrad, AdaDelta, RMSProp."""

from .base import Optimizer, positive, unit_interval

__all__ = ["AdaGrad", "AdaDelta", "RMSprop"]


class AdaGrad(Optimizer):
    """AdaGrad:  r ← r + g⊙g;  θ ← θ − η g / (√r + ε).

    ε is added to √r (ai-edu: Δθ = η/(ε + √r) ⊙ g; Saito's code adds 1e-7 the same way).

    Defaults: ``lr=0.01`` (Saito), ``eps=1e-6`` (ai-edu's suggested default), ``weight_decay=0``
    (L2 on weights only).  ``eps`` must be > 0.  State: ``r`` (sum of squared gradients).
    """

    rule = "adagrad"
    slots = ("r",)
    eps = positive()

    def __init__(self, lr: float = 0.01, eps: float = 1e-6, weight_decay: float = 0.0, device=None):
        super().__init__(lr, weight_decay, device, eps=eps)

    def scalars(self):
        return {"lr": self.lr, "eps": self.eps}


class AdaDelta(Optimizer):
    """AdaDelta:  s ← ρ s + (1−ρ) g²;  Δ = √((r + ε)/(s + ε)) ⊙ g;  θ ← θ − η Δ;  r ← ρ r + (1−ρ) Δ².

    The ai-edu course's formulas (Zeiler 2012): r, the running average of squared updates, stands
    in for the learning rate, so the textbook rule has no η; ``lr`` multiplies the step as in
    PyTorch, and the default ``lr=1.0`` is exactly the textbook rule (r accumulates the unscaled Δ,
    as PyTorch does).

    Defaults: ``lr=1.0``, ``rho=0.9`` and ``eps=1e-5`` (ai-edu's suggested defaults),
    ``weight_decay=0`` (L2 on weights only).  ``rho`` in [0, 1), ``eps`` > 0.
    State: ``s`` (average of g²), ``r`` (average of Δ²).
    """

    rule = "adadelta"
    slots = ("s", "r")
    rho = unit_interval()
    eps = positive()

    def __init__(
        self, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-5, weight_decay: float = 0.0, device=None
    ):
        super().__init__(lr, weight_decay, device, rho=rho, eps=eps)

    def scalars(self):
        return {"lr": self.lr, "rho": self.rho, "omrho": 1 - self.rho, "eps": self.eps}


class RMSprop(Optimizer):
    """RMSProp:  r ← ρ r + (1−ρ) g²;  θ ← θ − η g / (√r + ε).

    ε is added to √r (ai-edu, CS231n and PyTorch; Saito's code adds 1e-7 the same way).

    Defaults: ``lr=0.001``, ``rho=0.9``, ``eps=1e-8`` (ai-edu's suggested defaults; Saito and
    PyTorch use ρ = 0.99), ``weight_decay=0`` (L2 on weights only).  ``rho`` in [0, 1), ``eps`` > 0.
    State: ``r`` (average of g²).
    """

    rule = "rmsprop"
    slots = ("r",)
    rho = unit_interval()
    eps = positive()

    def __init__(
        self, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-8, weight_decay: float = 0.0, device=None
    ):
        super().__init__(lr, weight_decay, device, rho=rho, eps=eps)

    def scalars(self):
        return {"lr": self.lr, "rho": self.rho, "omrho": 1 - self.rho, "eps": self.eps}
