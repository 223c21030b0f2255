"""Stochastic gradient descent and its momentum variants."""

from .base import Optimizer, unit_interval

__all__ = ["SGD", "Momentum", "Nesterov"]


class SGD(Optimizer):
    """SGD: θ ← θ − η g  (g + λθ for weights when ``weight_decay`` λ > 0).

    Defaults: ``lr=0.01`` (as in *Deep Learning from Scratch*), ``weight_decay=0``.
    """

    rule = "sgd"

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0, device=None):
        super().__init__(lr, weight_decay, device)


class Momentum(Optimizer):
    """Momentum (heavy ball):  v ← α v − η g;  θ ← θ + v.

    The form of *Deep Learning from Scratch* and the "flower book" (Goodfellow et al.).  The ai-edu
    course's other form, v ← α v + η g; θ ← θ − v, is the same trajectory with v negated.  The
    velocity v holds η (it is a step, not a gradient average), so changing ``lr`` mid-run
    rescales only the new gradient's contribution.  ``momentum=0`` is SGD.

    Defaults: ``lr=0.01``, ``momentum=0.9`` (Saito's code; ai-edu suggests 0.5, 0.9 or 0.99),
    ``weight_decay=0`` (L2, g ← g + λθ on weights only).  ``momentum`` must lie in [0, 1).
    State: ``v``.
    """

    rule = "momentum"
    slots = ("v",)
    momentum = unit_interval()

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0, device=None):
        super().__init__(lr, weight_decay, device, momentum=momentum)

    def scalars(self):
        return {"lr": self.lr, "alpha": self.momentum}


class Nesterov(Optimizer):
    """Nesterov accelerated gradient (NAG), PyTorch's ``nesterov=True``:  b ← μ b + g;  θ ← θ − η (g + μ b).

    The textbook (look-ahead) form evaluates the gradient at θ − αv: θ̂ = θ − αv, g = ∇J(θ̂),
    v ← αv + ηg, θ ← θ − v.  Substituting φ = θ − αv (the look-ahead point) and b = v/η gives the
    update above with the gradient at the current parameters only, so gpunn's parameters follow
    the look-ahead points φ_t of the textbook trajectory (exactly, for a constant ``lr``; φ and θ
    coincide at the start and at convergence).  The buffer b is in gradient units, as in PyTorch,
    so a learning-rate schedule scales the whole step.

    ``form="saito"`` is the rule of *Deep Learning from Scratch*'s ``Nesterov`` instead (a different
    trajectory, not a re-parametrisation): v ← μ v − η g;  θ ← θ + μ² v − (1+μ) η g, with the *new*
    v; its state is ``v``.

    Defaults: ``lr=0.01``, ``momentum=0.9`` (ai-edu's default for NAG), ``weight_decay=0``.
    State: ``b``.
    """

    rule = "nesterov"
    slots = ("b",)
    momentum = unit_interval()
    FORMS = ("pytorch", "saito")
    variants = ({}, {"form": "saito"})

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        device=None,
        *,
        form: str = "pytorch",
    ):
        if form not in self.FORMS:
            raise ValueError(f"form must be 'pytorch' or 'saito', got {form!r}")
        super().__init__(lr, weight_decay, device, momentum=momentum)
        self.form = form
        if form == "saito":
            self.rule, self.slots = "nesterov_saito", ("v",)

    def scalars(self):
        mu = self.momentum
        if self.form == "saito":
            return {"lr": self.lr, "mu": mu, "mu2": mu * mu, "c": (1 + mu) * self.lr}
        return {"lr": self.lr, "mu": mu}

    def __repr__(self) -> str:
        r = super().__repr__()
        return r if self.form == "pytorch" else r[:-1] + ", form='saito')"
