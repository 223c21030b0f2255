"""Hostile and careless inputs, table-driven: every case must raise a ``TypeError``/``ValueError``
(or a subclass: ``CheckpointError``, ``IDXFormatError``; ``FileNotFoundError`` for missing files) whose
message names the argument and what was expected -- never a Numba typing error, an out-of-bounds
write in a kernel, or a silently wrong result.

Groups: MLP calls and constructor, Trainer, optimizers, datasets, device names, checkpoint files;
then inputs that must be *accepted* (non-contiguous, float64, other integer label dtypes), and the
optimizer kernels on sizes that are not a multiple of the block size (0, 1, 31, 33, 65) with guard
zones around the arrays, on both devices.

Cases already covered elsewhere and not repeated here: tests/test_mlp.py (test_bad_input_is_named,
test_bad_constructor_arguments, test_bad_sizes), tests/test_trainer.py (test_bad_trainer_arguments,
test_dataset_checked_before_training), tests/test_backend.py (test_unknown_device_names,
test_device_name_type, dtype), tests/test_optim_api.py (test_bad_hyper_parameters_are_value_errors_
naming_them, test_mismatched_dicts_raise, test_load_state_dict_rejects_foreign_state),
tests/test_datasets.py (IDX parser: bad headers, truncation, absurd sizes, corrupt gzip, Hypothesis
property test, failed downloads, validation splits).
"""

import json
import zipfile

import numpy as np
import pytest
from conftest import to_numpy
from test_datasets import make_dataset

import gpunn
from gpunn import checkpoint as ckpt
from gpunn import datasets as D
from gpunn import optim
from gpunn.checkpoint import CheckpointError
from gpunn.params import FlatLayout

X = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
T = np.array([0, 1, 2, 0])


def mlp(**kw):
    return gpunn.MLP(6, [5], 3, seed=0, **kw)


def other_device(a):
    """``a`` on the GPU (simulated, or a real one): an array of another device than the CPU models
    these cases build."""
    return gpunn.device("cuda", strict=True).to_device(a)


def case(fn, err, match, id):
    return pytest.param(fn, err, match, id=id)


