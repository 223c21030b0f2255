"""Stochastic gradient descent."""

from .base import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD: θ ← θ − η g  (g + λθ for weights when ``weight_decay`` λ > 0).

    Defaults: ``lr=0.01`` (as in *Deep Learning from Scratch*), ``weight_decay=0``.
    """

    rule = "sgd"

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0, device=None):
        super().__init__(lr, weight_decay, device)
