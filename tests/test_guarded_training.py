"""Guarded training: NaN/Inf stop the run with a named error, good checkpoints survive a divergence,
and Ctrl-C (a real SIGINT, or a KeyboardInterrupt raised inside a step) ends training cleanly."""

import os
import signal
import sys

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn import checkpoint as ckpt
from gpunn import optim
from gpunn.trainer import TrainingDivergedError


def blobs(n=40, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    return (rng.standard_normal((c, d))[t] * 2 + rng.standard_normal((n, d))).astype(np.float32), t


X, T = blobs()  # 40 rows, batch 16: 3 steps per epoch


def trainer(device="cpu", epochs=3, **kw):
    model = gpunn.MLP(6, [5], 3, activation="tanh", device=device, seed=1)
    return gpunn.Trainer(model, optim.Momentum(lr=0.1), epochs=epochs, batch_size=16, progress=False, **kw)


def hook_gradient(tr, at_step, action):
    """Run ``action(model)`` right after the forward/backward pass of step ``at_step`` (1-based)."""
    model = tr.model
    real = model._gradient
    calls = [0]

    def wrapped(x, t):
        loss = real(x, t)
        calls[0] += 1
        if calls[0] == at_step:
            action(model)
        return loss

    model._gradient = wrapped


def poison_w2(model):
    model.grads["W2"][0, :3] = model.xp.nan


def test_nan_gradient_stops_before_the_update(dev):
    tr = trainer(dev)
    before = {}
    hook_gradient(tr, 5, lambda m: (before.setdefault("p", to_numpy(m.params.flat).copy()), poison_w2(m)))
    with pytest.raises(TrainingDivergedError) as info:
        tr.fit(X, T)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert (err.step, err.epoch, err.quantity) == (5, 2, "grads['W2']")
    msg = str(err)
    assert "step 5" in msg and "epoch 2" in msg and "grads['W2'] has 3 NaN (of 15 values)" in msg
    np.testing.assert_array_equal(to_numpy(tr.model.params.flat), before["p"])  # not applied
    assert len(tr.history["iter_loss"]) == 4 and err.history is tr.history
    assert all(np.isfinite(tr.history["iter_loss"]))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_loss_is_named_first():
    tr = trainer()
    tr.model.params["b2"][0] = np.nan
    with pytest.raises(TrainingDivergedError, match=r"step 1 \(epoch 1, batch 1 of 3\): the loss is nan"):
        tr.fit(X, T)


def test_guard_every_k_and_guard_off():
    tr = trainer(guard_every=3)
    hook_gradient(tr, 4, poison_w2)
    with pytest.raises(TrainingDivergedError, match="checked every 3 steps") as info:
        tr.fit(X, T)
    assert info.value.step == 6
    off = trainer(guard=False)
    hook_gradient(off, 4, poison_w2)
    h = off.fit(X, T)  # trains on garbage, as asked
    assert len(h["iter_loss"]) == 9 and np.isnan(h["iter_loss"][-1])


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    tr = trainer(checkpoint_path=path)  # a checkpoint after every epoch
    hook_gradient(tr, 5, poison_w2)
    with pytest.raises(TrainingDivergedError) as info:
        tr.fit(X, T)
    err = info.value
    assert err.checkpoint == path and err.failed_checkpoint == tmp_path / "run.failed.npz"
    assert "last good checkpoint" in str(err) and "run.failed.npz" in str(err)
    assert ckpt.read_metadata(path)["trainer"]["step"] == 3  # the end of epoch 1, untouched
    assert ckpt.read_metadata(err.failed_checkpoint)["trainer"]["step"] == 4
    good = gpunn.MLP(6, [5], 3, activation="tanh")
    ckpt.load(path, good)
    assert np.isfinite(good.params.flat).all()


@pytest.mark.parametrize("guard", [True, False])
def test_periodic_checkpoint_never_saves_non_finite_parameters(tmp_path, guard):
    path = tmp_path / "run.npz"
    tr = trainer(checkpoint_path=path, checkpoint_unit="step", guard=guard, guard_every=1000)
    hook_gradient(tr, 2, poison_w2)
    if guard:
        with pytest.raises(TrainingDivergedError, match=r"params\['W2'\] has 3 NaN"):
            tr.fit(X, T)
    else:
        with pytest.warns(RuntimeWarning, match="not overwritten"):
            tr.fit(X, T)
    assert ckpt.read_metadata(path)["trainer"]["step"] == 1


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler, as in a terminal: a test runner started in the background (or by a
    CI without a terminal) may inherit SIGINT ignored, and then a real Ctrl-C never reaches Python."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.mark.usefixtures("default_sigint")
def test_ctrl_c_stops_at_the_step_boundary(tmp_path, capsys):
    """A real SIGINT in the middle of step 5: the step completes, the run stops, is saved, and
    continues (in this process, or from the file) exactly as if never interrupted."""
    ref = trainer().fit(X, T)["iter_loss"]
    path = tmp_path / "run.npz"
    tr = trainer(checkpoint_path=path, checkpoint_every=10)
    installed = []

    def ctrl_c(model):
        installed.append(signal.getsignal(signal.SIGINT) is not signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGINT)

    hook_gradient(tr, 5, ctrl_c)
    h = tr.fit(X, T)
    assert installed == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert h["interrupted"] is True and len(h["iter_loss"]) == 5 and tr.step == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted at step 5 (epoch 2/3)" in err and str(path) in err
    assert ckpt.read_metadata(path)["trainer"]["step"] == 5
    fresh = trainer()
    assert fresh.resume(path).fit(X, T)["iter_loss"] == ref
    again = tr.fit(X, T)  # or simply call fit again
    assert again["iter_loss"] == ref and again["interrupted"] is False


@pytest.mark.usefixtures("default_sigint")
def test_second_ctrl_c_stops_at_once():
    tr = trainer()

    def twice(model):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    hook_gradient(tr, 2, twice)
    h = tr.fit(X, T)
    assert h["interrupted"] and tr.step == 1  # step 2 abandoned before its update


def test_keyboard_interrupt_raised_inside_a_step(tmp_path, capsys):
    """A KeyboardInterrupt raised by code inside the step (a callback, a test) also ends cleanly:
    before the update the state is consistent and saved; inside the update it is not rewritten."""
    ref = trainer().fit(X, T)["iter_loss"]
    path = tmp_path / "run.npz"
    tr = trainer(checkpoint_path=path, checkpoint_unit="step", checkpoint_every=2)

    def stop(model):
        raise KeyboardInterrupt

    hook_gradient(tr, 4, stop)
    h = tr.fit(X, T)
    assert h["interrupted"] and tr.step == 3 and ckpt.read_metadata(path)["trainer"]["step"] == 3
    assert "checkpoint written" in capsys.readouterr().err
    assert trainer().resume(path).fit(X, T)["iter_loss"] == ref

    tr = trainer(checkpoint_path=path, checkpoint_unit="step", checkpoint_every=2)
    real, calls = tr.optimizer.update, [0]

    def update(params, grads):
        calls[0] += 1
        if calls[0] == 4:
            raise KeyboardInterrupt
        real(params, grads)

    tr.optimizer.update = update
    h = tr.fit(X, T)
    assert h["interrupted"] and ckpt.read_metadata(path)["trainer"]["step"] == 2
    assert "was not rewritten" in capsys.readouterr().err


def test_guard_is_one_check_per_step(monkeypatch):
    """Cheap path: one finiteness reduction per step (which also covers the parameters the previous
    update wrote), plus one per epoch for the epoch's last update; no per-array diagnosis unless it
    fails."""
    tr = trainer(epochs=1)
    calls = {"isfinite": 0, "isnan": 0}
    xp = tr.model.xp

    class Counting:
        def __getattr__(self, name):
            if name in calls:
                calls[name] += 1
            return getattr(xp, name)

    tr.model.xp = Counting()
    tr.fit(X, T)
    assert calls == {"isfinite": 3 + 1, "isnan": 0}


def test_interrupt_inside_a_batchnorm_forward_keeps_the_old_checkpoint(tmp_path, capsys):
    """With BatchNorm/dropout the forward pass itself changes state (running statistics, mask
    generators), so a KeyboardInterrupt raised there cannot be undone: the checkpoint is kept."""
    path = tmp_path / "run.npz"
    model = gpunn.MLP(6, [5], 3, seed=1, batchnorm=True, dropout=0.2)
    tr = gpunn.Trainer(
        model,
        optim.SGD(lr=0.1),
        epochs=3,
        batch_size=16,
        progress=False,
        checkpoint_path=path,
        checkpoint_unit="step",
        checkpoint_every=2,
    )

    def stop(model):
        raise KeyboardInterrupt

    hook_gradient(tr, 4, stop)
    assert tr.fit(X, T)["interrupted"]
    assert ckpt.read_metadata(path)["trainer"]["step"] == 2 and "not rewritten" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# issue 15 item 9: hyper-parameters not finite in the model's dtype; updates that damage the model
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: optim.SGD(lr=1e39), r"lr=1e\+39 is not finite in float32"),
        (lambda: optim.Adam(eps=1e-50), r"eps=1e-50 rounds to 0 in float32"),
        (lambda: optim.Momentum(lr=0.1, weight_decay=1e39), r"weight_decay=1e\+39 is not finite in float32"),
    ],
)
def test_hyper_parameters_must_be_finite_in_the_models_dtype(make, match):
    model = gpunn.MLP(6, [5], 3, seed=1)
    with pytest.raises(ValueError, match=match):
        gpunn.Trainer(model, make(), progress=False)  # refused up front
    with pytest.raises(ValueError, match=match):
        make().update(model.params, model.grads)  # and by the textbook loop's first step
    gpunn.Trainer(gpunn.MLP(6, [5], 3, dtype="float64"), make(), progress=False)  # fine in float64


