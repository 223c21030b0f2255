"""The optimizer base: the textbook call ``update(params, grads)`` driving fused kernels.

``params`` and ``grads`` are dicts of arrays with the same keys (NumPy or CuPy), updated in place.

* When both are the :class:`~gpunn.params.FlatDict` views of one model's flat buffers, one step is
  **one kernel launch** over the whole buffer; weight decay covers the weight prefix.
* Any other dicts: one launch per array; weight decay covers arrays with ``ndim >= 2`` (weights),
  not vectors (biases, BatchNorm γ/β) nor scalars.

A subclass names its kernel (``rule``), its per-element state arrays (``slots``, created zeroed on
the first step and never reallocated), declares its hyper-parameters as :class:`Hyper` attributes
(validated on every assignment, so a schedule may change them between steps) and says which
scalars the kernel gets this step *by name* (:meth:`Optimizer.scalars`, a dict keyed by the scalar
rule's parameter names; :meth:`Optimizer.decay`).  The order of the kernel's arguments is read from
the rule's signature (:func:`rule_arguments`), so a class never repeats it.  A subclass defined in
a module of :mod:`gpunn.optim` is found there by the package (``gpunn.optim.OPTIMIZERS``,
``__all__``); see that package's docstring for the files an optimizer is made of.

State is saved with :meth:`Optimizer.state_dict` -- a flat ``dict`` of host NumPy arrays and plain
Python numbers, so ``numpy.savez(f, **opt.state_dict())`` works without pickle -- and restored with
:meth:`Optimizer.load_state_dict` (also from ``numpy.load(f)``), onto a model on any device.
"""

from __future__ import annotations

import inspect
from functools import cache
from operator import itemgetter

from ..backend import Device, device_of, host_xp
from ..backend import device as gpunn_device
from ..kernels import ops
from ..validate import check_hyper

np = host_xp()

__all__ = ["Hyper", "Optimizer", "rule_arguments"]

FLAT = "__flat__"
"""The state key of a model's flat buffer (the FlatDict single-launch path)."""

STATE_PREFIX = "state."


class Hyper:
    """Declares a scalar hyper-parameter of an optimizer class (``beta1 = Hyper(low=0, high=1,
    high_open=True)``).  Every assignment to it on an instance -- in ``__init__``, by a schedule,
    by ``load_state_dict`` -- is checked with :func:`gpunn.validate.check_hyper` (a finite number
    within the bounds, else a ``ValueError`` naming it) and stored as a plain ``float`` attribute,
    so reading it in the step costs nothing."""

    def __init__(self, low=None, high=None, low_open=False, high_open=False):
        self.bounds = dict(low=low, high=high, low_open=low_open, high_open=high_open)

    def check(self, name, value, dtype=None) -> float:
        """``value`` as a float within the bounds; with ``dtype`` (the parameters' float type) it must
        also be finite in that type, and a value required to be > 0 must not round to 0 in it."""
        v = check_hyper(name, value, **self.bounds)
        if dtype is not None:
            with np.errstate(over="ignore"):
                cast = Device.scalar(v, dtype)
            if not np.isfinite(cast):
                raise ValueError(
                    f"{name}={value!r} is not finite in {np.dtype(dtype).name} (it overflows to "
                    f"{cast}); the parameters are {np.dtype(dtype).name}: use |{name}| <= "
                    f"{np.finfo(dtype).max:.3g}"
                )
            if self.bounds["low_open"] and self.bounds["low"] == 0 and cast == 0:
                raise ValueError(
                    f"{name}={value!r} rounds to 0 in {np.dtype(dtype).name}, and {name} must "
                    f"be > 0; use {name} >= {np.finfo(dtype).tiny:.3g} (e.g. the default)"
                )
        return v


