"""Optimizers with the textbook interface ``optimizer.update(params, grads)``, as fused kernels."""

from .base import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD"]
