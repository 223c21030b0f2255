"""Checkpoints: a model, its optimizer's state, BatchNorm statistics, random-generator states and the
training position, in one ``.npz`` file, written atomically and read without pickle.

::

    gpunn.checkpoint.save("run.npz", net, optimizer, trainer)      # or trainer.save_checkpoint(path)
    gpunn.checkpoint.load("run.npz", net, optimizer, trainer)      # or trainer.resume(path)
    net = gpunn.checkpoint.load_model("run.npz", device="cuda")    # rebuild the MLP from the file
    net.save("net.npz"); net = gpunn.load("net.npz", device="cpu")  # the same, model only

``pickle.dumps(net)`` and ``copy.deepcopy(net)`` write this format in memory (:func:`model_to_bytes`)
and rebuild the MLP from it on its device.

**Format** (version :data:`FORMAT_VERSION`): a NumPy ``.npz`` archive (an uncompressed zip of
``.npy`` arrays) that ``numpy.load(path, allow_pickle=False)`` reads:

* ``__gpunn__``: the metadata, UTF-8 JSON stored as a 1-D ``uint8`` array
  (``json.loads(npz["__gpunn__"].tobytes())``): ``format``, ``version``, the model's class,
  constructor config, dtype and parameter layout, and the optimizer/trainer state trees, in which
  arrays are references ``{"__array__": "optimizer/0"}`` to other entries and Python numbers, strings
  and random-generator states (big integers: JSON keeps them exact) are stored inline;
* ``model/params``: the model's flat parameter buffer (dtype of the model), ``model/buffers/<name>``:
  its BatchNorm running statistics (``model.buffers``), if any;
* ``optimizer/<i>``, ``trainer/<i>``: the arrays of the optimizer's ``state_dict()`` and of the
  trainer's state (the current epoch's data order, the history curves).

Arrays are stored on the host, so a checkpoint written on one device loads on any other.

**Writing** goes to a temporary file in the target's directory, which is flushed, ``fsync``-ed and
then renamed over the target with ``os.replace``: a crash or Ctrl-C mid-write leaves the previous
checkpoint intact, never a half-written one.

**Reading** checks everything before it changes anything: a file that is not a zip archive, a
``.npz`` without gpunn's metadata, a truncated or corrupted entry (each entry's declared size is
checked before it is read, and the zip CRC after), a newer format version, a checkpoint of another
architecture (parameter names, shapes, dtype, BatchNorm buffers, activations) or of another
optimizer class raises :class:`CheckpointError` (a ``ValueError``) naming the file and the problem;
the model, optimizer and trainer are then left untouched.  A missing file raises
``FileNotFoundError``.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import tempfile
import warnings
import zipfile
import zlib
from math import prod
from pathlib import Path

from .backend import device as get_device
from .backend import host_xp, is_device_array

np = host_xp()

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "FORMAT",
    "FORMAT_VERSION",
    "save",
    "load",
    "load_model",
    "model_from_bytes",
    "model_to_bytes",
    "read_metadata",
    "reduce_model",
]

FORMAT = "gpunn-checkpoint"
FORMAT_VERSION = 1
META = "__gpunn__"
_MAX_DEFLATE_RATIO = 1100  # DEFLATE cannot expand more than ~1032:1; larger claims are corrupt
_TAGS = ("__array__", "__scalar__", "__tuple__", "__items__")
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class CheckpointError(ValueError):
    """A file is not a usable gpunn checkpoint (corrupt, truncated, foreign, newer format) or does not
    fit the model/optimizer/trainer it is loaded into.  The message starts with the file's path;
    ``path`` holds it."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class CheckpointWarning(UserWarning):
    """Loading succeeded, but something differs from the saved run (e.g. a loss or dropout setting)."""


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def save(path, model, optimizer=None, trainer=None) -> Path:
    """Write ``model`` (parameters, BatchNorm buffers, random-generator states, constructor config),
    and optionally ``optimizer``'s state and ``trainer``'s position, history and data order, to
    ``path`` (used as given; ``.npz`` is the customary suffix), atomically.  Returns the path."""
    p = _as_path(path)
    _atomic_write(p, _checkpoint_arrays(model, optimizer, trainer))
    return p