# --------------------------------------------------------------------------------------------------
# MLP (beyond tests/test_mlp.py)
# --------------------------------------------------------------------------------------------------
MLP_CASES = [
    case(lambda: mlp().gradient(X[0], T), ValueError, r"x must have shape \(batch, 6\)", "x-1d"),
    case(lambda: mlp().gradient(X[None], T), ValueError, r"x must have shape \(batch, 6\)", "x-3d"),
    case(lambda: mlp().gradient(X.astype(complex), T), TypeError, "x must be a real floating", "x-complex"),
    case(lambda: mlp().gradient(X > 0, T), TypeError, "x has integer dtype bool", "x-bool"),
    case(
        lambda: mlp().gradient(np.where(X > 1, np.inf, X), T),
        ValueError,
        r"x contains non-finite.*Inf",
        "x-inf",
    ),
    case(lambda: mlp().gradient(None, T), TypeError, "x must be an array, got NoneType", "x-none"),
    case(lambda: mlp().gradient([[1.0, 2.0], [3.0]], T), TypeError, "x cannot be converted", "x-ragged"),
    case(
        lambda: mlp().gradient(other_device(X), T),
        TypeError,
        "x is an array of cuda:.* on another device",
        "x-other-device",
    ),
    case(lambda: mlp().gradient(X, T[:, None, None]), ValueError, "t must be class indices of shape", "t-3d"),
    case(
        lambda: mlp().gradient(X, T.astype(complex)),
        TypeError,
        "t must hold integer class indices",
        "t-complex",
    ),
    case(
        lambda: mlp().gradient(X, T.astype(object)),
        TypeError,
        "t must hold integer class indices",
        "t-object",
    ),
    case(lambda: mlp().gradient(X, np.array([0, 1, np.nan, 0])), ValueError, "not whole numbers", "t-nan"),
    case(
        lambda: mlp().gradient(X, np.where(np.eye(3)[T] > 0, np.nan, 0)),
        ValueError,
        "t contains non-finite",
        "t-onehot-nan",
    ),
    case(lambda: mlp().gradient(X, np.eye(4)[T]), ValueError, r"one-hot of shape \(4, 3\)", "t-onehot-width"),
    case(
        lambda: mlp().gradient(X, np.array([0, 1, 2, 2**40])),
        ValueError,
        r"labels must be in \[0, 2\]",
        "t-huge-label",
    ),
    case(lambda: mlp().gradient(X, None), TypeError, "t must be an array", "t-none"),
    case(lambda: mlp().gradient(X, 3), TypeError, "t must be an array, got int", "t-scalar"),
    case(
        lambda: mlp().gradient(X, other_device(T)),
        TypeError,
        "t is an array of cuda:.* on another device",
        "t-other-device",
    ),
    case(lambda: mlp().predict(X[:, :5]), ValueError, r"x must have shape \(batch, 6\)", "predict-width"),
    case(
        lambda: mlp().accuracy(X, [0, 1, 3, 0]), ValueError, r"labels must be in \[0, 2\]", "accuracy-label"
    ),
    case(lambda: mlp().loss(X[:0], T[:0]), ValueError, "empty batch", "loss-empty"),
    case(lambda: gpunn.MLP(6.0, [5], 3), ValueError, "must be a positive integer", "size-float"),
    case(lambda: gpunn.MLP(True, [5], 3), ValueError, "must be a positive integer", "size-bool"),
    case(lambda: gpunn.MLP(6, [5, -1], 3), ValueError, "must be a positive integer", "size-negative"),
    case(lambda: gpunn.MLP(6, "5", 3), ValueError, "must be a positive integer", "hidden-str"),
    case(lambda: gpunn.MLP(6, [5], 0), ValueError, "must be a positive integer", "output-0"),
    case(lambda: mlp(dtype="int32"), ValueError, "float32 or float64", "dtype-int"),
    case(lambda: mlp(device=3), TypeError, "device must be a str", "device-int"),
    case(lambda: mlp(activation=None), TypeError, "activation must be a name", "activation-none"),
    case(lambda: mlp(loss=None), ValueError, "unknown loss", "loss-none"),
    case(lambda: mlp(init=-1.0), ValueError, "std must be a finite number >= 0", "init-negative-std"),
    case(
        lambda: mlp(dropout=1.0),
        ValueError,
        r"dropout must be a finite number in \[0, 1\), got 1.0",
        "dropout-1",
    ),
    case(
        lambda: mlp(dropout=-0.1), ValueError, r"dropout must be a finite number in \[0, 1\)", "dropout-neg"
    ),
    case(lambda: mlp(dropout="half"), TypeError, "dropout must be a number", "dropout-str"),
    case(
        lambda: gpunn.MLP(6, [5, 4], 3, dropout=[0.5]),
        ValueError,
        "dropout: got 1 entries for 2 layers",
        "dropout-list-length",
    ),
    case(lambda: mlp(batchnorm="yes"), TypeError, "batchnorm must be True or False", "batchnorm-str"),
    case(
        lambda: mlp(batchnorm=True, bn_momentum=1.5),
        ValueError,
        r"bn_momentum must be .* \[0, 1\]",
        "bn-momentum",
    ),
    case(lambda: mlp(batchnorm=True, bn_eps=0), ValueError, r"bn_eps must be .* \(0, inf\)", "bn-eps-0"),
    case(lambda: mlp(weight_decay=-1), ValueError, r"weight_decay must be .* \[0, inf\)", "mlp-weight-decay"),
]


# --------------------------------------------------------------------------------------------------
# Trainer (beyond tests/test_trainer.py)
# --------------------------------------------------------------------------------------------------
def trainer(**kw):
    kw.setdefault("progress", False)
    return gpunn.Trainer(mlp(), optim.SGD(), **kw)


def fit(x=X, t=T, **kw):
    return trainer(epochs=1).fit(x, t, **kw)


def mid_epoch_trainer_refits_other_data():
    tr = trainer(epochs=1, batch_size=2)
    real = tr.model._gradient
    tr.model._gradient = lambda x, t: (_ for _ in ()).throw(KeyboardInterrupt) if tr.step == 1 else real(x, t)
    tr.fit(X, T)  # interrupted after one step: mid-epoch
    tr.model._gradient = real
    tr.fit(np.concatenate([X, X]), np.concatenate([T, T]))


