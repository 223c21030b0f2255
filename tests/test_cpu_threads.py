"""gpunn.cpu_threads: the thread policy, models trained from several Python threads at once, and
gpunn's own kernels giving the same bits whatever their thread count (GEMMs excluded: OpenBLAS's
results depend on its thread count, which reproducible mode fixes per shape)."""

import threading

import numba
import numpy as np
import pytest
from gpunn.kernels import batchnorm as bn
from gpunn.kernels import dropout as dk
from gpunn.kernels import optim as ok
from gpunn.kernels import threads as helper_threads

import gpunn
from gpunn import cpu_threads


# -- the policy -----------------------------------------------------------------------------------
@pytest.fixture
def policy():
    """Restore the policy's process-wide settings after a test changes them."""
    saved = cpu_threads.reproducible()
    yield cpu_threads
    cpu_threads.set_local_ranks(cpu_threads._env_local_ranks())
    cpu_threads._local_ranks = None
    cpu_threads.set_max_threads(None)
    cpu_threads.set_reproducible(saved)


def test_the_suite_runs_in_reproducible_mode():
    """tests/conftest.py sets GPUNN_REPRODUCIBLE=1: the suite's bit-for-bit comparisons must not
    depend on the machine's load."""
    assert cpu_threads.reproducible()


def test_reproducible_mode_sizes_gemm_threads_by_shape_only(policy, monkeypatch):
    policy.set_reproducible(True)
    monkeypatch.setattr(cpu_threads, "budget", lambda: pytest.fail("the load was consulted"))
    big = cpu_threads.GEMM_PARALLEL_MIN
    assert cpu_threads.gemm_threads(64, 784, 64) == 1
    assert cpu_threads.gemm_threads(big, 1, 1) == cpu_threads.cores()
    assert cpu_threads.gemm_threads(big - 1, 1, 1) == 1


@pytest.mark.parametrize("idle_cores", [1, 2, 3])
def test_by_default_gemms_follow_the_idle_cores(policy, monkeypatch, idle_cores):
    policy.set_reproducible(False)
    monkeypatch.setattr(cpu_threads, "budget", lambda: idle_cores)
    assert cpu_threads.gemm_threads(64, 784, 64) == idle_cores
    assert cpu_threads.gemm_threads(cpu_threads.GEMM_PARALLEL_MIN, 1, 1) == idle_cores


@pytest.mark.parametrize("reproducible", [True, False])
def test_gemms_blas_runs_on_the_calling_thread_need_no_thread_count(policy, reproducible):
    policy.set_reproducible(reproducible)
    limit = cpu_threads.GEMM_SERIAL_MAX
    assert cpu_threads.gemm_threads(64, 64, 64) is None and 64**3 == limit
    assert cpu_threads.gemm_threads(limit + 1, 1, 1) is not None


def test_with_one_core_the_blas_gate_is_set_once_then_skipped(policy):
    if not cpu_threads._blas.available():
        pytest.skip("no BLAS threadpoolctl can control")
    a = np.ones((64, 784), np.float32)
    b = np.ones((784, 64), np.float32)
    policy.set_max_threads(1)
    assert not cpu_threads._blas.single
    cpu_threads.matmul(np.matmul, a, b)
    assert cpu_threads._blas.single and cpu_threads._blas.current == 1
    entered = []
    real_enter = cpu_threads._blas.enter
    cpu_threads._blas.enter = lambda n: (entered.append(n), real_enter(n))
    try:
        np.testing.assert_array_equal(cpu_threads.matmul(np.matmul, a, b), a @ b)
    finally:
        del cpu_threads._blas.enter
    assert entered == []
    policy.set_max_threads(None)  # more cores again: the gate is back
    assert not cpu_threads._blas.single


def test_ranks_on_one_machine_share_its_cores(policy, monkeypatch):
    monkeypatch.setattr(cpu_threads, "_CPUS", 8)
    monkeypatch.setattr(cpu_threads._blas, "start", 8)
    policy.set_local_ranks(1)
    assert policy.cores() == 8 or not policy._blas.available()
    policy.set_local_ranks(2)
    assert policy.cores() == 4 or not policy._blas.available()
    policy.set_local_ranks(16)
    assert policy.cores() == 1
    policy.set_local_ranks(1)
    policy.set_max_threads(3)
    assert policy.cores() == 3 or not policy._blas.available()


