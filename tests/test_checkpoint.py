"""Checkpoints: exact resume (also mid-epoch), every optimizer, both devices, load_model, atomic writes.

Corrupt, truncated and foreign files are in tests/test_bad_inputs.py (table-driven).
"""

import json
import os
import shutil
import warnings

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn import checkpoint as ckpt
from gpunn import optim
from gpunn.checkpoint import CheckpointError


def blobs(n=40, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 2
    t = rng.integers(0, c, n)
    return (centers[t] + rng.standard_normal((n, d))).astype(np.float32), t


X, T = blobs()
XV, TV = blobs(seed=1)


def net(device="cpu", seed=1, **kw):
    return gpunn.MLP(6, [5], 3, activation="tanh", device=device, seed=seed, **kw)


class Recording(gpunn.Trainer):
    """Keeps a copy of every checkpoint it writes, named by its step."""

    def save_checkpoint(self, path=None):
        out = super().save_checkpoint(path)
        if path is None:
            shutil.copy(out, out.with_name(f"step{self.step:03d}-epoch{self.epoch}-{self._offset}.npz"))
        return out


def opt_for(cls):
    return cls(lr=0.05) if cls is not optim.AdaDelta else cls()


@pytest.mark.parametrize("cls", optim.OPTIMIZERS, ids=lambda c: c.__name__)
def test_resume_continues_bit_for_bit(tmp_path, cls):
    """Resuming from every checkpoint of a run (mid-epoch ones included) reproduces the rest of the
    uninterrupted run exactly: the same iter_loss floats, epoch metrics and final parameters."""
    path = tmp_path / "run.npz"
    ref_net = net()
    ref = Recording(
        ref_net,
        opt_for(cls),
        epochs=3,
        batch_size=16,
        progress=False,
        checkpoint_path=path,
        checkpoint_every=2,
        checkpoint_unit="step",
    )
    h_ref = ref.fit(X, T, validation_data=(XV, TV))
    assert len(h_ref["iter_loss"]) == 9
    snaps = sorted(tmp_path.glob("step*.npz"))
    names = [s.name for s in snaps]
    # step 2, 4: mid-epoch; step 6 falls on an epoch's end: written after it; 8 mid-epoch; 9 final
    assert names == [
        "step002-epoch0-32.npz",
        "step004-epoch1-16.npz",
        "step006-epoch2-0.npz",
        "step008-epoch2-32.npz",
        "step009-epoch3-0.npz",
    ]
    for snap in snaps:
        other = net(seed=99)  # different initial weights: everything must come from the file
        tr = gpunn.Trainer(
            other,
            cls(lr=0.5) if cls is not optim.AdaDelta else cls(rho=0.5),
            epochs=3,
            batch_size=16,
            seed=1234,
            progress=False,
        )
        with pytest.warns(gpunn.checkpoint.CheckpointWarning, match="restored the saved optimizer hyper"):
            tr.resume(snap)  # the file's hyper-parameters win, and it says so
        # the last one holds the finished run (a fit() now would start a new run of 3 epochs)
        h = tr.fit(X, T, validation_data=(XV, TV)) if tr.epoch < 3 else tr.history
        assert h["iter_loss"] == h_ref["iter_loss"], snap.name
        for key in ("loss", "acc", "val_loss", "val_acc"):
            assert h[key] == h_ref[key], (snap.name, key)
        np.testing.assert_array_equal(other.params.flat, ref_net.params.flat)
        assert tr.optimizer.t == ref.optimizer.t == 9


def test_resume_then_train_longer_matches_a_longer_run(tmp_path):
    long = gpunn.Trainer(net(), optim.Adam(lr=0.02), epochs=4, batch_size=16, progress=False)
    h_long = long.fit(X, T)
    short = gpunn.Trainer(
        net(),
        optim.Adam(lr=0.02),
        epochs=2,
        batch_size=16,
        progress=False,
        checkpoint_path=tmp_path / "c.npz",
    )
    short.fit(X, T)
    more = gpunn.Trainer(net(seed=5), optim.Adam(), epochs=4, batch_size=16, progress=False)
    h = more.resume(tmp_path / "c.npz").fit(X, T)
    assert h["iter_loss"] == h_long["iter_loss"] and h["loss"] == h_long["loss"]


def test_fit_again_trains_more_epochs():
    tr = gpunn.Trainer(net(), optim.SGD(lr=0.1), epochs=2, batch_size=16, progress=False)
    tr.fit(X, T)
    h = tr.fit(X, T)
    assert len(h["loss"]) == 4 and tr.epoch == 4 and tr.step == 12
    ref = gpunn.Trainer(net(), optim.SGD(lr=0.1), epochs=4, batch_size=16, progress=False).fit(X, T)
    assert h["iter_loss"] == ref["iter_loss"]


@pytest.mark.parametrize("src, dst", [("cpu", "cuda"), ("cuda", "cpu")])
def test_checkpoint_moves_between_devices(tmp_path, src, dst):
    """Saved on one device, loaded on the other (cuda: the simulator here, or a real GPU)."""
    a = gpunn.Trainer(net(src), optim.Momentum(lr=0.1), epochs=1, batch_size=20, progress=False)
    a.fit(X, T)
    path = a.save_checkpoint(tmp_path / "x.npz")
    b = gpunn.Trainer(net(dst, seed=7), optim.Momentum(), epochs=1, batch_size=20, progress=False)
    b.resume(path)
    assert b.model.device == gpunn.device(dst)
    np.testing.assert_array_equal(to_numpy(b.model.params.flat), to_numpy(a.model.params.flat))
    assert b.optimizer.t == 2 and b.epoch == 1 and b.history["iter_loss"] == a.history["iter_loss"]
    ha, hb = a.fit(X, T), b.fit(X, T)  # one more epoch on each device
    np.testing.assert_allclose(hb["iter_loss"], ha["iter_loss"], rtol=1e-5)
    np.testing.assert_allclose(
        to_numpy(b.model.params.flat), to_numpy(a.model.params.flat), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_load_model_rebuilds_the_mlp(tmp_path, device):
    a = gpunn.MLP(6, [5, 4], 3, activation=["relu", "sigmoid"], loss="mse", dtype="float64", seed=3)
    path = ckpt.save(tmp_path / "m.npz", a)
    b = ckpt.load_model(path, device=device)
    assert b.sizes == a.sizes and b.activations == a.activations and b.dtype == np.float64
    assert type(b.last_layer) is type(a.last_layer) and b.device == gpunn.device(device)
    np.testing.assert_array_equal(to_numpy(b.params.flat), a.params.flat)
    np.testing.assert_allclose(to_numpy(b.predict(X[:4])), a.predict(X[:4]), rtol=1e-12)


def test_load_model_refuses_custom_objects(tmp_path):
    a = net(loss=gpunn.losses.MeanSquaredError(np))  # a Loss object, not a name: still "mse"
    rebuilt = ckpt.load_model(ckpt.save(tmp_path / "a.npz", a))
    assert type(rebuilt.last_layer).__name__ == "MeanSquaredError"
    b = net(loss=gpunn.losses.CrossEntropy(np))  # no name rebuilds it
    path = ckpt.save(tmp_path / "b.npz", b)
    with pytest.raises(CheckpointError, match="custom loss"):
        ckpt.load_model(path)
    ckpt.load(path, net(loss=gpunn.losses.CrossEntropy(np)))  # the model itself loads fine


def test_file_is_plain_npz_with_json_metadata(tmp_path):
    tr = gpunn.Trainer(net(), optim.Adam(), epochs=1, batch_size=16, progress=False)
    tr.fit(X, T)
    path = tr.save_checkpoint(tmp_path / "c.npz")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["__gpunn__"].tobytes())
        assert meta["format"] == "gpunn-checkpoint" and meta["version"] == ckpt.FORMAT_VERSION
        np.testing.assert_array_equal(z["model/params"], tr.model.params.flat)
        assert z["model/params"].dtype == np.float32
    expected = {
        "input_size": 6,
        "hidden_sizes": [5],
        "output_size": 3,
        "activation": ["tanh"],
        "loss": "cross_entropy",
        "dtype": "float32",
    }
    assert meta["model"]["config"].items() >= expected.items()  # plus batchnorm/dropout/... options
    assert meta["optimizer"]["class"] == "Adam"
    assert meta["trainer"]["step"] == 3 and meta["trainer"]["rng"]["bit_generator"] == "PCG64"
    assert isinstance(meta["trainer"]["rng"]["state"]["state"], int)  # a 128-bit int, exact in JSON
    assert ckpt.read_metadata(path)["trainer"]["epoch"] == 1


def test_model_only_checkpoint_and_what_it_refuses(tmp_path):
    a = net()
    path = ckpt.save(tmp_path / "m.npz", a)
    b = net(seed=4)
    ckpt.load(path, b)
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        ckpt.load(path, b, optim.SGD())
    with pytest.raises(CheckpointError, match="no trainer state"):
        ckpt.load(path, b, trainer=gpunn.Trainer(b, optim.SGD(), progress=False))


def test_buffers_and_model_generators_are_saved(tmp_path):
    """BatchNorm statistics (``model.buffers``) and host generators (dropout) round-trip; checked
    with stand-ins so this holds whatever layers gpunn grows."""
    a = net()
    a.buffers = {"running_mean1": np.arange(5, dtype=np.float32), "running_var1": np.ones(5, np.float32)}
    a.dropout_rng = np.random.default_rng(11)
    a.dropout_rng.random(3)
    path = ckpt.save(tmp_path / "b.npz", a)
    expected = a.dropout_rng.random(4)
    b = net(seed=2)
    b.buffers = {"running_mean1": np.zeros(5, np.float32), "running_var1": np.zeros(5, np.float32)}
    keep = b.buffers["running_mean1"]
    b.dropout_rng = np.random.default_rng(0)
    ckpt.load(path, b)
    assert b.buffers["running_mean1"] is keep  # restored in place: layers keep their references
    np.testing.assert_array_equal(keep, np.arange(5))
    np.testing.assert_array_equal(b.buffers["running_var1"], 1)
    np.testing.assert_array_equal(b.dropout_rng.random(4), expected)
    c = net()
    with pytest.raises(CheckpointError, match="buffers"):
        ckpt.load(path, c)


def test_write_is_atomic(tmp_path, monkeypatch):
    a = net()
    path = ckpt.save(tmp_path / "c.npz", a)
    good = path.read_bytes()

    def dies_half_way(f, arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "_write_npz", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(path, net(seed=8))
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["c.npz"]

    monkeypatch.undo()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(path, net(seed=8))
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["c.npz"]


def test_differences_that_only_warn(tmp_path):
    path = ckpt.save(tmp_path / "c.npz", net())
    with pytest.warns(ckpt.CheckpointWarning, match="loss"):
        ckpt.load(path, net(loss="hinge"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt.load(path, net())


def regularised(device="cpu", seed=1):
    return gpunn.MLP(
        6,
        [5, 4],
        3,
        activation=["relu", "tanh"],
        device=device,
        seed=seed,
        batchnorm=True,
        dropout=[0.3, 0.2],
        weight_decay=1e-3,
    )


def test_resume_with_batchnorm_and_dropout_is_bit_for_bit(tmp_path):
    """BatchNorm running statistics and the dropout generators travel with the checkpoint."""
    ref_net = regularised()
    ref = Recording(
        ref_net,
        optim.Adam(lr=0.01),
        epochs=3,
        batch_size=16,
        progress=False,
        checkpoint_path=tmp_path / "run.npz",
        checkpoint_every=4,
        checkpoint_unit="step",
    )
    h_ref = ref.fit(X, T, validation_data=(XV, TV))
    meta = ckpt.read_metadata(tmp_path / "run.npz")["model"]
    assert set(meta["buffers"]) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}
    assert len(meta["rngs"]) == 2
    for snap in sorted(tmp_path.glob("step00[48]*.npz")):  # mid-epoch, both
        other = regularised(seed=42)
        tr = gpunn.Trainer(other, optim.Adam(), epochs=3, batch_size=16, progress=False).resume(snap)
        h = tr.fit(X, T, validation_data=(XV, TV))
        assert h["iter_loss"] == h_ref["iter_loss"] and h["val_loss"] == h_ref["val_loss"], snap.name
        np.testing.assert_array_equal(other.params.flat, ref_net.params.flat)
        for k, v in ref_net.buffers.items():
            np.testing.assert_array_equal(other.buffers[k], v)


def test_load_model_with_batchnorm_and_dropout(tmp_path):
    a = regularised()
    gpunn.Trainer(a, optim.SGD(lr=0.1), epochs=1, batch_size=16, progress=False).fit(X, T)
    b = ckpt.load_model(ckpt.save(tmp_path / "m.npz", a), device="cuda")
    assert (b.batchnorm, b.dropout, b.weight_decay) == (True, [0.3, 0.2], 1e-3)
    np.testing.assert_allclose(to_numpy(b.predict(X)), a.predict(X), rtol=1e-5, atol=1e-6)
    with pytest.raises(CheckpointError, match="different architecture"):
        ckpt.load(tmp_path / "m.npz", net())


# --------------------------------------------------------------------------------------------------
# issue 15 items 4 and 7: resume keeps checkpointing to its file; restored hyper-parameters are named
# --------------------------------------------------------------------------------------------------
def test_readme_resume_snippet_saves_the_finished_run(tmp_path, monkeypatch):
    """The README's lines, as written (a small net, and Ctrl-C simulated at step 4)."""
    monkeypatch.chdir(tmp_path)
    x, t = X, T
    n, opt = net(), optim.SGD(lr=0.1)
    trainer = gpunn.Trainer(n, opt, epochs=3, checkpoint_path="run.npz", batch_size=16, progress=False)
    real = n._gradient
    n._gradient = lambda xb, tb: (
        (_ for _ in ()).throw(KeyboardInterrupt) if trainer.step == 4 else real(xb, tb)
    )
    assert trainer.fit(x, t)["interrupted"]
    n._gradient = real
    n, opt = net(seed=5), optim.SGD(lr=0.1)
    # --- the README ---
    trainer = gpunn.Trainer(n, opt, epochs=3, batch_size=16, progress=False).resume("run.npz")
    trainer.fit(x, t)
    loaded = gpunn.checkpoint.load_model("run.npz")
    # ---
    assert trainer.checkpoint_path == tmp_path / "run.npz" or str(trainer.checkpoint_path) == "run.npz"
    assert ckpt.read_metadata("run.npz")["trainer"]["step"] == trainer.step == 9
    np.testing.assert_array_equal(loaded.params.flat, n.params.flat)


def test_resume_with_checkpoint_false_or_another_path_does_not_adopt_the_file(tmp_path):
    path = tmp_path / "run.npz"
    tr = gpunn.Trainer(
        net(), optim.SGD(lr=0.1), epochs=1, batch_size=16, progress=False, checkpoint_path=path
    )
    tr.fit(X, T)
    assert (
        gpunn.Trainer(net(), optim.SGD(lr=0.1), progress=False).resume(path, checkpoint=False).checkpoint_path
        is None
    )
    other = tmp_path / "other.npz"
    assert (
        gpunn.Trainer(net(), optim.SGD(lr=0.1), progress=False, checkpoint_path=other)
        .resume(path)
        .checkpoint_path
        == other
    )


def test_resume_names_restored_hyper_parameters_and_a_lower_lr_after_resume_works(tmp_path):
    """After a divergence whose message says to lower the learning rate, resuming restores the saved
    lr (a warning says so, old and new); setting it after resume() is what the message advises."""
    path = tmp_path / "run.npz"

    def relu_net():
        return gpunn.MLP(6, [5], 3, activation="relu", seed=1)

    tr = gpunn.Trainer(
        relu_net(), optim.SGD(lr=1e30), epochs=3, batch_size=16, progress=False, checkpoint_path=path
    )
    tr.save_checkpoint()  # the run's start: the last good checkpoint
    with pytest.raises(gpunn.TrainingDivergedError, match=r"set trainer.optimizer.lr = \.\.\.") as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tr.fit(X, T)
    assert info.value.checkpoint == path
    fresh = gpunn.Trainer(relu_net(), optim.SGD(lr=0.01), epochs=3, batch_size=16, progress=False)
    with pytest.warns(
        ckpt.CheckpointWarning,
        match=r"restored the saved optimizer hyper-parameters "
        r"lr=1e\+30 \(the optimizer had 0.01\)",
    ):
        fresh.resume(path)
    assert fresh.optimizer.lr == 1e30
    fresh.optimizer.lr = 0.01  # the advice
    h = fresh.fit(X, T)
    assert np.isfinite(h["loss"]).all() and fresh.epoch == 3


# --------------------------------------------------------------------------------------------------
# issue 15 items 5, 6, 8: untrusted and odd checkpoint files
# --------------------------------------------------------------------------------------------------
def rewrite(src, dst, edit_meta=None, extra=None):
    """Copy the checkpoint ``src`` to ``dst`` with its metadata edited by ``edit_meta(meta)`` and
    ``extra`` arrays added."""
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__gpunn__"].tobytes())
    if edit_meta is not None:
        edit_meta(meta)
    arrays["__gpunn__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    arrays.update(extra or {})
    np.savez(dst, **arrays)
    return dst


def dropout_run(tmp_path):
    n = net(dropout=0.5)
    opt = optim.Momentum(lr=0.1)
    tr = gpunn.Trainer(n, opt, epochs=1, batch_size=16, progress=False)
    tr.fit(X, T)
    return ckpt.save(tmp_path / "run.npz", n, opt, tr)


@pytest.mark.parametrize("bad", [{"state": "garbage", "inc": 1}, {"state": -1, "inc": None}])
def test_a_corrupt_dropout_generator_state_changes_nothing(tmp_path, bad):
    """Issue 15 item 6: a raw TypeError after the parameters and the optimizer state were written."""
    src = dropout_run(tmp_path)

    def corrupt(meta):
        (state,) = meta["model"]["rngs"].values()
        state["state"] = bad

    path = rewrite(src, tmp_path / "bad.npz", corrupt)
    n, opt = net(dropout=0.5, seed=9), optim.Momentum(lr=0.3)
    tr = gpunn.Trainer(n, opt, epochs=1, batch_size=16, progress=False)
    tr.fit(X, T)
    before = (to_numpy(n.params.flat).copy(), opt.state_dict(), n.layers[2].rng.bit_generator.state)
    with pytest.raises(CheckpointError, match="bad random-generator state for 'layers.2.rng'"):
        ckpt.load(path, n, opt, tr)
    np.testing.assert_array_equal(to_numpy(n.params.flat), before[0])
    after = opt.state_dict()
    assert after.keys() == before[1].keys() and opt.lr == 0.3
    np.testing.assert_array_equal(after["state.__flat__.v"], before[1]["state.__flat__.v"])
    assert n.layers[2].rng.bit_generator.state == before[2]


def test_load_model_checks_declared_sizes_before_allocating(tmp_path, monkeypatch):
    """Issue 15 item 5: a 4 KB file declaring 30000x30000 made load_model ask for 3.35 GiB."""
    src = ckpt.save(tmp_path / "small.npz", net())

    def huge(meta):
        meta["model"]["config"]["hidden_sizes"] = [30000]
        meta["model"]["config"]["input_size"] = 30000

    path = rewrite(src, tmp_path / "huge.npz", huge)
    assert path.stat().st_size < 10_000
    built = []
    real_init = gpunn.MLP.__init__
    monkeypatch.setattr(
        gpunn.MLP, "__init__", lambda self, *a, **k: (built.append(a), real_init(self, *a, **k))[1]
    )
    with pytest.raises(
        CheckpointError,
        match=r"declares layers \[30000, 30000, 3\] \(900120003 parameters\)"
        r".*holds an array of shape \(53,\).*nothing was allocated",
    ):
        ckpt.load_model(path)
    assert built == []


def test_entries_the_metadata_does_not_refer_to_are_never_decompressed(tmp_path, monkeypatch):
    """Issue 15 item 5: an extra compressed 512 MiB entry was decompressed (1.1 GB peak)."""
    src = ckpt.save(tmp_path / "run.npz", net())
    path = tmp_path / "extra.npz"
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez_compressed(path, **arrays, extra=np.zeros(4 << 20, dtype=np.uint8))  # 4 MiB in ~4 KB
    read = []
    real = ckpt._read_entry

    def spy(p, zf, info, size, header_only=False):
        if not header_only:
            read.append(info.filename)
        return real(p, zf, info, size, header_only)

    monkeypatch.setattr(ckpt, "_read_entry", spy)
    model = ckpt.load_model(path)
    np.testing.assert_array_equal(model.params.flat, net().params.flat)
    assert "extra.npy" not in read and "model/params.npy" in read


def test_deeply_nested_metadata_is_a_checkpoint_error(tmp_path):
    """Issue 15 item 8: RecursionError instead of CheckpointError."""
    src = ckpt.save(tmp_path / "run.npz", net())
    text = json.loads(np.load(src)["__gpunn__"].tobytes())
    for depth, match in ((100_000, "not UTF-8 JSON of a sane depth"), (500, "nested more than 64 levels")):
        meta = dict(text)
        meta["extra"] = "[" * depth + "]" * depth
        raw = json.dumps(meta).replace(json.dumps(meta["extra"]), meta["extra"])
        path = tmp_path / f"deep{depth}.npz"
        with np.load(src) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["__gpunn__"] = np.frombuffer(raw.encode(), dtype=np.uint8)
        np.savez(path, **arrays)
        with pytest.raises(CheckpointError, match=match):
            ckpt.read_metadata(path)


def test_a_stored_order_that_is_not_a_permutation_is_refused(tmp_path):
    """Issue 15 item 8: an order with a repeated index was accepted on resume."""
    path = tmp_path / "run.npz"
    tr = gpunn.Trainer(net(), optim.SGD(lr=0.1), epochs=2, batch_size=16, progress=False)
    real = tr.model._gradient
    tr.model._gradient = lambda xb, tb: (
        (_ for _ in ()).throw(KeyboardInterrupt) if tr.step == 1 else real(xb, tb)
    )
    tr.fit(X, T)
    tr.save_checkpoint(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__gpunn__"].tobytes())
    key = meta["trainer"]["order"]["__array__"]
    arrays[key] = arrays[key].copy()
    arrays[key][0] = arrays[key][1]  # a duplicate: still in range
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"the stored epoch order is not a permutation of range\(40\)"):
        gpunn.Trainer(net(), optim.SGD(lr=0.1), progress=False).resume(tmp_path / "bad.npz")


def test_orphaned_temporary_files_are_removed_by_the_next_save(tmp_path):
    """Issue 15 item 8: writers killed mid-write left .run.npz.*.tmp files, never cleaned."""
    path = tmp_path / "run.npz"
    orphans = [tmp_path / f".run.npz.{s}.tmp" for s in ("abcd1234", "x_y-z987")]
    for o in orphans:
        o.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.npz.abcd1234.tmp"
    other.write_bytes(b"another file's")
    ckpt.save(path, net())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.abcd1234.tmp", "run.npz"]


def test_a_250_character_checkpoint_name_works(tmp_path):
    """Issue 15 item 8: the temporary name (.NAME.XXXXXXXX.tmp) exceeded 255 bytes."""
    path = tmp_path / ("r" * 246 + ".npz")
    tr = gpunn.Trainer(
        net(), optim.SGD(lr=0.1), epochs=1, batch_size=16, progress=False, checkpoint_path=path
    )
    tr.fit(X, T)
    assert ckpt.read_metadata(path)["trainer"]["epoch"] == 1
    (tmp_path / (ckpt._temp_prefix(path) + "12345678.tmp")).write_bytes(b"orphan")
    tr.save_checkpoint()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_read_only_checkpoint_directory_is_refused_up_front(tmp_path, monkeypatch):
    """Issue 15 item 8: accepted, then training died after the first epoch."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:  # (root writes anywhere: then simulate the refusal of the file system)
        ro.chmod(0o500)
    else:

        def refuse(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(ckpt.tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(ValueError, match=f"checkpoint_path: cannot write in directory {ro}"):
            gpunn.Trainer(net(), optim.SGD(), checkpoint_path=ro / "run.npz")
    finally:
        ro.chmod(0o700)
