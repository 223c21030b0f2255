"""net.save(path) / gpunn.load(path), pickling and copying a model: all through the checkpoint format,
on both devices."""

import copy
import pickle

import numpy as np
import pytest
from conftest import DEVICES, to_numpy

import gpunn
from gpunn import checkpoint as ckpt
from gpunn import optim
from gpunn.checkpoint import CheckpointError

rng = np.random.default_rng(0)
X = rng.standard_normal((32, 6)).astype(np.float32)
T = rng.integers(0, 3, 32)


def trained(device, **kw):
    """A model with BatchNorm statistics and dropout generators that have moved since construction."""
    net = gpunn.MLP(
        6, [8, 5], 3, activation=["relu", "tanh"], device=device, seed=3, batchnorm=True, dropout=0.2, **kw
    )
    gpunn.Trainer(net, optim.Adam(lr=0.01), epochs=2, batch_size=8, progress=False).fit(X, T)
    return net


def assert_same_model(a, b):
    assert type(b) is type(a) and b.sizes == a.sizes and b.activations == a.activations
    assert b.dtype == a.dtype and b.batchnorm == a.batchnorm and b.dropout == a.dropout
    np.testing.assert_array_equal(to_numpy(b.params.flat), to_numpy(a.params.flat))
    assert sorted(b.buffers) == sorted(a.buffers)
    for name in a.buffers:
        np.testing.assert_array_equal(to_numpy(b.buffers[name]), to_numpy(a.buffers[name]))
    if b.device == a.device:
        np.testing.assert_array_equal(to_numpy(b.predict(X)), to_numpy(a.predict(X)))
    else:  # another device's kernels round differently
        np.testing.assert_allclose(to_numpy(b.predict(X)), to_numpy(a.predict(X)), rtol=1e-5, atol=1e-6)


def train_more(net):
    """One more epoch (dropout masks drawn from the model's generators); the parameters after it."""
    gpunn.Trainer(net, optim.SGD(lr=0.05), epochs=1, batch_size=8, progress=False, seed=5).fit(X, T)
    return to_numpy(net.params.flat)


@pytest.mark.parametrize("src", DEVICES)
@pytest.mark.parametrize("dst", DEVICES)
def test_save_then_load_on_any_device(tmp_path, src, dst):
    a = trained(src)
    path = a.save(tmp_path / "net.npz")
    assert path == tmp_path / "net.npz" and path.exists()
    b = gpunn.load(path, device=dst)
    assert b.device == gpunn.device(dst)
    assert_same_model(a, b)
    assert gpunn.load is ckpt.load_model
    assert ckpt.read_metadata(path)["optimizer"] is None  # the model only


