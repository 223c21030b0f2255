"""Adam and AdamW."""

import math

from .base import Optimizer, positive, unit_interval

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam:  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  m̂ = m/(1−β1ᵗ);  v̂ = v/(1−β2ᵗ);
    θ ← θ − η m̂ / (√v̂ + ε).

    ε is added to √v̂ (``eps_on="v_hat"``, default: Kingma & Ba, ai-edu, CS231n, PyTorch).
    ``eps_on="v"`` is Saito's form: the bias corrections folded into the learning rate,
    ηₜ = η·√(1−β2ᵗ)/(1−β1ᵗ), and ε added to √v, θ ← θ − ηₜ m/(√v + ε) -- the same rule with
    ε/√(1−β2ᵗ) in place of ε, which is how the kernel runs it (one kernel, one scalar changed on the
    host).  The bias corrections are computed on the host each step, in double precision; the kernel
    gets η/(1−β1ᵗ), 1/√(1−β2ᵗ) and the ε of this step.

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

    EPS_ON = ("v_hat", "v")

    def __init__(
        self,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        device=None,
        *,
        eps_on: str = "v_hat",
    ):
        if eps_on not in self.EPS_ON:
            raise ValueError(
                f"eps_on must be 'v_hat' (ε added to √v̂, PyTorch) or 'v' (ε added to √v, "
                f"Saito), got {eps_on!r}"
            )
        super().__init__(lr, weight_decay, device, beta1=beta1, beta2=beta2, eps=eps)
        self.eps_on = eps_on

    def scalars(self):
        t = self.t
        bc1 = 1 - self.beta1**t
        bc2 = 1 - self.beta2**t
        rbc2 = 1 / math.sqrt(bc2)
        eps = self.eps * rbc2 if self.eps_on == "v" else self.eps
        return {
            "lr_t": self.lr / bc1,
            "b1": self.beta1,
            "omb1": 1 - self.beta1,
            "b2": self.beta2,
            "omb2": 1 - self.beta2,
            "eps": eps,
            "rbc2": rbc2,
        }

    def __repr__(self) -> str:
        r = super().__repr__()
        return r if self.eps_on == "v_hat" else r[:-1] + ", eps_on='v')"


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, θ ← θ − ηλθ, then the Adam step on the raw gradient.

    PyTorch's convention: the decay is scaled by the learning rate (Chainer's is not), and applies
    to weights only (not biases or BatchNorm parameters).  ``AdamW(weight_decay=0)`` is Adam.

    Defaults: as :class:`Adam`, and ``weight_decay=0.01`` (PyTorch's).
    """

    rule = "adamw"

    def __init__(
        self,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        device=None,
        *,
        eps_on: str = "v_hat",
    ):
        super().__init__(lr, beta1, beta2, eps, weight_decay, device, eps_on=eps_on)

    def decay(self):
        return self.lr * self.weight_decay