def test_a_schedule_cannot_push_lr_past_the_models_dtype():
    opt = optim.SGD(lr=1e38)
    trainer_ = gpunn.Trainer(gpunn.MLP(6, [5], 3, seed=1), opt, progress=False)
    assert trainer_.optimizer is opt
    with pytest.raises(ValueError, match="not finite in float32"):
        opt.lr = 1e39
    assert opt.lr == 1e38


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("at_step", [2, 3])  # inside an epoch (seen by step 3's check) / its last step
def test_an_update_that_makes_parameters_non_finite_is_caught_as_that_step(dev, at_step):
    """Finite gradients, a finite lr, but lr·g overflows float32: the guard blames that step's update
    and puts the parameters back as they were before it."""
    tr = trainer(dev, checkpoint_path=None)
    tr.optimizer = optim.SGD(lr=1e37)  # finite in float32; lr * g is not, once the gradient is > 34
    seen = {}

    def blow_up(model):
        seen["before"] = to_numpy(model.params.flat).copy()
        model.grads["W1"][0, 0] = 1e3  # finite; the update W1 -= 1e37 * 1e3 overflows to -inf

    hook_gradient(tr, at_step, blow_up)
    with pytest.raises(TrainingDivergedError) as info:
        tr.fit(X, T)
    err = info.value
    assert (err.step, err.epoch, err.quantity) == (at_step, 1, "params['W1']")
    assert f"training diverged at step {at_step} (epoch 1, batch {at_step} of 3)" in str(err)
    assert "update made the parameters non-finite" in str(err) and "restored" in str(err)
    np.testing.assert_array_equal(to_numpy(tr.model.params.flat), seen["before"])
    assert tr.step == at_step - 1 and len(tr.history["iter_loss"]) == at_step - 1
    assert tr.history["loss"] == []  # the epoch was not recorded with broken parameters