def load(path, model, optimizer=None, trainer=None) -> dict:
    """Restore ``model`` (and ``optimizer``, ``trainer`` when given) from the checkpoint at ``path``.

    The model must have the architecture of the saved one (same parameter names, shapes and dtype,
    same BatchNorm buffers and activations); it may live on another device.  Everything is checked
    before anything is changed.  Returns the checkpoint's metadata dict.
    """
    _check_model_type(model)
    p, meta, arrays = _read(path)
    _check_model(p, meta["model"], arrays, model)
    opt_state = None
    if optimizer is not None:
        stored = meta.get("optimizer")
        if not stored:
            raise CheckpointError(
                p,
                "holds no optimizer state, but an optimizer "
                f"({type(optimizer).__name__}) was given to restore; pass "
                "optimizer=None to load the model only",
            )
        if stored.get("class") != type(optimizer).__name__:
            raise CheckpointError(
                p,
                f"holds the state of a {stored.get('class')} optimizer, not of "
                f"the {type(optimizer).__name__} given",
            )
        opt_state = _decode(stored.get("state"), arrays, p)
        _check_optimizer_state(p, opt_state, model)
    tr_state = None
    if trainer is not None:
        if not meta.get("trainer"):
            raise CheckpointError(
                p,
                "holds no trainer state (it was saved without a trainer); load it "
                "with gpunn.checkpoint.load(path, model, optimizer) instead",
            )
        tr_state = _decode(meta["trainer"], arrays, p)
        try:
            trainer._check_state(tr_state)
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(p, f"bad trainer state: {exc}") from exc
    if optimizer is not None:  # most likely to fail: applied first, before the model changes
        try:
            _load_optimizer_state(optimizer, opt_state, model.device)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(p, f"cannot restore the {type(optimizer).__name__} state: {exc}") from exc
    _apply_model(meta["model"], arrays, model)
    if trainer is not None:
        trainer.load_state_dict(tr_state)
    return meta


def load_model(path, device="cpu"):
    """Rebuild the :class:`~gpunn.MLP` stored in the checkpoint at ``path`` on ``device``, with its
    parameters and BatchNorm statistics (its constructor config is stored in the file).  Also
    available as ``gpunn.load(path, device=...)``; ``net.save(path)`` writes such a file."""
    from .mlp import MLP

    dev = get_device(device)
    p, meta, arrays = _read(path, check_headers=_check_declared_sizes)
    return _rebuild(p, meta, arrays, dev, MLP)


def model_to_bytes(model) -> bytes:
    """The model-only checkpoint of ``model`` (the bytes :func:`save` would write to a file), in memory:
    what pickling and ``copy.deepcopy`` of an MLP go through.  Read back with :func:`model_from_bytes`."""
    buf = io.BytesIO()
    _write_npz(buf, _checkpoint_arrays(model))
    return buf.getvalue()


def model_from_bytes(data, device="cpu", cls=None, overrides=None):
    """Rebuild a model from :func:`model_to_bytes`'s ``data`` on ``device``: an instance of ``cls``
    (default :class:`~gpunn.MLP`; the checkpoint must hold one of that class's name), built with the
    stored constructor config updated by ``overrides`` (constructor arguments a checkpoint cannot store,
    such as ``dropout_rand``), then given the stored parameters, buffers and generator states."""
    if cls is None:
        from .mlp import MLP as cls
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"data must be bytes (from gpunn.checkpoint.model_to_bytes), got {type(data).__name__}"
        )
    data = bytes(data)
    p, meta, arrays = _read_archive(
        "<in-memory checkpoint>", io.BytesIO(data), len(data), check_headers=_check_declared_sizes
    )
    return _rebuild(p, meta, arrays, get_device(device), cls, overrides)