TRAINER_CASES = [
    case(lambda: gpunn.Trainer(None, optim.SGD()), TypeError, "model must be a gpunn MLP", "model-none"),
    case(
        lambda: gpunn.Trainer(mlp(), object()),
        TypeError,
        r"optimizer must have an update\(params, grads\)",
        "optimizer-object",
    ),
    case(
        lambda: trainer(eval_batch_size=0),
        ValueError,
        "eval_batch_size must be a positive integer",
        "eval-batch-0",
    ),
    case(lambda: trainer(batch_size=True), ValueError, "batch_size must be a positive integer", "batch-bool"),
    case(lambda: trainer(guard="yes"), TypeError, "guard must be True or False", "guard-str"),
    case(
        lambda: trainer(guard_every=0), ValueError, "guard_every must be a positive integer", "guard-every-0"
    ),
    case(
        lambda: trainer(checkpoint_every=-1),
        ValueError,
        "checkpoint_every must be a positive integer",
        "ckpt-every-neg",
    ),
    case(
        lambda: trainer(checkpoint_unit="minute"),
        ValueError,
        "checkpoint_unit must be 'epoch' or 'step'",
        "ckpt-unit",
    ),
    case(
        lambda: trainer(checkpoint_path="/nonexistent-dir/x.npz"),
        ValueError,
        "checkpoint_path: directory /nonexistent-dir does not exist",
        "ckpt-dir-missing",
    ),
    case(lambda: trainer(checkpoint_path="/tmp"), ValueError, "is a directory", "ckpt-path-is-dir"),
    case(lambda: trainer(checkpoint_path=3), TypeError, "path must be a str", "ckpt-path-int"),
    case(
        lambda: trainer(seed=-1), ValueError, "seed must be None or a non-negative integer", "seed-negative"
    ),
    case(lambda: trainer(seed="x"), TypeError, "seed must be None or a non-negative integer", "seed-str"),
    case(lambda: fit(X[:, :5]), ValueError, r"x must have shape \(batch, 6\)", "fit-x-width"),
    case(lambda: fit(X, T[:3]), ValueError, "3 labels but the batch has 4", "fit-t-length"),
    case(lambda: fit((X * 255).astype(np.uint8)), TypeError, "integer dtype uint8", "fit-x-uint8"),
    case(lambda: fit(X[:0], T[:0]), ValueError, "empty batch", "fit-empty"),
    case(lambda: fit(validation_data=X), TypeError, r"validation_data must be a pair", "fit-val-not-pair"),
    case(
        lambda: fit(validation_data=(X[:, :2], T)),
        ValueError,
        r"validation x must have shape",
        "fit-val-x-width",
    ),
    case(
        lambda: fit(validation_data=(X, T + 3)),
        ValueError,
        r"validation t: labels must be in",
        "fit-val-labels",
    ),
    case(lambda: fit(other_device(X), T), TypeError, "on another device", "fit-x-other-device"),
    case(
        mid_epoch_trainer_refits_other_data,
        ValueError,
        "in the middle of an epoch over 4 examples",
        "fit-other-data-mid-epoch",
    ),
    case(
        lambda: gpunn.Trainer(mlp(batchnorm=True), optim.SGD(), batch_size=3, progress=False).fit(X, T),
        ValueError,
        r"batch_size=3 gives a batch of 1 example \(of 4\), and BatchNorm cannot train on a "
        r"single example; use e.g. batch_size=4",
        "batchnorm-last-batch-of-1",
    ),
    case(
        lambda: gpunn.Trainer(mlp(batchnorm=True), optim.SGD(), batch_size=1, progress=False).fit(X, T),
        ValueError,
        "batch_size=1 gives a batch of 1 example",
        "batchnorm-batch-size-1",
    ),
    case(lambda: trainer().resume(), ValueError, "no checkpoint path", "resume-no-path"),
    case(lambda: trainer().save_checkpoint(), ValueError, "no checkpoint path", "save-no-path"),
]


# --------------------------------------------------------------------------------------------------
# Optimizers (beyond tests/test_optim_api.py)
# --------------------------------------------------------------------------------------------------
W = np.ones((3, 4), np.float32)
READ_ONLY = np.ones((3, 4), np.float32)
READ_ONLY.flags.writeable = False
# A NumPy scalar "parameter" (immutable) and a read-only array cannot be updated in place.

OPTIM_CASES = [
    case(lambda: optim.SGD(lr=True), TypeError, "lr must be a number", "lr-bool"),
    case(lambda: optim.SGD(lr=None), TypeError, "lr must be a number", "lr-none"),
    case(lambda: optim.Adam(eps=float("inf")), ValueError, "eps must be a finite number", "eps-inf"),
    case(
        lambda: optim.Momentum(momentum=float("nan")),
        ValueError,
        "momentum must be a finite number",
        "momentum-nan",
    ),
    case(lambda: optim.SGD(device="tpu"), ValueError, "unknown device 'tpu'", "device-name"),
    case(
        lambda: optim.SGD().update({"W": W}, {"W": np.ones((4, 6), np.float32)[:, ::2].T}),
        ValueError,
        r"grads\['W'\] is not C-contiguous",
        "grads-non-contiguous",
    ),
    case(
        lambda: optim.SGD().update({"W": W.T}, {"W": W.T.copy()}),
        ValueError,
        r"params\['W'\] is not C-contiguous",
        "params-transposed",
    ),
    case(
        lambda: optim.SGD().update({"W": W.astype(np.float16)}, {"W": W.astype(np.float16)}),
        TypeError,
        "float32 or float64",
        "float16",
    ),
    pytest.param(
        lambda: optim.SGD().update({"s": np.float32(1)}, {"s": np.float32(1)}),
        ValueError,
        "read-only",
        id="params-numpy-scalar",
    ),
    pytest.param(
        lambda: optim.SGD().update({"W": READ_ONLY}, {"W": W}), ValueError, "read-only", id="params-read-only"
    ),
    case(
        lambda: optim.SGD().update({"W": W}, {"W": W.reshape(-1)}),
        ValueError,
        r"grads\['W'\] has shape \(12,\), params\['W'\] has \(3, 4\)",
        "grads-flattened",
    ),
    case(
        lambda: optim.SGD().update({"W": W, "b": W[0]}, {"W": W, "c": W[0]}),
        ValueError,
        r"missing in grads \['b'\], not in params \['c'\]",
        "renamed-key",
    ),
    case(
        lambda: optim.SGD().update({"W": W.copy()}, {"W": other_device(W)}),
        TypeError,
        "live on different devices",
        "grads-other-device",
    ),
    case(lambda: optim.Adam().update([W], [W]), TypeError, "two dicts of arrays", "lists"),
]