@cache
def rule_arguments(rule: str) -> tuple:
    """The parameter names of scalar rule ``rule`` of :mod:`gpunn.kernels.optim` after ``(p, g)``, in
    the kernel's order: its state arrays, then its scalars (``adam(p, g, m, v, lr_t, b1, ...)`` gives
    ``("m", "v", "lr_t", "b1", ...)``).  :meth:`Optimizer.check_rule` splits them with the class's
    ``slots``."""
    from ..kernels import optim as rules

    fn = getattr(rules, rule, None)
    if fn is None or not hasattr(fn, "py_func"):
        raise ValueError(f"no scalar rule {rule!r} in gpunn.kernels.optim")
    names = tuple(inspect.signature(fn.py_func).parameters)
    if names[:2] != ("p", "g"):
        raise ValueError(f"rule {rule!r} must start with (p, g), got {names}")
    return names[2:]


def unit_interval():
    """A hyper-parameter in [0, 1): momentum, decay rates ρ, β1, β2."""
    return Hyper(low=0, high=1, high_open=True)


def positive():
    """A hyper-parameter > 0: ε."""
    return Hyper(low=0, low_open=True)


class Optimizer:
    """Base of gpunn's optimizers (see the module docstring).

    ``device`` pins the device the optimizer runs on; by default it is the model's (a FlatDict
    knows it) or that of the arrays (NumPy arrays: the CPU).
    """

    rule: str = ""
    slots: tuple = ()
    variants: tuple = ({},)
    """Constructor keywords of each form of the class that runs a kernel of its own (Nesterov's
    ``form="saito"``): the tests and the real-compiler gate's tour make one of each."""

    lr = Hyper(low=0)
    weight_decay = Hyper(low=0)
    _fast = None

    def __init__(self, lr: float, weight_decay: float = 0.0, device=None, **hyper):
        self.lr = lr
        self.weight_decay = weight_decay
        for name, value in hyper.items():
            setattr(self, name, value)
        self.device = None if device is None else gpunn_device(device)
        self.t = 0
        self.state: dict = {}
        self._pending: dict = {}
        self._kernel = None
        self._fast = None

    # -- hyper-parameters ------------------------------------------------------------------
    def __setattr__(self, name, value):
        spec = getattr(type(self), name, None)
        if isinstance(spec, Hyper):  # (once the parameters' dtype is known: also finite in it)
            value = spec.check(name, value, self.__dict__.get("_dtype"))
        object.__setattr__(self, name, value)

    def check_dtype(self, dtype) -> None:
        """Check every hyper-parameter against the parameters' float ``dtype`` (finite in it; ε not
        rounding to 0), and check later assignments (a schedule's) against it too.  Called by
        :class:`gpunn.Trainer` before training and by the first :meth:`update`; ``ValueError``
        naming the hyper-parameter."""
        dtype = np.dtype(dtype)
        for name in self.hyper_names():
            getattr(type(self), name).check(name, getattr(self, name), dtype)
        object.__setattr__(self, "_dtype", dtype)

    @classmethod
    def hyper_names(cls) -> tuple:
        """Names of the hyper-parameters (``lr``, ``weight_decay``, then the rule's own)."""
        names = []
        for klass in reversed(cls.__mro__):
            names += [k for k, v in vars(klass).items() if isinstance(v, Hyper) and k not in names]
        return tuple(names)

    def hyper_params(self) -> dict:
        """The hyper-parameters by name (saved by :meth:`state_dict`)."""
        return {name: getattr(self, name) for name in self.hyper_names()}

    def scalars(self) -> dict:
        """The rule's scalar kernel arguments for this step (``self.t`` already incremented), keyed by
        the rule's parameter names (``gpunn.kernels.optim``), in any order."""
        return {"lr": self.lr}

    @classmethod
    def check_rule(cls, rule: str | None = None, slots: tuple | None = None) -> tuple:
        """The names of the scalars rule ``rule`` (default ``cls.rule``) takes, in its order, after
        checking that its state parameters are the class's ``slots`` (``TypeError`` otherwise)."""
        rule = cls.rule if rule is None else rule
        slots = cls.slots if slots is None else slots
        names = rule_arguments(rule)
        if names[: len(slots)] != tuple(slots):
            raise TypeError(
                f"{cls.__name__}: rule {rule!r} takes state {names[: len(slots)]} after (p, g), "
                f"the class's slots are {tuple(slots)}"
            )
        return names[len(slots) :]

    def scalar_names(self) -> tuple:
        """The names of this optimizer's kernel scalars, in the rule's order (checked once)."""
        key = (self.rule, self.slots)
        names = _SCALAR_NAMES.get(key)
        if names is None:
            names = _SCALAR_NAMES[key] = self.check_rule(*key)
        return names

    def hyper(self) -> tuple:
        """The rule's scalar kernel arguments for this step as a tuple in the rule's order: the values
        of :meth:`scalars` ordered by the rule's signature (a ``TypeError`` names any missing or
        unknown name)."""
        return self._ordered(self.scalars(), self.scalar_names())

    def _ordered(self, values: dict, names: tuple) -> tuple:
        try:
            ordered = tuple([values[k] for k in names])
        except KeyError:
            ordered = None
        if ordered is None or len(values) != len(names):
            raise TypeError(
                f"{type(self).__name__}.scalars() gives {sorted(values)}; rule {self.rule!r} "
                f"takes {list(names)}"
            )
        return ordered

    def decay(self) -> float:
        """The kernel's weight-decay argument: λ, added to the weights' gradients."""
        return self.weight_decay

    # -- the step ---------------------------------------------------------------------------
    def update(self, params: dict, grads: dict) -> None:
        """One step, in place: every ``params[k]`` moves by the rule using ``grads[k]``."""
        fast = self._fast
        if (
            fast is not None
            and getattr(params, "flat", None) is fast[0]
            and getattr(grads, "flat", None) is fast[1]
        ):
            # the same model's flat buffers as the last step: validated then, state in place
            p, g, run, state, n_decay, cast, ordered = fast
            self.t += 1
            # scalars() gave the rule's names at the first step; ``ordered`` puts them in its order
            run(p.size, p, g, *state, *map(cast, ordered(self.scalars())), cast(self.decay()), n_decay)
            return
        groups = self._groups(params, grads)
        dev = self._resolve_device(params, groups)
        with dev:  # cuda:N: the state arrays on GPU N
            self._first_update(dev, params, grads, groups)

    step = update

    def _first_update(self, dev, params, grads, groups):
        """A step that validated its arguments: the kernel for ``dev``, the state, and for a model's
        flat buffers the fast path of the next steps."""
        if self.__dict__.get("_dtype") != groups[0][1].dtype:
            self.check_dtype(groups[0][1].dtype)
        if self._kernel is None or self._kernel[0] != dev:
            self._kernel = (dev, ops(dev).elementwise(dev, "optim", self.rule))
        kernel = self._kernel[1]
        states = [self._state_for(dev, key, p) for key, p, _, _ in groups]
        self.t += 1
        values = (*self.hyper(), self.decay())
        scalars = {}
        for (_, p, g, n_decay), state in zip(groups, states, strict=True):
            s = scalars.get(p.dtype)
            if s is None:
                s = scalars[p.dtype] = tuple(Device.scalar(v, p.dtype) for v in values)
            kernel(p.size, p, g, *state, *s, n_decay)
        if groups[0][0] == FLAT:
            # Device.scalar(v, dtype) is dtype's scalar type applied to v: keep that type
            cast = type(Device.scalar(0, groups[0][1].dtype))
            self._fast = (
                params.flat,
                grads.flat,
                kernel,
                states[0],
                groups[0][3],
                cast,
                _in_order(self.scalar_names()),
            )

    def _state_for(self, dev, key, p):
        """The state arrays of ``key``: created (zeroed, or from a loaded state dict) on first use."""
        state = self.state.get(key)
        if state is not None:
            if state and not dev.owns(state[0]):
                raise TypeError(
                    f"the optimizer's state for {key!r} lives on another device than the "
                    f"parameters ({dev.name}); make a new optimizer, or move it with "
                    "load_state_dict(state_dict())"
                )
            return state
        if self._pending:
            loaded = self._pending.pop(key, None)
            if loaded is None:
                raise ValueError(
                    f"the loaded state holds parameters {sorted(self._pending)}, not {key!r}: "
                    "load a state dict saved from the same model layout"
                )
            for slot, a in zip(self.slots, loaded, strict=True):
                if a.size != p.size:
                    raise ValueError(
                        f"loaded state {slot!r} of {key!r} has {a.size} elements, the parameter has {p.size}"
                    )
            state = tuple(dev.to_device(a.reshape(-1).copy(), p.dtype) for a in loaded)
        else:
            state = tuple(dev.xp.zeros_like(p) for _ in self.slots)
        self.state[key] = state
        return state

    def _groups(self, params, grads):
        """[(state key, flat param, flat grad, n_decay)], validated."""
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError("update(params, grads) takes two dicts of arrays")
        layout = getattr(params, "layout", None)
        if layout is not None and getattr(grads, "layout", None) is layout:
            return [self._check_pair(FLAT, params.flat, grads.flat, layout.n_decay)]
        if params.keys() != grads.keys():
            missing, extra = set(params) - set(grads), set(grads) - set(params)
            raise ValueError(
                f"params and grads have different keys: missing in grads {sorted(missing)}, "
                f"not in params {sorted(extra)}"
            )
        if not params:
            raise ValueError("update() got no parameters")
        return [
            self._check_pair(k, p, grads[k], p.size if getattr(p, "ndim", 0) >= 2 else 0)
            for k, p in params.items()
        ]

    def _check_pair(self, key, p, g, n_decay):
        name = "the flat buffer" if key == FLAT else repr(key)
        for what, a in (("params", p), ("grads", g)):
            if not hasattr(a, "dtype") or not hasattr(a, "shape"):
                raise TypeError(f"{what}[{name}] must be an array, got {type(a).__name__}")
            if a.dtype.name not in ("float32", "float64"):
                raise TypeError(f"{what}[{name}] has dtype {a.dtype}; optimizers take float32 or float64")
            if not a.flags.c_contiguous:
                raise ValueError(
                    f"{what}[{name}] is not C-contiguous; the update is done in place "
                    "on the array's memory, pass a contiguous array"
                )
        if not getattr(p.flags, "writeable", True):
            raise ValueError(
                f"params[{name}] is read-only (a NumPy scalar or an array with "
                "flags.writeable=False); the update is done in place, pass a writeable array"
            )
        if p.shape != g.shape:
            raise ValueError(f"grads[{name}] has shape {g.shape}, params[{name}] has {p.shape}")
        if p.dtype != g.dtype:
            raise TypeError(f"grads[{name}] is {g.dtype} but params[{name}] is {p.dtype}")
        if device_of(p) != device_of(g):
            raise TypeError(
                f"params[{name}] and grads[{name}] live on different devices "
                f"({device_of(p).name} vs {device_of(g).name})"
            )
        state = self.state.get(key)
        if state and state[0].size != p.size:
            raise ValueError(
                f"params[{name}] changed size from {state[0].size} to {p.size} "
                "since the optimizer's state was created; make a new optimizer"
            )
        return key, p.reshape(-1), g.reshape(-1), n_decay

    def _resolve_device(self, params, groups) -> Device:
        if self.device is not None:
            dev = self.device
        else:
            dev = getattr(params, "device", None)
            if dev is None:
                dev = device_of(groups[0][1])
        for key, p, g, _ in groups:
            if not dev.owns(p) or not dev.owns(g):
                raise TypeError(
                    f"params/grads {key!r} are {dev.array_kind(p)}, not arrays of "
                    f"{dev.name}, where this optimizer runs"
                )
        return dev

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimizer's state as a flat dict of plain Python numbers and host NumPy arrays
        (copies): ``"t"`` (steps taken), each hyper-parameter by name, and ``"state.<key>.<slot>"``
        for each state array (``<key>`` is ``__flat__`` for a model's flat buffer, else the
        parameter's key; arrays are 1-D).  ``numpy.savez(path, **opt.state_dict())`` stores it
        without pickle."""
        d = {"t": self.t, **self.hyper_params()}
        for key, arrays in self.state.items():
            for slot, a in zip(self.slots, arrays, strict=True):
                d[f"{STATE_PREFIX}{key}.{slot}"] = Device.to_numpy(a).copy()
        for key, arrays in self._pending.items():
            for slot, a in zip(self.slots, arrays, strict=True):
                d[f"{STATE_PREFIX}{key}.{slot}"] = a.copy()
        return d

    def load_state_dict(self, state_dict) -> None:
        """Restore a :meth:`state_dict` (a dict, or the ``numpy.load`` of a saved ``.npz``).

        Hyper-parameters and the step count take effect at once; the state arrays are moved onto
        the device of the parameters at the next :meth:`update` (so a state saved on a GPU loads
        onto a CPU model and vice versa) and replace any state this optimizer had.
        """
        host = gpunn_device("cpu")
        names = set(self.hyper_names())
        keys = list(state_dict.keys())
        if "t" not in keys:
            raise ValueError("not an optimizer state dict: it has no 't' (step count)")
        unknown = [k for k in keys if k != "t" and k not in names and not k.startswith(STATE_PREFIX)]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no hyper-parameters {unknown}; it has {sorted(names)}"
            )
        pending: dict = {}
        for k in keys:
            if not k.startswith(STATE_PREFIX):
                continue
            key, _, slot = k[len(STATE_PREFIX) :].rpartition(".")
            if slot not in self.slots:
                raise ValueError(
                    f"state entry {k!r}: {type(self).__name__} keeps {list(self.slots)}, "
                    f"not {slot!r} -- was it saved from another optimizer?"
                )
            a = Device.to_numpy(state_dict[k])
            if a.dtype.kind != "f":
                raise TypeError(f"state entry {k!r} has dtype {a.dtype}, expected floats")
            pending.setdefault(key, {})[slot] = a
        for key, by_slot in pending.items():
            if set(by_slot) != set(self.slots):
                raise ValueError(
                    f"state of {key!r} has {sorted(by_slot)}, {type(self).__name__} needs {list(self.slots)}"
                )
        t = _number(state_dict["t"], "t")
        if t != int(t) or t < 0:
            raise ValueError(f"t must be a non-negative whole number, got {t}")
        hyper = {name: _number(state_dict[name], name) for name in names if name in keys}
        for name, value in hyper.items():  # validate all before changing anything
            getattr(type(self), name).check(name, value, self.__dict__.get("_dtype"))
        for name, value in hyper.items():
            setattr(self, name, value)
        self.t = int(t)
        self.state = {}
        self._fast = None
        self._pending = {
            key: tuple(host.to_device(by_slot[s]) for s in self.slots) for key, by_slot in pending.items()
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyper_params().items())
        return f"{type(self).__name__}({args})"


def _in_order(names: tuple):
    """A function taking a dict to the tuple of its values for ``names``, in that order (C speed:
    ``itemgetter``; the fast path's per-step cost over a positional tuple is ~0.3 µs)."""
    if len(names) == 1:
        key = names[0]
        return lambda values: (values[key],)
    return itemgetter(*names)


_SCALAR_NAMES: dict = {}
"""(rule, slots) -> the rule's scalar names, checked against the slots (see ``scalar_names``)."""


def _number(value, name):
    """A plain Python number from a number or a 0-d/1-element array (as ``numpy.load`` gives)."""
    size = getattr(value, "size", 1)
    if size != 1:
        raise ValueError(f"state dict entry {name!r} must be a number, got an array of {size} elements")
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        raise TypeError(f"state dict entry {name!r} must be a number, got {value!r}") from None