def _check_declared_sizes(p, meta, headers):
    """Before load_model builds anything: the layer sizes of the stored config must give the number of
    parameters the file declares and the stored parameter array holds (read from its .npy header),
    so a small file cannot make gpunn allocate what its config claims."""
    m = meta["model"]
    cfg = m.get("config")
    if not isinstance(cfg, dict):
        return  # (load_model refuses it)
    from .mlp import layer_sizes

    try:
        sizes = layer_sizes(cfg.get("input_size"), cfg.get("hidden_sizes", []), cfg.get("output_size"))
    except ValueError as exc:
        raise CheckpointError(p, f"bad model config: {exc}") from None
    n = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    n += 2 * sum(sizes[1:-1]) if cfg.get("batchnorm") is True else 0
    stored = headers.get("model/params")
    shape = None if stored is None else stored[0]
    if shape != (n,) or m.get("n_params") != n:
        raise CheckpointError(
            p,
            f"the stored config declares layers {sizes} ({n} parameters), but the file "
            f"declares {m.get('n_params')!r} and holds an array of shape {shape}: "
            "corrupt or tampered with; nothing was allocated",
        )


def read_metadata(path) -> dict:
    """The checkpoint's metadata (format, version, model config and layout, optimizer class, trainer
    position), after the same checks as :func:`load`; arrays appear as ``{"__array__": key}``."""
    return _read(path)[1]


# --------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------


def _checkpoint_arrays(model, optimizer=None, trainer=None) -> dict:
    """The arrays of a checkpoint (``__gpunn__`` the JSON metadata), as :func:`save` writes them."""
    _check_model_type(model)
    arrays: dict = {}
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "gpunn_version": _gpunn_version(),
        "model": _model_meta(model, arrays),
        "optimizer": None,
        "trainer": None,
    }
    if optimizer is not None:
        meta["optimizer"] = {
            "class": type(optimizer).__name__,
            "state": _encode(_optimizer_state(optimizer), arrays, "optimizer", "optimizer"),
        }
    if trainer is not None:
        meta["trainer"] = _encode(trainer.state_dict(), arrays, "trainer", "trainer")
    text = json.dumps(meta, allow_nan=True)
    arrays[META] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return arrays


def _rebuild_config(p, m, cls) -> dict:
    """The stored constructor config of model description ``m``, checked to rebuild a ``cls``."""
    if m.get("class") != cls.__name__:
        raise CheckpointError(
            p,
            f"rebuilds {cls.__module__}.{cls.__name__} models; this checkpoint holds a "
            f"{m.get('class')!r}: build the model yourself and use "
            "gpunn.checkpoint.load()",
        )
    cfg = m.get("config")
    if not isinstance(cfg, dict):
        raise CheckpointError(
            p, "holds no model config; build the MLP yourself and use gpunn.checkpoint.load()"
        )
    for key in ("activation", "loss"):
        v = cfg.get(key)
        if v is None or (isinstance(v, list) and None in v):
            raise CheckpointError(
                p,
                f"the model used a custom {key} object, which a checkpoint cannot "
                "store; build the MLP yourself and use gpunn.checkpoint.load()",
            )
    accepted = inspect.signature(cls).parameters
    unknown = sorted(k for k in cfg if k not in accepted)
    if unknown:
        raise CheckpointError(
            p, f"config option(s) {unknown} are not supported by this version's {cls.__name__}"
        )
    return cfg


def _rebuild(p, meta, arrays, dev, cls, overrides=None):
    """A new ``cls`` on ``dev`` from a checkpoint's config, with its parameters, buffers, generators."""
    m = meta["model"]
    cfg = {**_rebuild_config(p, m, cls), **(overrides or {})}
    try:
        model = cls(**cfg, device=dev)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            p, f"cannot rebuild the {cls.__name__} from the stored config {cfg}: {exc}"
        ) from exc
    _check_model(p, m, arrays, model)
    _apply_model(m, arrays, model)
    return model


def reduce_model(model):
    """``model.__reduce__()``: pickling, ``copy.copy`` and ``copy.deepcopy`` of an MLP go through the
    checkpoint format (:func:`model_to_bytes`), onto the model's device (``"cuda:0"`` unpickled where
    there is no GPU falls back to the CPU with a ``DeviceFallbackWarning``).  Constructor arguments the
    format cannot store (``dropout_rand``) are pickled along as they are.  A model the format cannot
    rebuild (a custom activation or loss object) raises ``TypeError`` naming what to do instead."""
    cls = type(model)
    _check_model_type(model)
    m = {"class": cls.__name__, "config": _model_config(model)}
    try:
        _rebuild_config("model", m, cls)
    except CheckpointError as exc:
        raise TypeError(
            f"cannot pickle or copy this {cls.__name__}: {exc.problem}.  Save its weights "
            "with net.save(path) and load them into a model you build with "
            "gpunn.checkpoint.load(path, model)"
        ) from None
    overrides = {}
    if getattr(model, "dropout_rand", None) is not None:
        overrides["dropout_rand"] = model.dropout_rand
    return model_from_bytes, (model_to_bytes(model), model.device.name, cls, overrides or None)