# --------------------------------------------------------------------------------------------------
# Datasets (beyond tests/test_datasets.py) and device names (beyond tests/test_backend.py)
# --------------------------------------------------------------------------------------------------
def t10k_dir(tmp_path):
    files = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return make_dataset(tmp_path / "mnist", n_test=20, files=files)


def t10k_split(tmp_path, **kw):
    return D.load_mnist_test_split(t10k_dir(tmp_path), download=False, **kw)


def t10k_pair(tmp_path, **kw):
    d = t10k_dir(tmp_path)
    return D.load_idx_pair(d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz", **kw)


DATA_CASES = [
    case(
        lambda tmp: D.download_dataset("cifar10"), ValueError, "unknown dataset 'cifar10'", "unknown-dataset"
    ),
    case(
        lambda tmp: D.load_mnist(tmp / "a", data_dir=tmp / "b", download=False),
        TypeError,
        "either path= or data_dir=",
        "path-and-data-dir",
    ),
    case(lambda tmp: t10k_split(tmp, n_train=0), ValueError, "n_train must be an int in 1..19", "n-train-0"),
    case(
        lambda tmp: t10k_split(tmp, n_train=20), ValueError, "n_train must be an int in 1..19", "n-train-all"
    ),
    case(lambda tmp: t10k_split(tmp, n_train=1.5), ValueError, "n_train must be an int", "n-train-float"),
    case(lambda tmp: t10k_split(tmp, n_train=True), ValueError, "n_train must be an int", "n-train-bool"),
    case(
        lambda tmp: t10k_pair(tmp, dtype="int32"),
        ValueError,
        "dtype must be a floating-point type",
        "pair-int-dtype",
    ),
    case(
        lambda tmp: t10k_pair(tmp, num_classes=5),
        D.IDXFormatError,
        r"out of range 0\.\.4",
        "pair-too-few-classes",
    ),
]

DEVICE_CASES = [
    case(lambda: gpunn.device(None), TypeError, "device must be a str", "none"),
    case(lambda: gpunn.device(b"cpu"), TypeError, "device must be a str", "bytes"),
    case(lambda: gpunn.device("cpu:0"), ValueError, "unknown device 'cpu:0'", "cpu-index"),
    case(lambda: gpunn.device("cuda:"), ValueError, "unknown device 'cuda:'", "cuda-no-index"),
    case(lambda: gpunn.device("cuda:1a"), ValueError, "unknown device", "cuda-bad-index"),
    case(lambda: gpunn.Device.dtype("float16"), ValueError, "float32 or float64", "dtype-float16"),
    case(lambda: ckpt.load_model(__file__, device="tpu"), ValueError, "unknown device 'tpu'", "load-model"),
]


# --------------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------------
def good_checkpoint(tmp, opt=None):
    net = mlp(activation="tanh")
    tr = gpunn.Trainer(net, opt or optim.Adam(), epochs=1, batch_size=2, progress=False)
    tr.fit(X, T)
    return tr.save_checkpoint(tmp / "good.npz"), net


def rewrite(tmp, meta=None, arrays=None, drop=()):
    """A copy of a good checkpoint with edited metadata / arrays."""
    src, _ = good_checkpoint(tmp)
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files if k not in drop}
    m = json.loads(data["__gpunn__"].tobytes())
    if meta:
        meta(m)
    data["__gpunn__"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    data.update(arrays or {})
    out = tmp / "edited.npz"
    np.savez(out, **data)
    return out


def load_into(path, **kw):
    net = kw.pop("net", None) or mlp(activation="tanh")
    return ckpt.load(path, net, **kw)


def write(tmp, data, name="f.npz"):
    p = tmp / name
    p.write_bytes(data)
    return p


def truncated(tmp, keep):
    p, _ = good_checkpoint(tmp)
    data = p.read_bytes()
    return write(tmp, data[: int(len(data) * keep)])


def flipped_param_byte(tmp):
    p, net = good_checkpoint(tmp)
    data = bytearray(p.read_bytes())
    at = data.find(net.params.flat.tobytes()) + 10
    data[at] ^= 0x55
    return write(tmp, bytes(data))


def npy_entry_with_absurd_shape(tmp):
    p, _ = good_checkpoint(tmp)
    out = tmp / "absurd.npz"
    with zipfile.ZipFile(p) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            raw = src.read(info)
            if info.filename == "model/params.npy":
                raw = raw.replace(b"'shape': (", b"'shape': (10000000000000, ")
            dst.writestr(info.filename, raw)
    return out


def with_object_entry(tmp):
    src, _ = good_checkpoint(tmp)
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["evil"] = np.array([{"a": 1}], dtype=object)
    out = tmp / "pickled.npz"
    np.savez(out, **data)
    return out


def set_key(key, value):
    def edit(m):
        node, *path = key.split("/")
        target = m
        for k in [node, *path][:-1]:
            target = target[k]
        target[[node, *path][-1]] = value

    return edit


CHECKPOINT_CASES = [
    case(
        lambda tmp: load_into(write(tmp, np.random.default_rng(0).bytes(3000))),
        CheckpointError,
        r"f\.npz: is not a gpunn checkpoint: not a \.npz \(zip\) archive",
        "random-bytes",
    ),
    case(lambda tmp: load_into(write(tmp, b"")), CheckpointError, "not a .npz", "empty-file"),
    case(lambda tmp: load_into(truncated(tmp, 0.5)), CheckpointError, "not a .npz", "truncated-half"),
    case(lambda tmp: load_into(truncated(tmp, 0.99)), CheckpointError, "not a .npz", "truncated-tail"),
    case(
        lambda tmp: load_into(flipped_param_byte(tmp)),
        CheckpointError,
        r"entry 'model/params' is truncated or corrupt \(BadZipFile: Bad CRC-32",
        "flipped-byte",
    ),
    case(
        lambda tmp: load_into((np.save(tmp / "a.npy", X), tmp / "a.npy")[1]),
        CheckpointError,
        "not a .npz",
        "npy-file",
    ),
    case(
        lambda tmp: load_into((np.savez(tmp / "w.npz", W1=X, b1=T), tmp / "w.npz")[1]),
        CheckpointError,
        r"w\.npz: is not a gpunn checkpoint: a \.npz without the '__gpunn__' metadata entry "
        r"\(it holds W1, b1\)",
        "foreign-npz",
    ),
    case(
        lambda tmp: load_into(with_object_entry(tmp)),
        CheckpointError,
        r"entry 'evil' holds Python objects \(pickled data\)",
        "pickled-object-entry",
    ),
    case(
        lambda tmp: load_into(npy_entry_with_absurd_shape(tmp)),
        CheckpointError,
        r"entry 'model/params' is truncated or corrupt: its header declares float32 \(10000000000000, ",
        "absurd-entry-shape",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, arrays={"__gpunn__": np.frombuffer(b"{not json", np.uint8)})),
        CheckpointError,
        "corrupt metadata: not UTF-8 JSON",
        "metadata-not-json",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, arrays={"__gpunn__": np.zeros(3)})),
        CheckpointError,
        "corrupt metadata",
        "metadata-wrong-dtype",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, meta=set_key("format", "keras"))),
        CheckpointError,
        "its metadata has no format 'gpunn-checkpoint'",
        "wrong-format-name",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, meta=set_key("version", 99))),
        CheckpointError,
        r"format version 99 is newer than this gpunn reads \(version 1\); upgrade gpunn",
        "newer-version",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, meta=set_key("version", "1"))),
        CheckpointError,
        "unknown checkpoint format version '1'",
        "version-str",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, meta=set_key("model", None))),
        CheckpointError,
        "no model description",
        "no-model",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, drop=("model/params",))),
        CheckpointError,
        "entry 'model/params' is missing",
        "params-missing",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, arrays={"model/params": np.zeros(53)})),
        CheckpointError,
        r"entry 'model/params' is float64 \(53,\), expected float32 \(53,\)",
        "params-wrong-dtype",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, drop=("optimizer/0",)), optimizer=optim.Adam()),
        CheckpointError,
        "refers to an array 'optimizer/0' that the file does not hold",
        "array-missing",
    ),
    case(
        lambda tmp: load_into(
            rewrite(tmp, arrays={"optimizer/0": np.zeros(7, np.float32)}), optimizer=optim.Adam()
        ),
        CheckpointError,
        "optimizer state 'state.__flat__.m' has 7 elements but the model has 53",
        "optimizer-state-size",
    ),
    case(
        lambda tmp: load_into(rewrite(tmp, meta=set_key("trainer/offset", 99)), trainer=trainer()),
        CheckpointError,
        "bad trainer state: offset inside an epoch without the epoch's data order",
        "trainer-offset",
    ),
    case(
        lambda tmp: load_into(
            rewrite(tmp, meta=set_key("trainer/rng/bit_generator", "Evil")), trainer=trainer()
        ),
        CheckpointError,
        "bad trainer state: unknown bit generator 'Evil'",
        "trainer-rng",
    ),
    case(
        lambda tmp: load_into(good_checkpoint(tmp)[0], net=gpunn.MLP(6, [4], 3, activation="tanh")),
        CheckpointError,
        r"different architecture: parameter 'W1' has shape \(6, 5\) in the checkpoint, "
        r"the model's 'W1' has \(6, 4\)",
        "other-width",
    ),
    case(
        lambda tmp: load_into(good_checkpoint(tmp)[0], net=gpunn.MLP(6, [5, 5], 3, activation="tanh")),
        CheckpointError,
        "different architecture",
        "other-depth",
    ),
    case(
        lambda tmp: load_into(good_checkpoint(tmp)[0], net=mlp(activation="tanh", dtype="float64")),
        CheckpointError,
        "holds float32 parameters but the model computes in float64",
        "other-dtype",
    ),
    case(
        lambda tmp: load_into(good_checkpoint(tmp)[0], net=mlp(activation="relu")),
        CheckpointError,
        r"activations \['tanh'\] in the checkpoint, \['relu'\] in the model",
        "other-activation",
    ),
    case(
        lambda tmp: load_into(good_checkpoint(tmp)[0], optimizer=optim.SGD()),
        CheckpointError,
        "holds the state of a Adam optimizer, not of the SGD given",
        "other-optimizer",
    ),
    case(lambda tmp: load_into(tmp), CheckpointError, "is a directory", "directory"),
    case(lambda tmp: load_into(tmp / "missing.npz"), FileNotFoundError, "missing.npz", "missing-file"),
    case(lambda tmp: ckpt.save(3, mlp()), TypeError, "path must be a str or os.PathLike", "save-path-int"),
    case(
        lambda tmp: ckpt.save(tmp / "no" / "dir.npz", mlp()),
        FileNotFoundError,
        "does not exist",
        "save-missing-dir",
    ),
    case(
        lambda tmp: ckpt.save(tmp / "x.npz", "model"),
        TypeError,
        "model must be a gpunn MLP",
        "save-not-model",
    ),
    case(
        lambda tmp: ckpt.load_model(rewrite(tmp, meta=set_key("model/config", None))),
        CheckpointError,
        "holds no model config",
        "load-model-no-config",
    ),
    case(
        lambda tmp: ckpt.load_model(rewrite(tmp, meta=set_key("model/config/wings", 2))),
        CheckpointError,
        r"config option\(s\) \['wings'\] are not supported",
        "load-model-unknown-option",
    ),
]


