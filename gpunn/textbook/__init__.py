"""*Deep Learning from Scratch*'s ``common/`` package (the part chapter 6 uses) on gpunn's engine.

Koki Saito's book builds every chapter-6 experiment on ``common/optimizer.py``,
``common/multi_layer_net.py``, ``common/multi_layer_net_extend.py``, ``common/trainer.py``,
``common/util.py`` and ``dataset/mnist.py``.  This package has modules of the same names, classes of
the same names, arguments, defaults, attributes and conventions, so a reader's script runs on gpunn by
changing its imports only::

    from common.multi_layer_net import MultiLayerNet
    from dataset.mnist import load_mnist
        ↓
    from gpunn.textbook.multi_layer_net import MultiLayerNet
    from gpunn.textbook.mnist import load_mnist

What runs underneath is gpunn: a :class:`gpunn.MLP` (flat parameter buffers, fused kernels) and
gpunn's fused optimizers, with the book's conventions switched on through the engine's options
(non-inverted dropout with masks from ``np.random.rand``; BatchNorm with ε = 10e-7, momentum 0.9, a
biased running variance starting at 0; Adam's ε added to √v; AdaGrad and RMSprop with ε = 1e-7;
Saito's Nesterov; the loss ``−log(y + 1e-7)``).  Random numbers come from ``np.random`` in the book's
order (weights with ``np.random.randn`` layer by layer, batches with ``np.random.choice``, dropout
masks with ``np.random.rand``), so ``np.random.seed`` reproduces a run of the book's code (up to
float rounding: the kernels sum in another order).

Two environment variables choose where and how it runs (read when a network is built):

* ``GPUNN_DEVICE`` -- ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto`` (see :func:`gpunn.device`);
* ``GPUNN_DTYPE`` -- ``float64`` (default, as the book computes) or ``float32`` (faster).
"""

from __future__ import annotations

import os

__all__ = ["DEVICE_ENV", "DTYPE_ENV", "settings"]

DEVICE_ENV = "GPUNN_DEVICE"
DTYPE_ENV = "GPUNN_DTYPE"


def settings() -> tuple[str, str]:
    """``(device, dtype)`` for a new network, from ``$GPUNN_DEVICE`` (default ``"cpu"``) and
    ``$GPUNN_DTYPE`` (default ``"float64"``); a bad value raises ``ValueError`` naming the variable."""
    dev = os.environ.get(DEVICE_ENV, "").strip() or "cpu"
    dtype = os.environ.get(DTYPE_ENV, "").strip().lower() or "float64"
    if dtype not in ("float32", "float64"):
        raise ValueError(f"${DTYPE_ENV} must be float32 or float64, got {dtype!r}")
    from ..backend import device

    try:
        device(dev)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"${DEVICE_ENV}={dev!r}: {exc}") from None
    return dev, dtype