def _check_model_type(model):
    params = getattr(model, "params", None)
    if (
        getattr(params, "flat", None) is None
        or getattr(params, "layout", None) is None
        or getattr(model, "device", None) is None
    ):
        raise TypeError(
            f"model must be a gpunn MLP (with flat .params and a .device), got {type(model).__name__}"
        )


def _buffers(model) -> dict:
    b = getattr(model, "buffers", None)
    return dict(b) if isinstance(b, dict) else {}


def _model_rngs(model) -> dict:
    """Host random generators the model draws from (dropout masks), by attribute path."""
    found, seen = {}, set()

    def scan(obj, prefix):
        for name, v in sorted(vars(obj).items()):
            if isinstance(v, np.random.Generator) and id(v) not in seen:
                seen.add(id(v))
                found[prefix + name] = v

    scan(model, "")
    for i, layer in enumerate(getattr(model, "layers", ()) or ()):
        if hasattr(layer, "__dict__"):
            scan(layer, f"layers.{i}.")
    return found


def _jsonable(v) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_jsonable(e) for e in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _jsonable(e) for k, e in v.items())
    return False


def _model_config(model):
    """The constructor arguments that rebuild ``model``: its ``config`` (set by ``MLP.__init__``), the
    JSON-able values kept, tuples as lists; None for a model that keeps no config (it cannot be rebuilt
    from its checkpoint, only loaded into a model built by hand)."""
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, dict):
        return None
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if _jsonable(v)}


def _model_meta(model, arrays) -> dict:
    dev = model.device
    layout = model.params.layout
    arrays["model/params"] = dev.to_numpy(model.params.flat)
    buffers = {}
    for name, b in _buffers(model).items():
        host = dev.to_numpy(b)
        arrays[f"model/buffers/{name}"] = host
        buffers[name] = {"shape": list(host.shape), "dtype": host.dtype.name}
    return {
        "class": type(model).__name__,
        "dtype": np.dtype(model.params.flat.dtype).name,
        "n_params": int(layout.size),
        "layout": [[name, list(layout.shapes[name]), int(layout.offsets[name])] for name in layout.names],
        "buffers": buffers,
        "config": _model_config(model),
        "rngs": {
            name: _encode(g.bit_generator.state, arrays, f"model/rng/{name}", name)
            for name, g in _model_rngs(model).items()
        },
    }


def _fmt_layout(layout) -> str:
    return ", ".join(f"{n} {tuple(s)}" for n, s, _ in layout)