# --------------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn, err, match", MLP_CASES + TRAINER_CASES + OPTIM_CASES + DEVICE_CASES)
def test_bad_input(fn, err, match):
    with pytest.raises(err, match=match):
        fn()


@pytest.mark.parametrize("fn, err, match", DATA_CASES + CHECKPOINT_CASES)
def test_bad_file_or_dataset(fn, err, match, tmp_path):
    with pytest.raises(err, match=match):
        fn(tmp_path)


def test_failed_load_changes_nothing(tmp_path):
    """A checkpoint rejected late (its trainer state) leaves model, optimizer and trainer untouched."""
    bad = rewrite(tmp_path, meta=set_key("trainer/offset", 99))
    tr = trainer()
    before = tr.model.params.flat.copy()
    with pytest.raises(CheckpointError):
        tr.resume(bad)
    np.testing.assert_array_equal(tr.model.params.flat, before)
    assert tr.optimizer.t == 0 and tr.step == 0


# --------------------------------------------------------------------------------------------------
# accepted inputs: converted, not rejected, and giving the same result
# --------------------------------------------------------------------------------------------------
WIDE = np.random.default_rng(1).standard_normal((4, 12)).astype(np.float32)
ACCEPTED = [
    pytest.param(np.asfortranarray(X), T, id="x-fortran-order"),
    pytest.param(np.stack([X, X], 2)[:, :, 0], T, id="x-strided-view"),
    pytest.param(X.astype(np.float64), T, id="x-float64"),
    pytest.param(X.tolist(), T.tolist(), id="lists"),
    pytest.param(X, T.astype(np.int32), id="t-int32"),
    pytest.param(X, T.astype(np.uint8), id="t-uint8"),
    pytest.param(X, T.astype(np.float32), id="t-whole-floats"),
    pytest.param(X, T[:, None], id="t-column"),
    pytest.param(X, np.eye(3, dtype=np.int64)[T], id="t-onehot-int"),
    pytest.param(X, np.eye(3)[T], id="t-onehot-float64"),
    pytest.param(X, T.astype(">i8"), id="t-big-endian-int64"),  # issue 15 item 10
    pytest.param(X.astype(">f4"), T.astype(">i4"), id="big-endian-x-and-t-int32"),
]


