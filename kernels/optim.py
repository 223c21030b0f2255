"""Optimizer update rules: each written once as a scalar ``@njit`` function, compiled for the CPU
(the ``*_cpu`` parallel loops below) and for CUDA (``optim_cuda.py``), so the two cannot drift.

Every kernel takes ``(p, g, *state, *hyper, wd, n_decay)`` over 1-D C-contiguous arrays:
weight decay λ = ``wd`` is added to the gradient (g ← g + λθ) for elements ``i < n_decay`` only
(the weights; biases and BatchNorm parameters sit after them in a model's flat buffer).
Hyper-parameters arrive as scalars of the array dtype so float32 stays float32.
"""

from numba import njit, prange

from . import CPU_OPTIONS, RULE_OPTIONS


@njit(**RULE_OPTIONS)
def decayed(g, p, wd, i, n_decay):
    """The gradient with L2 weight decay: g + λθ for weights (i < n_decay), g otherwise."""
    return g + wd * p if i < n_decay else g


@njit(**RULE_OPTIONS)
def sgd(p, g, lr):
    """SGD: θ ← θ − η g."""
    return p - lr * g


@njit(**CPU_OPTIONS)
def sgd_cpu(p, g, lr, wd, n_decay):
    for i in prange(p.size):
        p[i] = sgd(p[i], decayed(g[i], p[i], wd, i, n_decay), lr)