def _check_model(p, m, arrays, model):
    """Raise CheckpointError unless the stored model ``m`` fits ``model`` (nothing is changed)."""
    if not isinstance(m, dict) or not isinstance(m.get("layout"), list):
        raise CheckpointError(p, "metadata has no valid model description")
    dtype = np.dtype(model.params.flat.dtype).name
    layout = model.params.layout
    mine = [[name, list(layout.shapes[name]), int(layout.offsets[name])] for name in layout.names]
    theirs = m["layout"]
    if theirs != mine:
        raise CheckpointError(p, _layout_mismatch(theirs, mine))
    if m.get("dtype") != dtype:
        raise CheckpointError(
            p,
            f"holds {m.get('dtype')} parameters but the model computes in {dtype}; "
            f"build the model with dtype={m.get('dtype')!r}",
        )
    flat = arrays.get("model/params")
    if flat is None or flat.shape != (layout.size,) or flat.dtype.name != dtype:
        got = "missing" if flat is None else f"{flat.dtype.name} {flat.shape}"
        raise CheckpointError(p, f"entry 'model/params' is {got}, expected {dtype} ({layout.size},)")
    mine_b = {
        k: {"shape": list(v.shape), "dtype": np.dtype(v.dtype).name} for k, v in _buffers(model).items()
    }
    theirs_b = m.get("buffers") or {}
    if theirs_b != mine_b:
        raise CheckpointError(
            p,
            "is a checkpoint of a different architecture: its buffers (BatchNorm "
            f"statistics) are {_fmt_buffers(theirs_b)}, the model's "
            f"{_fmt_buffers(mine_b)}",
        )
    for name, spec in theirs_b.items():
        a = arrays.get(f"model/buffers/{name}")
        if a is None or list(a.shape) != spec["shape"] or a.dtype.name != spec["dtype"]:
            raise CheckpointError(
                p, f"entry 'model/buffers/{name}' is missing or does not match its metadata"
            )
    cfg, my_cfg = m.get("config") or {}, _model_config(model) or {}
    if (
        cfg.get("activation") is not None
        and my_cfg.get("activation") is not None
        and cfg["activation"] != my_cfg["activation"]
    ):
        raise CheckpointError(
            p,
            "is a checkpoint of a different architecture: activations "
            f"{cfg['activation']} in the checkpoint, {my_cfg['activation']} in the "
            "model",
        )
    differ = sorted(k for k in set(cfg) & set(my_cfg) if cfg[k] != my_cfg[k] and k != "activation")
    if differ:
        warnings.warn(
            f"{p}: the model differs from the saved one in "
            + ", ".join(f"{k} ({cfg[k]!r} saved, {my_cfg[k]!r} now)" for k in differ),
            CheckpointWarning,
            stacklevel=3,
        )
    _check_rngs(p, m, arrays, model)


def _check_rngs(p, m, arrays, model):
    """Raise CheckpointError unless every stored random-generator state can be applied."""
    rngs = m.get("rngs") or {}
    if not isinstance(rngs, dict):
        raise CheckpointError(p, "bad 'rngs' entry in the model metadata")
    mine = _model_rngs(model)
    for name, state in rngs.items():
        if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
            raise CheckpointError(p, f"bad random-generator state for {name!r}")
        try:  # the whole state, now: applying it must not fail half-way through a load
            make_rng(_decode(state, arrays, p))
        except CheckpointError:
            raise
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise CheckpointError(p, f"bad random-generator state for {name!r}: {exc}") from exc
        gen = mine.get(name)
        if gen is not None and type(gen.bit_generator).__name__ != state["bit_generator"]:
            raise CheckpointError(
                p,
                f"random generator {name!r} is a {state['bit_generator']} in the "
                f"checkpoint, a {type(gen.bit_generator).__name__} in the model",
            )


def _layout_mismatch(theirs, mine) -> str:
    """What differs between a checkpoint's parameter layout and the model's, for the error message."""
    detail = ""
    try:
        for (n1, s1, _), (n2, s2, _) in zip(theirs, mine, strict=False):
            if n1 != n2 or list(s1) != list(s2):
                detail = (
                    f": parameter {n1!r} has shape {tuple(s1)} in the checkpoint, the model's "
                    f"{n2!r} has {tuple(s2)}"
                )
                break
        theirs_txt = _fmt_layout(theirs)
    except (TypeError, ValueError):
        theirs_txt = "(unreadable layout)"
    return (
        f"is a checkpoint of a different architecture{detail} (checkpoint: {theirs_txt}; model: "
        f"{_fmt_layout(mine)})"
    )


def _fmt_buffers(b) -> str:
    return "{" + ", ".join(f"{k} {tuple(v.get('shape', ()))}" for k, v in b.items()) + "}" if b else "none"


def _apply_model(m, arrays, model):
    dev = model.device
    bufs = _buffers(model)
    with dev:
        model.params.flat[...] = dev.to_device(arrays["model/params"])
        for name in m.get("buffers") or {}:
            bufs[name][...] = dev.to_device(arrays[f"model/buffers/{name}"])
    rngs = _model_rngs(model)
    for name, state in (m.get("rngs") or {}).items():
        gen = rngs.get(name)
        if gen is None:
            warnings.warn(
                f"the checkpoint holds the state of random generator {name!r}, which the model "
                "does not have; ignored",
                CheckpointWarning,
                stacklevel=3,
            )
            continue
        _set_rng_state(gen, _decode(state, arrays, "?"))