@pytest.mark.parametrize("x, t", ACCEPTED)
def test_accepted_inputs_give_the_same_gradient(dev, x, t):
    ref = mlp()
    expected = ref.gradient(X, T).flat.copy()
    net = mlp(device=dev)
    if not isinstance(x, list):
        assert not (x.flags.c_contiguous and x.dtype == np.float32) or x is X or t is not T
    np.testing.assert_allclose(to_numpy(net.gradient(x, t).flat), expected, rtol=1e-5, atol=1e-7)


def test_trainer_accepts_non_contiguous_float64_data():
    xs = np.asfortranarray(np.tile(X, (5, 1)).astype(np.float64))
    h = trainer(epochs=2, batch_size=5).fit(xs, np.tile(T, 5))
    assert len(h["iter_loss"]) == 8


# --------------------------------------------------------------------------------------------------
# optimizer kernels on awkward sizes, with guard zones: they never touch memory outside their arrays
# --------------------------------------------------------------------------------------------------
PAD = 7


@pytest.mark.parametrize("n", [0, 1, 31, 33, 65])
@pytest.mark.parametrize("cls", optim.OPTIMIZERS, ids=lambda c: c.__name__)
def test_optimizer_kernels_stay_inside_their_arrays(dev, cls, n):
    rng = np.random.default_rng(n)
    host_p = rng.standard_normal(n + 2 * PAD).astype(np.float32)
    host_g = rng.standard_normal(n + 2 * PAD).astype(np.float32)
    big_p, big_g = dev.to_device(host_p.copy()), dev.to_device(host_g.copy())
    n_w = n // 2  # a decayed "weight" prefix and an undecayed "bias" rest, as in a model
    layout = FlatLayout([("W", (n_w, 1), True), ("b", (n - n_w,), False)])
    params = layout.views(big_p[PAD : PAD + n], dev)
    grads = layout.views(big_g[PAD : PAD + n], dev)
    opt = cls(weight_decay=0.01) if cls is not optim.AdaDelta else cls(lr=0.5, weight_decay=0.01)
    for _ in range(2):
        opt.update(params, grads)
    out_p, out_g = to_numpy(big_p), to_numpy(big_g)
    np.testing.assert_array_equal(out_g, host_g)  # gradients are read only
    np.testing.assert_array_equal(out_p[:PAD], host_p[:PAD])  # guard zones untouched
    np.testing.assert_array_equal(out_p[PAD + n :], host_p[PAD + n :])
    assert (out_p[PAD : PAD + n] != host_p[PAD : PAD + n]).all()  # and every element was updated
    if dev.kind != "cpu":  # the same numbers as the CPU kernel
        cpu = gpunn.device("cpu")
        ref_p = host_p[PAD : PAD + n].copy()
        ref = layout.views(ref_p, cpu), layout.views(host_g[PAD : PAD + n].copy(), cpu)
        ref_opt = cls(weight_decay=0.01) if cls is not optim.AdaDelta else cls(lr=0.5, weight_decay=0.01)
        for _ in range(2):
            ref_opt.update(*ref)
        np.testing.assert_allclose(out_p[PAD : PAD + n], ref_p, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# downloads: what tests/test_datasets.py does not cover (a Ctrl-C in the middle of a download)
# --------------------------------------------------------------------------------------------------
def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    import hashlib
    import io

    payload = bytes(range(256)) * 40

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def read(self, n=-1):
            if self.tell() >= 1000:
                raise KeyboardInterrupt
            return super().read(min(n, 500))

    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout=None: Response(payload))
    dest = tmp_path / "train-images-idx3-ubyte.gz"
    with pytest.raises(KeyboardInterrupt):
        D._download_file(
            "https://example.invalid/x.gz", dest, ("md5", hashlib.md5(payload).hexdigest()), False
        )
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# issue 15: NumPy integers, odd label byte order, targets, schedules, IDX, MSE targets
# --------------------------------------------------------------------------------------------------
def test_numpy_integers_are_accepted_wherever_python_ints_are():
    net = gpunn.MLP(np.int64(6), np.array([5, 4]), np.int32(3), seed=0)
    assert net.sizes == [6, 5, 4, 3] and all(type(s) is int for s in net.sizes)
    assert gpunn.MLP(6, np.int64(5), 3).sizes == [6, 5, 3]
    tr = gpunn.Trainer(
        net,
        optim.SGD(),
        epochs=np.int64(2),
        batch_size=np.int64(2),
        eval_batch_size=np.uint16(8),
        guard_every=np.int8(1),
        checkpoint_every=np.int64(1),
        progress=False,
    )
    assert type(tr.batch_size) is int and type(tr.epochs) is int
    assert len(tr.fit(X, T)["loss"]) == 2
    sched = optim.StepLR(optim.SGD(), step_size=np.int64(3))
    assert sched.step_size == 3
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer .*got np.int64\(0\)"):
        gpunn.Trainer(net, optim.SGD(), batch_size=np.int64(0))
    with pytest.raises(ValueError, match=r"hidden_sizes\[0\] must be a positive integer"):
        gpunn.MLP(6, np.array([5.0, 4.5]), 3)


