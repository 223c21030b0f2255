import numpy as np
import pytest

import gpunn


def _blobs(n=60, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 3
    t = rng.integers(0, c, n)
    return (centers[t] + rng.standard_normal((n, d))).astype(np.float32), t


def _fit(device="cpu", seed=0, epochs=3, **kw):
    x, t = _blobs()
    net = gpunn.MLP(8, [6], 3, activation="tanh", device=device, seed=1)
    trainer = gpunn.Trainer(
        net, gpunn.optim.SGD(lr=0.3), epochs=epochs, batch_size=16, seed=seed, progress=False, **kw
    )
    return trainer.fit(x, t, validation_data=_blobs(seed=1)), net


def test_history_and_learning():
    h, net = _fit(epochs=5)
    assert len(h["loss"]) == len(h["acc"]) == len(h["val_acc"]) == len(h["epoch_time"]) == 5
    assert len(h["iter_loss"]) == 5 * 4  # ceil(60 / 16) steps per epoch
    assert h["loss"][-1] < h["loss"][0] and h["acc"][-1] > 0.9


def test_seeded_shuffling_is_reproducible():
    a, _ = _fit(seed=5)
    b, _ = _fit(seed=5)
    c, _ = _fit(seed=6)
    assert a["iter_loss"] == b["iter_loss"]
    assert a["iter_loss"] != c["iter_loss"]


def test_same_history_on_both_devices(dev):
    ref, _ = _fit("cpu", epochs=1)
    h, net = _fit(dev, epochs=1)
    assert net.device == dev
    assert np.allclose(h["iter_loss"], ref["iter_loss"], rtol=1e-5)
    assert h["val_acc"] == ref["val_acc"]


def test_progress_off_prints_nothing(capsys):
    _fit(epochs=1)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_verbose_prints_epochs(capsys):
    _fit(epochs=2, verbose=True)
    assert "epoch 2/2" in capsys.readouterr().out


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(batch_size=-1), dict(epochs=1.5)])
def test_bad_trainer_arguments(kw):
    net = gpunn.MLP(8, [6], 3)
    with pytest.raises(ValueError, match="positive integer"):
        gpunn.Trainer(net, gpunn.optim.SGD(), **kw)


def test_dataset_checked_before_training():
    net = gpunn.MLP(8, [6], 3)
    x, t = _blobs()
    t[3] = 7
    with pytest.raises(ValueError, match="labels must be in"):
        gpunn.Trainer(net, gpunn.optim.SGD(), progress=False).fit(x, t)