def _set_rng_state(gen, state):
    """Give ``gen`` the stored ``state`` of a bit generator of its own kind (checked before by
    ``_check_rngs``, so the error below is unreachable from a load)."""
    if type(gen.bit_generator).__name__ == state["bit_generator"]:
        gen.bit_generator.state = state
    else:  # pragma: no cover - a generator of another kind: refused, its state is not replaced
        raise ValueError(
            f"generator is {type(gen.bit_generator).__name__}, checkpoint holds {state['bit_generator']}"
        )


def make_rng(state):
    """A host ``numpy.random.Generator`` whose bit generator has ``state`` (from a checkpoint)."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"unknown bit generator {name!r}")
    bg = getattr(np.random, name)()
    bg.state = state
    return np.random.Generator(bg)


# --------------------------------------------------------------------------------------------------
# optimizer
# --------------------------------------------------------------------------------------------------


def _optimizer_state(opt):
    sd = getattr(opt, "state_dict", None)
    if callable(sd):
        return {"kind": "state_dict", "state": sd()}
    warnings.warn(
        f"{type(opt).__name__} has no state_dict(): its state is not saved (resuming is exact "
        "only for a stateless optimizer)",
        CheckpointWarning,
        stacklevel=4,
    )
    return {"kind": "none"}


def _check_optimizer_state(p, state, model):
    """The flat-buffer state arrays (``state.__flat__.<slot>``) must fit the model's buffer."""
    inner = state.get("state") if isinstance(state, dict) else None
    if not isinstance(inner, dict):
        return
    n = model.params.layout.size
    for key, v in inner.items():
        if isinstance(key, str) and key.startswith("state.__flat__.") and getattr(v, "size", n) != n:
            raise CheckpointError(
                p, f"optimizer state {key!r} has {v.size} elements but the model has {n} parameters"
            )


def _load_optimizer_state(opt, state, dev):
    if not isinstance(state, dict) or state.get("kind") not in ("state_dict", "none"):
        raise ValueError("unrecognised optimizer state")
    if state["kind"] == "state_dict":
        if not callable(getattr(opt, "load_state_dict", None)):
            raise ValueError("the optimizer has no load_state_dict()")
        opt.load_state_dict(state["state"])


def _to_numpy(a):
    from .backend import Device

    return Device.to_numpy(a)


# --------------------------------------------------------------------------------------------------
# state trees <-> JSON + arrays
# --------------------------------------------------------------------------------------------------


def _encode(obj, arrays, prefix, where):
    """A JSON-able tree for ``obj``; arrays (host or device) go into ``arrays`` under ``prefix/<i>``."""
    counter = [sum(1 for k in arrays if k.startswith(prefix + "/"))]

    def put(a):
        key = f"{prefix}/{counter[0]}"
        counter[0] += 1
        if a.dtype.hasobject:
            raise TypeError(f"cannot store {where}: an object array")
        arrays[key] = a
        return key

    def enc(v, path):
        if isinstance(v, np.generic):  # before float: np.float64 is a float subclass
            return {"__scalar__": put(np.asarray(v))}
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return float(v)
        if isinstance(v, np.ndarray) or is_device_array(v):
            return {"__array__": put(np.ascontiguousarray(_to_numpy(v)))}
        if isinstance(v, tuple):
            return {"__tuple__": [enc(e, f"{path}[{i}]") for i, e in enumerate(v)]}
        if isinstance(v, list):
            return [enc(e, f"{path}[{i}]") for i, e in enumerate(v)]
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in v):
                return {k: enc(e, f"{path}[{k!r}]") for k, e in v.items()}
            return {"__items__": [[enc(k, path), enc(e, f"{path}[{k!r}]")] for k, e in v.items()]}
        raise TypeError(
            f"cannot store {path} in a checkpoint: a {type(v).__name__} (checkpoints hold "
            "arrays, numbers, strings, lists, tuples and dicts)"
        )

    return enc(obj, where)


def _decode(tree, arrays, p):
    def arr(key):
        a = arrays.get(key) if isinstance(key, str) else None
        if a is None:
            raise CheckpointError(p, f"metadata refers to an array {key!r} that the file does not hold")
        return a

    def dec(v):
        if isinstance(v, list):
            return [dec(e) for e in v]
        if isinstance(v, dict):
            if len(v) == 1:
                ((k, e),) = v.items()
                if k == "__array__":
                    return arr(e)
                if k == "__scalar__":
                    return arr(e)[()]
                if k == "__tuple__":
                    return tuple(dec(x) for x in e)
                if k == "__items__":
                    return {_hashable(dec(a)): dec(b) for a, b in e}
            return {k: dec(e) for k, e in v.items()}
        return v

    return dec(tree)


