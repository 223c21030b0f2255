"""Adam and AdamW."""

import math

from .base import Optimizer, positive, unit_interval

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam:  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  m̂ = m/(1−β1ᵗ);  v̂ = v/(1−β2ᵗ);
    θ ← θ − η m̂ / (√v̂ + ε).

    ε is added to √v̂ (Kingma & Ba, ai-edu, CS231n, PyTorch); Saito's code instead folds the bias
    corrections into the learning rate and adds ε to √v, which is the same rule with
    ε·√(1−β2ᵗ) in place of ε.  The bias corrections are computed on the host each step, in double
    precision; the kernel gets η/(1−β1ᵗ) and 1/√(1−β2ᵗ).

    Defaults: ``lr=0.001``, ``beta1=0.9``, ``beta2=0.999``, ``eps=1e-8`` (the paper's, suggested by
    ai-edu and Saito), ``weight_decay=0`` (L2: g ← g + λθ on weights only, as PyTorch's ``Adam``;
    see :class:`AdamW` for decoupled decay).  ``beta1``, ``beta2`` in [0, 1), ``eps`` > 0.
    State: ``m``, ``v``; the step count ``t``.
    """

    rule = "adam"
    slots = ("m", "v")
    beta1 = unit_interval()
    beta2 = unit_interval()
    eps = positive()

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, device=None):
        super().__init__(lr, weight_decay, device, beta1=beta1, beta2=beta2, eps=eps)

    def hyper(self):
        t = self.t
        bc1 = 1 - self.beta1 ** t
        bc2 = 1 - self.beta2 ** t
        return (self.lr / bc1, self.beta1, 1 - self.beta1, self.beta2, 1 - self.beta2, self.eps,
                1 / math.sqrt(bc2))


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, θ ← θ − ηλθ, then the Adam step on the raw gradient.

    PyTorch's convention: the decay is scaled by the learning rate (Chainer's is not), and applies
    to weights only (not biases or BatchNorm parameters).  ``AdamW(weight_decay=0)`` is Adam.

    Defaults: as :class:`Adam`, and ``weight_decay=0.01`` (PyTorch's).
    """

    rule = "adamw"

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01, device=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, device)

    def decay(self):
        return self.lr * self.weight_decay