@pytest.mark.parametrize("what", ["loss", "accuracy", "gradient", "fit"])
def test_big_endian_int64_labels_are_converted_not_a_numba_error(dev, what):
    """Issue 15 item 10: '>i8' labels passed the int64 fast path straight into a Numba kernel."""
    t = T.astype(">i8")
    net = mlp(device=dev)
    if what == "fit":
        h = gpunn.Trainer(net, optim.SGD(), epochs=1, batch_size=2, progress=False).fit(X, t)
        assert len(h["iter_loss"]) == 2
    else:
        assert np.isfinite(
            to_numpy(
                getattr(net, what)(X, t).flat if what == "gradient" else np.float64(getattr(net, what)(X, t))
            )
        ).all()


SOFT_BAD = [
    pytest.param([[1.5, -0.5, 0.0]], "1 row.s. have negative entries", id="negative-entry"),
    pytest.param([[0.0, 0.0, 0.0]], r"1 do not sum to 1 \(row 2 sums to 0\)", id="all-zero-row"),
    pytest.param([[1.0, 1.0, 0.0]], r"row 2 sums to 2", id="row-sums-to-2"),
]


@pytest.mark.parametrize("row, match", SOFT_BAD)
@pytest.mark.parametrize("where", ["loss", "fit", "fit-device", "validation"])
def test_soft_targets_must_be_probability_distributions(dev, row, match, where):
    """Issue 15 item 11: a softmax cross-entropy with rows that are not distributions is unbounded
    (negative entries) or learns nothing (zero rows); refused before training."""
    t = np.eye(3, dtype=np.float32)[T]
    t[2] = row[0]
    net = mlp(device=dev)
    tr = gpunn.Trainer(net, optim.SGD(), epochs=1, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="must hold probability distributions.*" + match):
        if where == "loss":
            net.loss(X, t)
        elif where == "fit":
            tr.fit(X, t)
        elif where == "fit-device":  # device-resident targets: checked once, at the start of fit
            tr.fit(dev.to_device(X), dev.to_device(t))
        else:
            tr.fit(X, np.eye(3, dtype=np.float32)[T], validation_data=(X, t))
    assert tr.step == 0


