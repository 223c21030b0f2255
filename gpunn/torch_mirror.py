"""An MLP's PyTorch twin, for comparisons (speed, results): ``to_torch(net)`` builds the
``torch.nn.Sequential`` of the same layers with the same weights.

Layer by layer: Affine → ``Linear`` (W transposed: PyTorch stores (out, in)), BatchNorm →
``BatchNorm1d`` (same ε, momentum, γ/β and running statistics), Sigmoid/Tanh/ReLU/LeakyReLU →
their PyTorch modules (same slope), Identity → nothing, Dropout → ``Dropout(p)`` (its own masks).
The loss is not included: gpunn's default, softmax + cross-entropy on the scores, is
``torch.nn.CrossEntropyLoss``.  Needs PyTorch (``pip install torch``); gpunn never imports it
otherwise.
"""

from __future__ import annotations

from .backend import Device
from .batchnorm import BatchNorm
from .layers import Affine, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .regularization import Dropout

__all__ = ["to_torch"]


def _tensor(torch, a):
    return torch.from_numpy(Device.to_numpy(a).copy())


def to_torch(net):
    """The ``torch.nn.Sequential`` equal to ``net`` (a :class:`gpunn.MLP`), on the CPU, float32 or
    float64 as ``net``; ``ValueError`` for a layer it has no twin for."""
    import torch

    dt = getattr(torch, net.dtype.name)
    modules = []
    with torch.no_grad():
        for layer in net.layers:
            if isinstance(layer, Affine):
                m = torch.nn.Linear(*layer.W.shape, dtype=dt)
                m.weight.copy_(_tensor(torch, layer.W).T)
                m.bias.copy_(_tensor(torch, layer.b))
            elif isinstance(layer, BatchNorm):
                m = torch.nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum, dtype=dt)
                pairs = (
                    (layer.gamma, m.weight),
                    (layer.beta, m.bias),
                    (layer.running_mean, m.running_mean),
                    (layer.running_var, m.running_var),
                )
                for ours, theirs in pairs:
                    theirs.copy_(_tensor(torch, ours))
            elif isinstance(layer, Identity):
                continue
            elif isinstance(layer, LeakyReLU):
                m = torch.nn.LeakyReLU(layer.slope)
            elif isinstance(layer, (Sigmoid, Tanh, ReLU)):
                m = getattr(torch.nn, type(layer).__name__)()
            elif isinstance(layer, Dropout):
                m = torch.nn.Dropout(layer.p)
            else:
                raise ValueError(f"to_torch: no PyTorch twin for layer {layer!r}")
            modules.append(m)
    return torch.nn.Sequential(*modules)
