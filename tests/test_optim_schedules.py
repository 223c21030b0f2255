"""Learning-rate schedules: their values, and that the optimizers follow them."""

import math

import numpy as np
import pytest
from conftest import to_numpy

from gpunn import optim
from gpunn.optim import references as ref


def values(sched, n):
    out = [sched.optimizer.lr]
    for _ in range(n):
        out.append(sched.step())
        assert sched.optimizer.lr == out[-1] == sched.get_last_lr()
    return out


def test_step_lr():
    sched = optim.StepLR(optim.SGD(lr=1.0), step_size=3, gamma=0.5)
    assert values(sched, 7) == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_exponential_lr():
    sched = optim.ExponentialLR(optim.Adam(lr=0.1), gamma=0.9)
    assert values(sched, 4) == pytest.approx([0.1, 0.09, 0.081, 0.0729, 0.06561], rel=1e-12)


def test_cosine_annealing_lr():
    sched = optim.CosineAnnealingLR(optim.Momentum(lr=1.0), T_max=4, eta_min=0.1)
    got = values(sched, 6)
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * min(t, 4) / 4)) / 2 for t in range(7)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[2] == pytest.approx(0.55) and got[4:] == pytest.approx([0.1] * 3)


def test_linear_warmup_then_constant():
    sched = optim.WarmupLR(optim.SGD(lr=1.0), warmup_steps=4, start_factor=0.2)
    assert values(sched, 6) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])


def test_warmup_then_cosine():
    opt = optim.Adam(lr=0.01)
    cosine = optim.CosineAnnealingLR(opt, T_max=10)
    sched = optim.WarmupLR(opt, warmup_steps=5, start_factor=0.0, then=cosine)
    got = values(sched, 16)
    assert got[:5] == pytest.approx([0.0, 0.002, 0.004, 0.006, 0.008])
    assert got[5:] == pytest.approx([cosine.lr_at(t) for t in range(11)] + [0.0] * 1)
    assert got[5] == pytest.approx(0.01) and got[15] == pytest.approx(0.0, abs=1e-18)


def test_schedule_state_dict_round_trip():
    sched = optim.StepLR(optim.SGD(lr=1.0), step_size=2, gamma=0.1)
    for _ in range(5):
        sched.step()
    state = sched.state_dict()
    assert state == {"base_lr": 1.0, "last_step": 5}
    other = optim.StepLR(optim.SGD(lr=123.0), step_size=2, gamma=0.1)
    other.load_state_dict(state)
    assert other.optimizer.lr == pytest.approx(0.01) and other.step() == pytest.approx(0.001)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: optim.StepLR(o, step_size=0),
        lambda o: optim.StepLR(o, step_size=2, gamma=-1),
        lambda o: optim.ExponentialLR(o, gamma=float("nan")),
        lambda o: optim.CosineAnnealingLR(o, T_max=0),
        lambda o: optim.CosineAnnealingLR(o, T_max=5, eta_min=-1),
        lambda o: optim.WarmupLR(o, warmup_steps=0),
        lambda o: optim.WarmupLR(o, warmup_steps=3, start_factor=2.0),
    ],
)
def test_bad_schedule_arguments(make):
    with pytest.raises(ValueError):
        make(optim.SGD())


def test_then_must_drive_the_same_optimizer():
    with pytest.raises(ValueError, match="same optimizer"):
        optim.WarmupLR(optim.SGD(), 3, then=optim.ExponentialLR(optim.SGD(), 0.9))


def test_optimizer_follows_the_schedule(dev):
    # the kernels take the new lr each step: Adam under a schedule equals the reference fed the
    # same learning rates
    rng = np.random.default_rng(0)
    params = {"W": dev.to_device(rng.standard_normal((3, 4)).astype(np.float32))}
    expected = {"W": to_numpy(params["W"]).copy()}
    opt = optim.Adam(lr=0.1, device=dev)
    textbook = ref.Adam(lr=0.1)
    sched = optim.ExponentialLR(opt, gamma=0.5)
    for _ in range(4):
        g = rng.standard_normal((3, 4)).astype(np.float32)
        opt.update(params, {"W": dev.to_device(g)})
        textbook.update(expected, {"W": g})
        sched.step()
        textbook.lr *= 0.5
    got = to_numpy(params["W"])
    np.testing.assert_allclose(got, expected["W"], rtol=1e-6, atol=1e-7)
