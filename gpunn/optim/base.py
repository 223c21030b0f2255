"""The optimizer base: the textbook call ``update(params, grads)`` driving fused kernels.

``params`` and ``grads`` are dicts of arrays with the same keys (NumPy or CuPy), updated in place.

* When both are the :class:`~gpunn.params.FlatDict` views of one model's flat buffers, one step is
  **one kernel launch** over the whole buffer; weight decay covers the weight prefix.
* Any other dicts: one launch per array; weight decay covers arrays with ``ndim >= 2`` (weights),
  not vectors (biases, BatchNorm γ/β).

A subclass names its kernel (``rule``), its per-element state arrays (``slots``, created zeroed on
the first step and never reallocated) and the scalar hyper-parameters it passes (``hyper``).
"""

from __future__ import annotations

from ..backend import Device
from ..backend import device as gpunn_device
from ..kernels import resolve
from ..validate import check_hyper

__all__ = ["Optimizer"]

FLAT = "__flat__"


class Optimizer:
    rule: str = ""
    slots: tuple = ()

    def __init__(self, lr: float, weight_decay: float = 0.0, device=None):
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = None if device is None else gpunn_device(device)
        self.t = 0
        self.state: dict = {}
        self._kernel = None

    # -- hyper-parameters ------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_hyper("lr", value, low=0)

    @property
    def weight_decay(self) -> float:
        return self._weight_decay

    @weight_decay.setter
    def weight_decay(self, value):
        self._weight_decay = check_hyper("weight_decay", value, low=0)

    def hyper(self) -> tuple:
        """The rule's scalar hyper-parameters for this step (``self.t`` already incremented)."""
        return (self.lr,)

    def hyper_params(self) -> dict:
        """Named hyper-parameters (saved by ``state_dict``)."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    # -- the step ---------------------------------------------------------------------------
    def update(self, params: dict, grads: dict) -> None:
        """One step, in place: every ``params[k]`` moves by the rule using ``grads[k]``."""
        groups = self._groups(params, grads)
        dev = self._resolve_device(params, groups)
        if self._kernel is None or self._kernel[0] != dev:
            self._kernel = (dev, resolve(dev, "optim", self.rule))
        kernel = self._kernel[1]
        self.t += 1
        dtype = groups[0][1].dtype
        scalars = tuple(Device.scalar(h, dtype) for h in self.hyper())
        wd = Device.scalar(self.weight_decay, dtype)
        for key, p, g, n_decay in groups:
            state = self.state.get(key)
            if state is None:
                state = self.state[key] = tuple(dev.xp.zeros_like(p) for _ in self.slots)
            kernel(p.size, p, g, *state, *scalars, wd, n_decay)

    step = update

    def _groups(self, params, grads):
        """[(state key, flat param, flat grad, n_decay)], validated."""
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError("update(params, grads) takes two dicts of arrays")
        if set(params) != set(grads):
            missing, extra = set(params) - set(grads), set(grads) - set(params)
            raise ValueError(f"params and grads have different keys: missing in grads {sorted(missing)}, "
                             f"not in params {sorted(extra)}")
        if not params:
            raise ValueError("update() got no parameters")
        layout = getattr(params, "layout", None)
        if layout is not None and getattr(grads, "layout", None) is layout:
            return [self._check_pair(FLAT, params.flat, grads.flat, layout.n_decay)]
        return [self._check_pair(k, p, grads[k], p.size if getattr(p, "ndim", 0) >= 2 else 0)
                for k, p in params.items()]

    def _check_pair(self, key, p, g, n_decay):
        name = "the flat buffer" if key == FLAT else repr(key)
        for what, a in (("params", p), ("grads", g)):
            if not hasattr(a, "dtype") or not hasattr(a, "shape"):
                raise TypeError(f"{what}[{name}] must be an array, got {type(a).__name__}")
            if a.dtype.name not in ("float32", "float64"):
                raise TypeError(f"{what}[{name}] has dtype {a.dtype}; optimizers take float32 or float64")
            if not a.flags.c_contiguous:
                raise ValueError(f"{what}[{name}] is not C-contiguous; the update is done in place "
                                 "on the array's memory, pass a contiguous array")
        if p.shape != g.shape:
            raise ValueError(f"grads[{name}] has shape {g.shape}, params[{name}] has {p.shape}")
        if p.dtype != g.dtype:
            raise TypeError(f"grads[{name}] is {g.dtype} but params[{name}] is {p.dtype}")
        if type(p) is not type(g):
            raise TypeError(f"params[{name}] and grads[{name}] live on different devices "
                            f"({type(p).__module__} vs {type(g).__module__})")
        state = self.state.get(key)
        if state and state[0].shape != p.reshape(-1).shape:
            raise ValueError(f"params[{name}] changed size from {state[0].size} to {p.size} "
                             "since the optimizer's state was created; make a new optimizer")
        return key, p.reshape(-1), g.reshape(-1), n_decay

    def _resolve_device(self, params, groups) -> Device:
        if self.device is not None:
            dev = self.device
        else:
            dev = getattr(params, "device", None)
            if dev is None:
                p = groups[0][1]
                dev = gpunn_device("cpu" if type(p).__module__ == "numpy" else f"cuda:{p.device.id}")
        for key, p, g, _ in groups:
            if not dev.owns(p) or not dev.owns(g):
                raise TypeError(f"params/grads {key!r} are {dev.array_kind(p)}, not arrays of "
                                f"{dev.name}, where this optimizer runs")
        return dev

    # -- state ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyper_params().items())
        return f"{type(self).__name__}({args})"
