"""Learning-rate schedules: each sets ``optimizer.lr`` from a closed form of its step count.

Call :meth:`LRScheduler.step` once per epoch (or per iteration, as you choose) after the
optimizer's updates, as with PyTorch's schedulers::

    opt = gpunn.optim.Adam(lr=1e-3)
    sched = gpunn.optim.WarmupLR(opt, warmup_steps=5, then=gpunn.optim.CosineAnnealingLR(opt, T_max=45))
    for epoch in range(50):
        ...  # opt.update(net.params, grads) for every batch
        sched.step()

Creating a schedule records the optimizer's current ``lr`` as its base and sets ``optimizer.lr`` to
the step-0 value.  Every value is computed from the base and the step count (no compounding of
rounding errors), and a schedule's ``state_dict()`` is two numbers.  The optimizers pass the new
``lr`` to their kernels at the next update: nothing is recompiled or reallocated.
"""

from __future__ import annotations

import math

from ..validate import check_hyper, positive_int

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "WarmupLR"]


class LRScheduler:
    """Base: ``lr_at(step)`` gives the learning rate after ``step`` calls of :meth:`step`."""

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"a schedule needs an optimizer with an 'lr', got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_step = 0
        self.optimizer.lr = self._lr(0)

    def lr_at(self, step: int) -> float:
        raise NotImplementedError

    def _lr(self, step: int) -> float:
        """``lr_at(step)``, or a ValueError when it is not a finite float (e.g. γ > 1 compounding)."""
        try:
            lr = float(self.lr_at(step))
        except OverflowError:
            lr = math.inf
        if not math.isfinite(lr):
            raise ValueError(
                f"{self!r}: the learning rate at step {step} is not a finite float (it "
                f"overflows); with gamma > 1 the rate grows without bound -- use gamma <= 1 or "
                "fewer steps"
            )
        return lr

    def step(self) -> float:
        """Advance one step; set and return the optimizer's new ``lr``."""
        lr = self._lr(self.last_step + 1)
        self.last_step += 1
        self.optimizer.lr = lr
        return lr

    def get_last_lr(self) -> float:
        """The learning rate of the current step."""
        return self._lr(self.last_step)

    def state_dict(self) -> dict:
        return {"base_lr": self.base_lr, "last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        self.base_lr = check_hyper("base_lr", float(state["base_lr"]), low=0)
        self.last_step = int(state["last_step"])
        self.optimizer.lr = self._lr(self.last_step)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_lr={self.base_lr}, last_step={self.last_step})"


class StepLR(LRScheduler):
    """η_t = η₀ · γ^⌊t / step_size⌋ (multiply by ``gamma`` every ``step_size`` steps)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = positive_int("step_size", step_size)
        self.gamma = check_hyper("gamma", gamma, low=0)
        super().__init__(optimizer)

    def lr_at(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class ExponentialLR(LRScheduler):
    """η_t = η₀ · γ^t."""

    def __init__(self, optimizer, gamma: float):
        self.gamma = check_hyper("gamma", gamma, low=0)
        super().__init__(optimizer)

    def lr_at(self, step):
        return self.base_lr * self.gamma**step


class CosineAnnealingLR(LRScheduler):
    """η_t = η_min + (η₀ − η_min)(1 + cos(π t / T_max)) / 2 for t ≤ T_max, then η_min
    (Loshchilov & Hutter's SGDR without restarts; PyTorch's closed form)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = positive_int("T_max", T_max)
        self.eta_min = check_hyper("eta_min", eta_min, low=0)
        super().__init__(optimizer)

    def lr_at(self, step):
        step = min(step, self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * step / self.T_max)) / 2


class WarmupLR(LRScheduler):
    """Linear warm-up: η_t = η₀ · (f + (1 − f) · t / warmup_steps) for t < ``warmup_steps``
    (f = ``start_factor``), then η₀, or the schedule ``then`` evaluated at t − warmup_steps.

    ``then`` must drive the same optimizer and have been created before this one (so its base is
    the full learning rate).
    """

    def __init__(
        self, optimizer, warmup_steps: int, start_factor: float = 0.1, then: LRScheduler | None = None
    ):
        self.warmup_steps = positive_int("warmup_steps", warmup_steps)
        self.start_factor = check_hyper("start_factor", start_factor, low=0, high=1)
        if then is not None and then.optimizer is not optimizer:
            raise ValueError("then= must be a schedule of the same optimizer")
        self.then = then
        super().__init__(optimizer)
        if then is not None:
            self.base_lr = then.base_lr
            self.optimizer.lr = self.lr_at(0)

    def lr_at(self, step):
        if step < self.warmup_steps:
            f = self.start_factor
            return self.base_lr * (f + (1 - f) * step / self.warmup_steps)
        if self.then is not None:
            return self.then.lr_at(step - self.warmup_steps)
        return self.base_lr