# --------------------------------------------------------------------------------------------------
# issue 15 item 3: a KeyboardInterrupt at any line of the loop or of the checkpoint writer
# --------------------------------------------------------------------------------------------------
_TRACED = ("gpunn/trainer.py", "gpunn/checkpoint.py")


def _interrupt_at(tr, at):
    """Run ``tr.fit`` raising KeyboardInterrupt at the ``at``-th line executed in the trainer or the
    checkpoint module (a second Ctrl-C can land anywhere); returns the number of lines seen."""
    seen = [0]

    def tracer(frame, event, arg):
        if not frame.f_code.co_filename.replace(os.sep, "/").endswith(_TRACED):
            return None
        if event == "line":
            seen[0] += 1
            if seen[0] == at:
                raise KeyboardInterrupt  # (a trace function that raises is removed)
        return tracer

    sys.settrace(tracer)
    try:
        tr.fit(X, T)
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(None)
    return seen[0]


def test_an_interrupt_at_any_line_leaves_the_previous_or_a_new_good_checkpoint(tmp_path, capsys):
    """Whatever line the interrupt lands on, the file at checkpoint_path is a good checkpoint of some
    step k of the uninterrupted run: its parameters, history (no epoch repeated, no entry twice),
    data order and generator state are that run's at step k."""

    def make(path=None):
        return trainer(epochs=2, checkpoint_path=path, checkpoint_unit="step", checkpoint_every=2)

    ref = make()
    at_step, orders = {0: to_numpy(ref.model.params.flat).copy()}, []
    real_update = ref.optimizer.update
    rng = ref.device.host_rng(ref.seed)  # each epoch's order, and the generator state after drawing it
    for _ in range(2):
        orders.append((rng.permutation(X.shape[0]), rng.bit_generator.state))

    def update(params, grads):
        real_update(params, grads)
        at_step[ref.step + 1] = to_numpy(params.flat).copy()

    ref.optimizer.update = update
    h = ref.fit(X, T)
    total = _interrupt_at(make(tmp_path / "count.npz"), 0)
    assert total > 1000
    written = set()
    for at in range(1, total + 1):
        path = tmp_path / f"run{at}.npz"
        _interrupt_at(make(path), at)
        if not path.exists():
            continue
        meta = ckpt.read_metadata(path)["trainer"]  # a CheckpointError here is a bad file
        step, epoch, offset = meta["step"], meta["epoch"], meta["offset"]
        tr = make().resume(path)
        np.testing.assert_array_equal(to_numpy(tr.model.params.flat), at_step[step], err_msg=f"line {at}")
        assert tr.history["iter_loss"] == h["iter_loss"][:step], at
        assert tr.history["loss"] == h["loss"][:epoch] and tr.history["acc"] == h["acc"][:epoch], at
        assert step == epoch * 3 + -(-offset // 16), at
        if offset:
            np.testing.assert_array_equal(tr._order, orders[epoch][0], err_msg=f"line {at}")
            assert tr.rng.bit_generator.state == orders[epoch][1], at
        written.add(step)
        path.unlink()
    assert written >= {1, 2, 3, 4, 5, 6}  # interrupts at every step, and the periodic checkpoints
    capsys.readouterr()