def _hashable(k):
    return tuple(_hashable(e) for e in k) if isinstance(k, list) else k


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------


def _as_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _gpunn_version() -> str:
    import gpunn

    return getattr(gpunn, "__version__", "?")


def _write_npz(f, arrays):
    np.savez(f, **arrays)


def _temp_prefix(p: Path) -> str:
    """The prefix of ``p``'s temporary files: ``.<name>.``, with a long name shortened (and made
    unique by its checksum) so that prefix + 8 random characters + ``.tmp`` fit in 255 bytes."""
    name = p.name
    if len(name.encode()) > 200:
        name = name.encode()[:180].decode(errors="ignore") + f"-{zlib.crc32(p.name.encode()):08x}"
    return f".{name}."


def check_writable(directory: Path, what: str = "checkpoint_path") -> None:
    """Raise ``ValueError`` unless a file can be created in ``directory`` (tried: permissions, a
    read-only file system, a full quota all show)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".gpunn-write-test.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ValueError(
            f"{what}: cannot write in directory {directory} ({exc.strerror or exc}); choose "
            "a writable directory"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _remove_orphans(p: Path, prefix: str, keep: str):
    """Delete temporary files of ``p`` left by writers that were killed mid-write."""
    try:
        names = os.listdir(p.parent)
    except OSError:
        return
    for name in names:
        if (
            name.startswith(prefix)
            and name.endswith(".tmp")
            and name != keep
            and len(name) == len(prefix) + 8 + 4
        ):
            try:
                os.unlink(p.parent / name)
            except OSError:
                pass


def _atomic_write(p: Path, arrays):
    """Write ``arrays`` as an .npz at ``p`` through a temporary file in the same directory, fsync-ed,
    then ``os.replace``-d over ``p``: ``p`` is always either the old file or the complete new one.
    Temporary files of ``p`` orphaned by a killed writer are removed afterwards."""
    directory = p.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot save checkpoint {p}: directory {directory} does not exist")
    prefix = _temp_prefix(p)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(p).st_mode & 0o777
        except OSError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _remove_orphans(p, prefix, os.path.basename(tmp))
    try:  # make the rename itself durable (POSIX); not possible everywhere
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


_MAX_META_BYTES = 64 << 20
_MAX_DEPTH = 64


def _depth(tree) -> int:
    """The nesting depth of a JSON tree (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d <= _MAX_DEPTH:
                stack.extend((e, d + 1) for e in (v.values() if isinstance(v, dict) else v))
    return deepest


def _references(tree) -> set:
    """The array entries a metadata tree refers to (``{"__array__": key}``, ``{"__scalar__": key}``)."""
    found, stack = set(), [tree]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if (
                len(v) == 1
                and next(iter(v)) in ("__array__", "__scalar__")
                and isinstance(next(iter(v.values())), str)
            ):
                found.add(next(iter(v.values())))
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found


def _read(path, check_headers=None):
    """(path, metadata, {name: host array}) of a checkpoint, or CheckpointError.

    The metadata is read first; then every entry's .npy header, which ``check_headers(p, meta,
    {name: (shape, dtype)})`` may check before any array is read; then the arrays the metadata
    refers to (other entries are never decompressed)."""
    p = _as_path(path)
    if not p.exists():
        raise FileNotFoundError(2, "checkpoint file not found", str(p))
    if p.is_dir():
        raise CheckpointError(p, "is a directory, not a checkpoint file")
    return _read_archive(p, p, p.stat().st_size, check_headers)


def _read_archive(p, source, size_on_disk, check_headers=None):
    """(p, metadata, arrays) of the checkpoint in ``source`` (a path or a binary file of
    ``size_on_disk`` bytes), as :func:`_read` describes; ``p`` names it in errors."""
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise CheckpointError(
            p,
            "is not a gpunn checkpoint: not a .npz (zip) archive -- random bytes, a "
            f"truncated file or another format ({exc})",
        ) from exc
    with zf:
        infos = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise CheckpointError(p, f"is not a gpunn checkpoint: unexpected entry {info.filename!r}")
            infos[info.filename[:-4]] = info
        if META not in infos:
            names = list(infos)
            shown = ", ".join(names[:6])
            more = ", ..." if len(names) > 6 else ""
            raise CheckpointError(
                p,
                f"is not a gpunn checkpoint: a .npz without the {META!r} metadata "
                f"entry (it holds {shown or 'nothing'}{more})",
            )
        if infos[META].file_size > _MAX_META_BYTES:
            raise CheckpointError(p, f"corrupt metadata: {infos[META].file_size} bytes")
        meta = _parse_meta(p, _read_entry(p, zf, infos[META], size_on_disk))
        wanted = (
            _references(meta)
            | {"model/params"}
            | {
                f"model/buffers/{name}"
                for name in (meta["model"].get("buffers") or {})
                if isinstance(name, str)
            }
        )
        headers = {
            name: _read_entry(p, zf, info, size_on_disk, header_only=True)  # (a few bytes each)
            for name, info in infos.items()
            if name != META
        }
        if check_headers is not None:
            check_headers(p, meta, headers)
        arrays = {
            name: _read_entry(p, zf, infos[name], size_on_disk) for name in sorted(wanted) if name in infos
        }
    return p, meta, arrays


def _parse_meta(p, meta_arr):
    """The metadata dict from its uint8 entry, checked (format, version, depth)."""
    try:
        if meta_arr.dtype != np.uint8 or meta_arr.ndim != 1:
            raise ValueError(f"a {meta_arr.dtype} array of shape {meta_arr.shape}")
        meta = json.loads(meta_arr.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(p, f"corrupt metadata: not UTF-8 JSON of a sane depth ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(p, f"is not a gpunn checkpoint: its metadata has no format {FORMAT!r}")
    if _depth(meta) > _MAX_DEPTH:
        raise CheckpointError(p, f"corrupt metadata: nested more than {_MAX_DEPTH} levels deep")
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(p, f"unknown checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            p,
            f"checkpoint format version {version} is newer than this gpunn reads "
            f"(version {FORMAT_VERSION}); upgrade gpunn to load it",
        )
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(p, "metadata has no model description")
    return meta


def _read_entry(p, zf, info, size_on_disk, header_only=False):
    """The array of one zip entry (or, ``header_only``, its declared (shape, dtype), after reading
    only the .npy header), with the sizes checked before anything large is read."""
    name = info.filename[:-4]
    fmt = np.lib.format
    try:
        if info.compress_size > size_on_disk or (
            info.compress_type != zipfile.ZIP_STORED
            and info.file_size > info.compress_size * _MAX_DEFLATE_RATIO + 4096
        ):
            raise CheckpointError(p, f"entry {name!r} is corrupt: its zip header declares impossible sizes")
        with zf.open(info) as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise CheckpointError(p, f"entry {name!r}: unsupported .npy version {version}")
            if dtype.hasobject:
                raise CheckpointError(
                    p,
                    f"entry {name!r} holds Python objects (pickled data); gpunn "
                    "checkpoints never do, and it is not loaded",
                )
            nbytes = dtype.itemsize * prod(shape)
            room = info.file_size - f.tell()
            if nbytes != room:
                raise CheckpointError(
                    p,
                    f"entry {name!r} is truncated or corrupt: its header declares "
                    f"{dtype} {tuple(shape)} ({nbytes} bytes), the entry holds {room}",
                )
            if header_only:
                return tuple(shape), dtype
            data = bytearray(f.read())  # to the end, so zipfile checks the CRC
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error, NotImplementedError) as exc:
        raise CheckpointError(
            p, f"entry {name!r} is truncated or corrupt ({exc.__class__.__name__}: {exc})"
        ) from exc
    if len(data) != nbytes:
        raise CheckpointError(p, f"entry {name!r} is truncated: {len(data)} of {nbytes} bytes")
    a = np.frombuffer(data, dtype=dtype)
    if fortran:
        return np.ascontiguousarray(a.reshape(shape, order="F"))
    return a.reshape(shape)
