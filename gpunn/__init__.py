"""gpunn: neural networks from scratch, fast, on CPU (NumPy) or GPU (CuPy) with fused Numba kernels."""

from . import batchnorm, checkpoint, datasets, init, layers, losses, optim, regularization
from .backend import Device, DeviceError, DeviceFallbackWarning, cuda_available, device, get_device
from .checkpoint import CheckpointError
from .checkpoint import load_model as load
from .mlp import MLP
from .trainer import Trainer, TrainingDivergedError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Device",
    "DeviceError",
    "DeviceFallbackWarning",
    "MLP",
    "Trainer",
    "TrainingDivergedError",
    "checkpoint",
    "cuda_available",
    "datasets",
    "device",
    "get_device",
    "load",
    "batchnorm",
    "init",
    "layers",
    "losses",
    "optim",
    "regularization",
    "__version__",
]