def test_soft_targets_within_rounding_and_other_losses_are_accepted(dev):
    smooth = np.full((4, 3), 0.1 / 3, dtype=np.float32) + 0.9 * np.eye(3, dtype=np.float32)[T]
    assert np.isfinite(float(mlp(device=dev).loss(X, smooth)))
    # an MSE model's targets are not distributions
    assert np.isfinite(float(mlp(device=dev, loss="mse").loss(X, -np.ones((4, 3), np.float32))))


def test_mse_model_with_one_output_asks_for_a_column_of_targets(dev):
    """Issue 15 item 13: 1-D regression targets were read as class indices ("not whole numbers")."""
    net = gpunn.MLP(6, [5], 1, loss="mse", seed=0, device=dev)
    y = np.linspace(-1, 1, 4).astype(np.float32)
    with pytest.raises(ValueError, match=r"targets of shape \(4, 1\), e.g. t.reshape\(-1, 1\)"):
        net.loss(X, y)
    with pytest.raises(ValueError, match=r"shape \(4, 1\)"):
        gpunn.Trainer(net, optim.SGD(), progress=False).fit(X, y)
    assert np.isfinite(float(net.loss(X, y.reshape(-1, 1))))


def test_exponential_lr_overflow_is_a_clear_error():
    """Issue 15 item 13: ExponentialLR(gamma=10) ended in a bare OverflowError (float ** int)."""
    opt = optim.SGD(lr=0.1)
    sched = optim.ExponentialLR(opt, gamma=10)
    with pytest.raises(
        ValueError,
        match=r"ExponentialLR.*learning rate at step \d+ is not a finite float.*"
        r"gamma <= 1",
    ):
        for _ in range(1000):
            sched.step()
    assert np.isfinite(opt.lr) and opt.lr == sched.get_last_lr()  # the last good rate is kept


def test_idx_file_with_zero_images_is_named(tmp_path):
    """Issue 15 item 13: NumPy's "cannot reshape array of size 0" without the file's name."""
    from test_datasets import write_idx

    images = write_idx(tmp_path / "empty-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    labels = write_idx(tmp_path / "empty-labels-idx1-ubyte", np.zeros((0,), np.uint8))
    with pytest.raises(D.IDXFormatError, match=f"{images}: holds 0 images"):
        D.load_idx_pair(images, labels)
