"""Optimizers with the textbook interface ``optimizer.update(params, grads)``, as fused kernels.

Weight decay λ (``weight_decay``) is L2 on the weights, g ← g + λθ, except for the rules whose
docstring says it is decoupled (AdamW, Lion: θ ← θ − ηλθ).  Each class's docstring gives its
formulas, defaults and state; the list of rules below is built from them at import.

**The registry.**  An optimizer is three pieces, in three files:

1. its scalar rule, with its CPU loops (``<rule>_span``, ``<rule>_cpu``), in ``kernels/optim.py``;
2. its CUDA kernel ``<rule>`` in ``kernels/optim_cuda.py``;
3. its class, in a module of this package (``gpunn/optim/<name>.py``): ``rule``, ``slots`` (the
   rule's state parameters), :class:`~gpunn.optim.base.Hyper` attributes, and ``scalars()`` -- the
   rule's scalar arguments *by name* -- with its NumPy reference as a nested class ``Reference``
   (the eight textbook rules keep theirs in :mod:`gpunn.optim.references`).

Every module of this package except ``base``, ``references`` and ``schedules`` is imported here,
and every :class:`Optimizer` subclass with a ``rule`` defined in one of them is a rule of
:data:`OPTIMIZERS` (the textbook's modules ``sgd``, ``adaptive``, ``adam`` first, in its order; the
others by module name), exported in ``__all__``.  The tests' rule × device × dtype grids, the
real-compiler gate's tour, :mod:`gpunn.optim.references` and the benchmark's bytes per parameter
all derive from :data:`OPTIMIZERS`.

Learning-rate schedules are in :mod:`gpunn.optim.schedules`.
"""

import importlib
import pkgutil

from . import schedules
from .base import Optimizer
from .schedules import CosineAnnealingLR, ExponentialLR, LRScheduler, StepLR, WarmupLR

TEXTBOOK_MODULES = ("sgd", "adaptive", "adam")
"""The modules of the textbook's rules (chapter 6 of *Deep Learning from Scratch*), in its order."""

NOT_RULES = ("base", "references", "schedules")
"""Modules of this package that define no optimizer."""


def _rule_modules() -> list:
    """Every module of this package that may define rules, imported: the textbook's, then the rest."""
    found = sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if info.name not in NOT_RULES and not info.name.startswith("_")
    )
    names = [*TEXTBOOK_MODULES, *(m for m in found if m not in TEXTBOOK_MODULES)]
    return [importlib.import_module(f"{__name__}.{m}") for m in names]


def _rules_of(module) -> list:
    """The optimizer classes defined in ``module`` (not imported into it), in definition order."""
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Optimizer)
        and obj.rule
        and obj.__module__ == module.__name__
    ]


OPTIMIZERS = tuple(cls for module in _rule_modules() for cls in _rules_of(module))
"""Every update rule: the textbook's in its order, then the others by module name."""

globals().update({cls.__name__: cls for cls in OPTIMIZERS})


def _summary(cls) -> str:
    """The first paragraph of ``cls``'s docstring (its formulas), as a list item."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return f"* :class:`{cls.__name__}` -- " + " ".join(line.strip() for line in paragraph.splitlines())


__doc__ += "\nRules:\n\n" + "\n".join(_summary(cls) for cls in OPTIMIZERS) + "\n"

__all__ = [
    "Optimizer",
    *(cls.__name__ for cls in OPTIMIZERS),
    "LRScheduler",
    "StepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "WarmupLR",
    "OPTIMIZERS",
    "schedules",
]