def test_local_rank_count_is_read_from_the_launchers_environment(monkeypatch):
    for var in cpu_threads._LOCAL_SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    assert cpu_threads._env_local_ranks() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3")
    assert cpu_threads._env_local_ranks() == 3
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    assert cpu_threads._env_local_ranks() == 2


def test_load_sample_counts_idle_cores_and_our_own(monkeypatch):
    """Two CPUs: 50 % idle over the interval and this process using one core -> 2 usable; another
    process keeping the second core busy (0 % idle) -> 1."""
    import os
    from collections import namedtuple

    Times = namedtuple("Times", "user system")
    stats = iter([(0, 0), (100, 200), (100, 400)])
    own = iter([0.0, 1.0, 2.0])
    monkeypatch.setattr(cpu_threads, "_read_proc_stat", lambda: next(stats))
    monkeypatch.setattr(os, "times", lambda: Times(next(own), 0.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    load = cpu_threads._Load()
    load.sample(0.0)
    assert load.value is None
    load.sample(1.0)
    assert load.value == 2
    load.sample(2.0)
    assert load.value == 1


def test_a_gemm_section_sets_the_blas_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not cpu_threads._blas.available():
        pytest.skip("no BLAS threadpoolctl can control")
    with cpu_threads.gemm(64, 784, 64):
        info = threadpoolctl.threadpool_info()
        assert all(lib["num_threads"] == 1 for lib in info if lib["user_api"] == "blas")


def test_gemms_wanting_different_thread_counts_do_not_overlap():
    class Lib:
        num_threads = 2
        calls = []

        def set_num_threads(self, n):
            self.calls.append(n)

    blas = cpu_threads._Blas()
    blas.libs, blas.start = [Lib()], 2
    blas.enter(1)
    blas.enter(1)  # the same count: enters at once, no new call
    entered = threading.Event()
    other = threading.Thread(target=lambda: (blas.enter(2), entered.set(), blas.leave()))
    other.start()
    assert not entered.wait(0.2)  # a GEMM on 2 threads waits for both 1-thread GEMMs
    blas.leave()
    assert not entered.wait(0.1)
    blas.leave()
    assert entered.wait(5)
    other.join()
    assert Lib.calls == [1, 2]


# -- gpunn's own kernels: the same bits at any thread count ---------------------------------------------
def _bn_run(monkeypatch, threads, x, dy):
    monkeypatch.setattr(bn, "kernel_threads", lambda: threads)
    layer = gpunn.batchnorm.BatchNorm("cpu", x.shape[1])
    y = layer.forward(x, train=True).copy()
    dx = layer.backward(dy).copy()
    return y, dx, layer.dgamma.copy(), layer.dbeta.copy(), layer.running_mean.copy(), layer.running_var.copy()


def test_batchnorm_gives_the_same_bits_on_1_2_and_3_threads(monkeypatch):
    rng = np.random.default_rng(0)
    n, c = 1024, 1024  # 2**20 elements: the chunked path
    assert bn.n_segments(n, c) > 1
    x = (rng.standard_normal((n, c)) * 3 + 5).astype(np.float32)
    dy = rng.standard_normal((n, c)).astype(np.float32)
    ref = _bn_run(monkeypatch, 1, x, dy)
    for threads in (2, 3):
        got = _bn_run(monkeypatch, threads, x, dy)
        for a, b in zip(ref, got, strict=True):
            np.testing.assert_array_equal(a, b)


def test_batchnorm_chunks_run_on_the_caller_while_another_thread_holds_the_helpers(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1024, 1024)).astype(np.float32)
    dy = rng.standard_normal((1024, 1024)).astype(np.float32)
    ref = _bn_run(monkeypatch, 2, x, dy)
    assert helper_threads._lock.acquire(blocking=False)
    try:
        got = _bn_run(monkeypatch, 2, x, dy)
    finally:
        helper_threads._lock.release()
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_parallel_optimizer_and_dropout_kernels_equal_their_serial_twins():
    rng = np.random.default_rng(2)
    n = ok.PARALLEL_MIN + 12345
    f32 = np.float32
    p, g = rng.standard_normal(n).astype(f32), rng.standard_normal(n).astype(f32)
    m, v = rng.standard_normal(n).astype(f32), rng.random(n).astype(f32)
    hyper = [f32(h) for h in (1e-3, 0.9, 0.1, 0.999, 0.001, 1e-8, 1.2, 0.01)]
    runs = []
    for run in (ok.adam_cpu, ok.serial_kernel("adam")):
        a = [p.copy(), g, m.copy(), v.copy()]
        run(*a, *hyper, n // 2)
        runs.append(a)
    for x, y in zip(*runs, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(runs[0][0], p)  # it did update

    x = rng.standard_normal(dk.PARALLEL_MIN * 2).astype(f32)
    args = [np.uint64(v) for v in (12345, 678, 1 << 22)] + [f32(2.0), f32(0)]
    out1, out2 = np.empty_like(x), np.empty_like(x)
    dk.apply_cpu(x, out1, *args)
    dk.serial_kernel("apply")(x, out2, *args)
    np.testing.assert_array_equal(out1, out2)


# -- several Python threads, each training its own model ----------------------------------------------
def _models():
    """(name, factory, batch): nets that take gpunn's parallel paths on the CPU: dropout on 2**18
    elements, BatchNorm on 2**20 elements, an Adam step on more than 4M parameters."""
    return [
        ("dropout", lambda: gpunn.MLP(64, [1024], 10, dropout=0.2, device="cpu", seed=1), 256),
        ("batchnorm", lambda: gpunn.MLP(32, [1024], 10, batchnorm=True, device="cpu", seed=2), 1024),
        ("adam>4M", lambda: gpunn.MLP(2048, [2048], 10, device="cpu", seed=3), 16),
    ]


def _train(factory, batch, steps=4, start=None):
    net = factory()
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, net.sizes[0])).astype(np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    opt = gpunn.optim.Adam(lr=1e-3)
    if start is not None:
        start.wait()
    for _ in range(steps):
        opt.update(net.params, net.gradient(x, t))
    return net.params.flat.copy()


def test_models_trained_from_several_threads_at_once_equal_training_alone():
    models = _models()
    alone = [_train(f, b) for _, f, b in models]
    start = threading.Barrier(len(models))
    results, errors = [None] * len(models), []

    def work(i, f, b):
        try:
            results[i] = _train(f, b, start=start)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    ts = [threading.Thread(target=work, args=(i, f, b)) for i, (_, f, b) in enumerate(models)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    for (name, _, _), a, b in zip(models, alone, results, strict=True):
        assert np.array_equal(a, b), f"{name}: trained concurrently, the model differs from training alone"


def test_threads_training_at_once_while_the_gemm_thread_counts_keep_changing(policy, monkeypatch):
    """The default (adaptive) policy with a load that changes every GEMM: the threads' GEMMs want 1,
    2 and 3 BLAS threads in turn, so the gate keeps switching the count and queueing threads.  No
    crash, no deadlock, and every model trains (finite, changed parameters)."""
    policy.set_reproducible(False)
    counts = iter(range(1 << 30))
    monkeypatch.setattr(cpu_threads, "budget", lambda: 1 + next(counts) % 3)
    models = [factory for _, factory, _ in _models()] * 2
    before = [f().params.flat.copy() for f in models]
    results, errors = [None] * len(models), []

    def work(i, f):
        try:
            results[i] = _train(f, 64, steps=3)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i, f)) for i, f in enumerate(models)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts), "a training thread is stuck"
    assert not errors, errors
    for b, a in zip(before, results, strict=True):
        assert np.isfinite(a).all() and not np.array_equal(a, b)
    assert next(counts) > 6 * len(models)  # the policy was asked for every GEMM


def test_threads_starting_at_once_all_see_the_blas_thread_count_the_process_started_with(policy, monkeypatch):
    """The BLAS libraries are looked up once: a thread that looked after another thread's GEMM had
    lowered the count to 1 took 1 for the process's ceiling, and every GEMM ran on one thread after."""
    if not cpu_threads._blas.available() or cpu_threads._blas.start < 2:
        pytest.skip("needs a BLAS threadpoolctl can control, started with 2 threads or more")
    start = cpu_threads._blas.start
    cpu_threads._blas.enter(start)  # the count as a fresh process has it
    cpu_threads._blas.leave()
    fresh = cpu_threads._Blas()
    monkeypatch.setattr(cpu_threads, "_blas", fresh)
    monkeypatch.setattr(cpu_threads, "budget", lambda: 1)
    policy.set_reproducible(False)
    cpu_threads._policy_changed()
    a = np.ones((64, 784), np.float32)
    b = np.ones((784, 64), np.float32)
    go = threading.Barrier(8)
    ts = [threading.Thread(target=lambda: (go.wait(), cpu_threads.matmul(np.matmul, a, b))) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert fresh.start == start
    assert cpu_threads.cores() == min(cpu_threads._CPUS, start)