def test_load_defaults_to_the_cpu(tmp_path):
    b = gpunn.load(gpunn.MLP(4, 3, 2, seed=1, device="cuda").save(tmp_path / "n.npz"))
    assert b.device == gpunn.device("cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_pickle_round_trip_on_the_same_device(device):
    a = trained(device)
    data = pickle.dumps(a)
    b = pickle.loads(data)
    assert b.device == a.device
    assert_same_model(a, b)
    # the copy carries on exactly like the original: the dropout generators' states came along
    np.testing.assert_array_equal(train_more(b), train_more(a))
    # ... and is independent of it
    b.params.flat[...] = 0
    assert float(abs(to_numpy(a.params.flat)).sum()) > 0


@pytest.mark.parametrize("device", DEVICES)
def test_deepcopy_and_copy(device):
    a = trained(device, dtype="float64", loss="mse")
    for b in (copy.deepcopy(a), copy.copy(a), copy.deepcopy([a, a])[0]):
        assert b is not a and b.params.flat is not a.params.flat
        assert b.device == a.device and type(b.last_layer) is type(a.last_layer)
        assert_same_model(a, b)
    pair = copy.deepcopy([a, a])
    assert pair[0] is pair[1]  # deepcopy's memo: one copy of one model
    b = copy.deepcopy(a)
    np.testing.assert_array_equal(train_more(b), train_more(a))


def test_pickle_keeps_dropout_rand():
    """A constructor argument the file cannot store (a host rand function) is passed on by pickle."""
    a = gpunn.MLP(6, [5], 3, dropout=0.5, dropout_rand=np.random.rand, seed=1)
    b = copy.deepcopy(a)
    assert b.dropout_rand == np.random.rand and b.dropout_layers[0].rand == np.random.rand
    np.random.seed(4)
    ya = a.predict(X, train=True)
    np.random.seed(4)
    np.testing.assert_array_equal(b.predict(X, train=True), ya)
    c = pickle.loads(pickle.dumps(a))  # pickled along (a bound method: with a copy of its generator)
    assert c.dropout_rand is not None and c.dropout_layers[0].rand is not None


def test_pickling_a_custom_loss_says_what_to_do(tmp_path):
    a = gpunn.MLP(6, [5], 3, loss=gpunn.losses.CrossEntropy(np), seed=1)  # an object no name rebuilds
    with pytest.raises(TypeError, match=r"custom loss.*net\.save\(path\).*checkpoint\.load\(path, model\)"):
        pickle.dumps(a)
    with pytest.raises(TypeError, match="custom loss"):
        copy.deepcopy(a)
    b = gpunn.MLP(6, [5], 3, loss=gpunn.losses.CrossEntropy(np), seed=2)
    ckpt.load(a.save(tmp_path / "a.npz"), b)  # what the message says works
    np.testing.assert_array_equal(b.params.flat, a.params.flat)


def test_model_bytes_are_a_checkpoint(tmp_path):
    """The in-memory form is the file format byte for byte in content: numpy reads it without pickle,
    and broken bytes are refused with the checkpoint's own errors."""
    import io

    a = gpunn.MLP(6, [5], 3, seed=1)
    data = ckpt.model_to_bytes(a)
    npz = np.load(io.BytesIO(data), allow_pickle=False)
    np.testing.assert_array_equal(npz["model/params"], a.params.flat)
    with pytest.raises(CheckpointError, match="in-memory checkpoint.*not a .npz"):
        ckpt.model_from_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="in-memory checkpoint.*truncated|in-memory checkpoint.*zip"):
        ckpt.model_from_bytes(data[: len(data) // 2])
    with pytest.raises(TypeError, match="must be bytes"):
        ckpt.model_from_bytes("net.npz")
    with pytest.raises(CheckpointError, match="rebuilds .*BatchNorm.*holds a 'MLP'"):
        ckpt.model_from_bytes(data, cls=gpunn.batchnorm.BatchNorm)


def test_config_holds_the_constructor_arguments_and_checkpoints_store_it(tmp_path):
    import json

    net = gpunn.MLP(
        6,
        (8, 5),
        3,
        activation=["relu", "TANH"],
        loss="softmax_cross_entropy",
        seed=3,
        batchnorm=True,
        dropout=(0.1, 0.2),
        weight_decay=0.01,
        bn_eps=1e-3,
        fused=False,
        dropout_rand=np.random.rand,
    )
    cfg = net.config
    assert json.loads(json.dumps(cfg)) == cfg  # JSON-able as it is
    assert cfg["hidden_sizes"] == [8, 5] and cfg["activation"] == ["relu", "TANH"]
    assert cfg["loss"] == "cross_entropy" and cfg["dropout"] == [0.1, 0.2] and cfg["fused"] is False
    assert not {"device", "seed", "init", "dropout_rand"} & set(cfg)
    assert gpunn.MLP(**cfg).config == cfg  # the config rebuilds the same model description
    assert ckpt.read_metadata(net.save(tmp_path / "a.npz"))["model"]["config"] == cfg
    # the checkpoint reads the config, not the attributes: a config saying otherwise is what is stored
    net.config = {**cfg, "weight_decay": 0.5}
    assert ckpt.read_metadata(net.save(tmp_path / "b.npz"))["model"]["config"]["weight_decay"] == 0.5
    # a model keeping no config can be saved and loaded into a model built by hand, not rebuilt
    del net.config
    path = net.save(tmp_path / "c.npz")
    assert ckpt.read_metadata(path)["model"]["config"] is None
    with pytest.raises(CheckpointError, match="no model config"):
        gpunn.load(path)
    with pytest.raises(TypeError, match="no model config"):
        pickle.dumps(net)
    ckpt.load(path, gpunn.MLP(**cfg, dropout_rand=np.random.rand))
