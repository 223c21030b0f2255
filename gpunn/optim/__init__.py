"""Optimizers with the textbook interface ``optimizer.update(params, grads)``, as fused kernels.

=========  ===============================================================  ====================
class      update (g ← g + λθ on weights when ``weight_decay`` λ > 0)        defaults
=========  ===============================================================  ====================
SGD        θ ← θ − ηg                                                       η=0.01
Momentum   v ← αv − ηg; θ ← θ + v                                           η=0.01, α=0.9
Nesterov   b ← μb + g; θ ← θ − η(g + μb)  (PyTorch ``nesterov=True``)       η=0.01, μ=0.9
AdaGrad    r ← r + g²; θ ← θ − ηg/(√r + ε)                                  η=0.01, ε=1e-6
AdaDelta   s ← ρs + (1−ρ)g²; Δ = √((r+ε)/(s+ε))g; θ ← θ − ηΔ;               η=1, ρ=0.9, ε=1e-5
           r ← ρr + (1−ρ)Δ²
RMSprop    r ← ρr + (1−ρ)g²; θ ← θ − ηg/(√r + ε)                            η=1e-3, ρ=0.9, ε=1e-8
Adam       m, v moving averages, bias-corrected; θ ← θ − ηm̂/(√v̂ + ε)         η=1e-3, β=(0.9, 0.999),
                                                                            ε=1e-8
AdamW      θ ← θ − ηλθ (decoupled, weights only), then Adam                 as Adam, λ=0.01
=========  ===============================================================  ====================

Learning-rate schedules are in :mod:`gpunn.optim.schedules`; NumPy reference implementations
(textbook style, for tests) in :mod:`gpunn.optim.references`.
"""

from . import schedules
from .adam import Adam, AdamW
from .adaptive import AdaDelta, AdaGrad, RMSprop
from .base import Optimizer
from .schedules import CosineAnnealingLR, ExponentialLR, LRScheduler, StepLR, WarmupLR
from .sgd import SGD, Momentum, Nesterov

OPTIMIZERS = (SGD, Momentum, Nesterov, AdaGrad, AdaDelta, RMSprop, Adam, AdamW)
"""Every update rule, in the textbook's order."""

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "AdaDelta", "RMSprop", "Adam", "AdamW",
           "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "WarmupLR", "OPTIMIZERS",
           "schedules"]
