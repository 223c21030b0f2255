"""Data-parallel training (gpunn.distributed, Trainer(distributed=True)).

The MPI tests launch ``mpiexec -n 2 python tests/mpi/worker.py SCENARIO`` (2 processes on this
machine, CPU and the simulated "cuda" device, which reduces through MPI like the CPU) and compare
with single-process training here.  They are skipped only when mpi4py or mpiexec is missing
(``pip install -e ".[dev]"`` installs both: mpi4py and the MPICH wheel).  The rest needs no MPI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import to_numpy

import gpunn
from gpunn import distributed as dist

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "mpi" / "worker.py"
sys.path.insert(0, str(WORKER.parent))
import worker as W  # noqa: E402  (the scenarios' data and models, shared with the reference runs)


def _mpiexec():
    for cand in (Path(sys.executable).parent / "mpiexec", shutil.which("mpiexec"), shutil.which("mpirun")):
        if cand and Path(cand).exists():
            return str(cand)
    return None


MPIEXEC = _mpiexec()
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and MPIEXEC is not None
needs_mpi = pytest.mark.skipif(
    not HAVE_MPI,
    reason="mpi4py or mpiexec is not installed (pip install -e "
    "'.[dev]' or '.[dist]' installs mpi4py and MPICH)",
)


def mpirun(scenario, out, timeout=120, dist_timeout=60):
    """Run a scenario on 2 ranks: (returncode, output, seconds).  One thread per rank (2 cores)."""
    env = {
        **os.environ,
        "GPUNN_DIST_TIMEOUT": str(dist_timeout),
        "NUMBA_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    start = time.monotonic()
    proc = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, str(WORKER), scenario, str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    return proc.returncode, proc.stdout, time.monotonic() - start


# --------------------------------------------------------------------------------------------------
# 2 processes
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    rc, output, _ = mpirun("train", out)
    assert rc == 0, output
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    return out, result, output


def _load(out, name):
    a, b = (np.load(out / f"{name}.rank{r}.npz") for r in (0, 1))
    return {k: a[k] for k in a.files}, {k: b[k] for k in b.files}


@needs_mpi
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype, opt", [("float64", "sgd"), ("float32", "adam")])
def test_two_processes_equal_one_process_with_the_global_batch(trained, device, dtype, opt):
    out, result, _ = trained
    assert result["world"] == 2
    r0, r1 = _load(out, f"trainer-{device}-{dtype}-{opt}")
    for key in r0:  # the replicas are identical, bit for bit, and so are their (global) histories
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)
    # one process, batch 20 = the 2 x 10 of the ranks (and the last batch of 3 = 2 + 1, weighted)
    net = W.build(device, dtype, seed=7)
    h = gpunn.Trainer(net, W.make_optimizer(opt), epochs=2, batch_size=W.BATCH, seed=3, progress=False).fit(
        *W.data(), validation_data=W.data(1)
    )
    assert result["steps"][f"{device}-{dtype}-{opt}"] == 12 == len(h["iter_loss"])
    rtol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(r0["params"], to_numpy(net.params.flat), rtol=rtol, atol=rtol * 1e-2)
    for key in ("iter_loss", "loss", "acc", "val_loss", "val_acc"):
        np.testing.assert_allclose(r0[key], h[key], rtol=rtol, atol=1e-12, err_msg=key)


@needs_mpi
def test_hand_written_loop_with_sampler_and_allreduce(trained):
    out, _, _ = trained
    r0, r1 = _load(out, "manual")
    np.testing.assert_array_equal(r0["params"], r1["params"])
    net, opt = W.build("cpu", "float64", seed=7), gpunn.optim.SGD(lr=0.1)
    x, t = W.data()
    order = np.random.default_rng(3)
    for _ in range(2):
        perm = order.permutation(W.N)
        for s in range(0, W.N - W.BATCH + 1, W.BATCH):  # drop_last
            idx = perm[s : s + W.BATCH]
            opt.update(net.params, net.gradient(x[idx], t[idx]))
    np.testing.assert_allclose(r0["params"], net.params.flat, rtol=1e-10, atol=1e-13)


@needs_mpi
def test_shards_of_an_epoch_are_disjoint_and_cover_the_data(trained):
    out, _, _ = trained
    r0, r1 = _load(out, "cover")
    steps = len(r0)
    assert steps == len(r1) == -(-W.N // W.BATCH)
    perm = np.random.default_rng(3).permutation(W.N)  # the Trainer's first epoch with seed=3
    for i in range(steps):
        a, b = r0[f"shard{i}"], r1[f"shard{i}"]
        assert not set(a) & set(b)
        np.testing.assert_array_equal(np.concatenate([a, b]), perm[i * W.BATCH : (i + 1) * W.BATCH])
    everything = np.concatenate([r[f"shard{i}"] for r in (r0, r1) for i in range(steps)])
    assert sorted(everything) == list(range(W.N))


@needs_mpi
def test_only_rank_0_prints_and_writes_checkpoints(trained):
    out, result, output = trained
    # verbose=True on both ranks: each epoch line once per run (4 runs of 2 epochs)
    assert sum(line.startswith("epoch 1/2:") for line in output.splitlines()) == 4
    assert len(list(out.glob("ckpt-*.rank0.npz"))) == 4 and not list(out.glob("ckpt-*.rank1.npz"))
    meta = gpunn.checkpoint.read_metadata(out / "ckpt-cpu-float64.rank0.npz")
    assert meta["trainer"]["step"] == 12


@needs_mpi
def test_batchnorm_replicas_stay_identical_and_bad_batch_sizes_are_refused(trained):
    out, result, _ = trained
    r0, r1 = _load(out, "batchnorm")
    for key in r0:
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)
    assert "split over 2 ranks gives a batch of 1 example" in result["errors"]["batchnorm"]
    assert "is the global batch" in result["errors"]["batch_size"]


@needs_mpi
def test_a_failed_rank_makes_the_others_time_out(tmp_path):
    """Rank 1 raises before the allreduce of step 3 and its process ends (no abort hook): rank 0 must
    not wait forever but raise DistributedTimeoutError (timeout 2 s) naming the collective and step."""
    rc, output, seconds = mpirun("timeout", tmp_path, dist_timeout=2)
    assert rc != 0
    assert "RuntimeError: simulated failure on rank 1" in output
    assert "CAUGHT DistributedTimeoutError collective=allreduce_mean(gradients) step=3" in output
    assert "allreduce_mean(gradients) at step 3 did not complete within 2 s on rank 0 of 2" in output
    assert seconds < 30


@needs_mpi
def test_a_hung_rank_times_out_and_the_job_is_aborted(tmp_path):
    """Rank 1 sleeps 600 s before a collective: rank 0 times out, its uncaught error aborts the whole
    job, the sleeping rank included."""
    rc, output, seconds = mpirun("hang", tmp_path, dist_timeout=2)
    assert rc != 0
    assert "DistributedTimeoutError: gpunn.distributed: allreduce_mean(gradients) at step 3" in output
    assert "aborting the MPI job" in output
    assert seconds < 30


@needs_mpi
def test_an_uncaught_error_aborts_the_job_at_once(tmp_path):
    rc, output, seconds = mpirun("abort", tmp_path, dist_timeout=120)
    assert rc != 0
    assert "RuntimeError: simulated failure on rank 1" in output
    assert "rank 1 of 2 stopped with an uncaught RuntimeError; aborting the MPI job" in output
    assert seconds < 60  # not the 120 s timeout: the abort ended the job


@needs_mpi
def test_ranks_that_disagree_on_the_run_are_refused(tmp_path):
    rc, output, _ = mpirun("mismatch", tmp_path)
    assert rc != 0
    assert "the ranks disagree on the data-order seed" in output


@needs_mpi
@pytest.mark.parametrize(
    "what, named",
    [
        ("lr", r"the optimizer and its hyper-parameters .*rank 1 has SGD\(lr=0.5, weight_decay=0.0\)"),
        ("optimizer", r"the optimizer and its hyper-parameters .*rank 1 has Momentum\(lr=0.1, momentum=0.9"),
        ("activation", r"the model configuration .*rank 1 has .*\"activation\": \[\"relu\", \"relu\"\]"),
        ("data", r"the training data \(checksum of every value of x and t\)"),
        ("dtype", r"the model's dtype \(bytes per value\) \(rank 0: 4, rank 1: 8; rank 1 has float64\)"),
    ],
)
def test_ranks_that_disagree_stop_with_an_error_naming_what_differs(tmp_path, what, named):
    """Issue 15 item 1: only 16 sampled rows and a few counts were compared; the optimizer, its
    hyper-parameters, the model's configuration and the rest of the data trained silently apart."""
    rc, output, _ = mpirun(f"disagree:{what}", tmp_path)
    assert rc != 0
    assert re.search("the ranks disagree on " + named, output), output


@needs_mpi
def test_checkpoint_path_on_rank_0_only_is_rank_0s_job(tmp_path):
    """Issue 15 item 2: the other rank, without a checkpoint_path, must still take part in the
    collectives of rank 0's checkpoint schedule."""
    rc, output, _ = mpirun("ckpt_rank0", tmp_path)
    assert rc == 0, output
    results = sorted(line for line in output.splitlines() if line.startswith("RESULT "))
    assert results == [f"RESULT rank={r} step=12 interrupted=False losses=12" for r in (0, 1)], output
    assert gpunn.checkpoint.read_metadata(tmp_path / "run.npz")["trainer"]["step"] == 12


@needs_mpi
def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    rc, output, _ = mpirun("interrupt", tmp_path)
    assert rc == 0, output
    results = sorted(line for line in output.splitlines() if line.startswith("RESULT "))
    assert results == [f"RESULT rank={r} step=4 interrupted=True losses=4" for r in (0, 1)]
    assert output.count("gpunn: training interrupted at step 4") == 1  # rank 0 only


@needs_mpi
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    rc, output, _ = mpirun("diverge", tmp_path)
    assert rc == 0, output
    caught = sorted(line for line in output.splitlines() if line.startswith("CAUGHT "))
    assert len(caught) == 2, output
    assert caught[0].startswith("CAUGHT rank=0 step=3 quantity=grads['W")  # poisoned through the allreduce
    assert caught[1].startswith("CAUGHT rank=1 step=3 quantity=loss steps_done=2 losses=2")
    assert "rank 1 of 2: the gradients are averaged over the ranks" in caught[1]
    assert "steps_done=2 losses=2" in caught[0]
    assert (tmp_path / "run.failed.npz").exists()  # rank 0 wrote the failing state; run.npz kept
    assert gpunn.checkpoint.read_metadata(tmp_path / "run.npz")["trainer"]["step"] == 2


@needs_mpi
def test_example_runs_on_two_processes(tmp_path, mnist_dir):
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    example = ROOT / "examples" / "mnist_data_parallel.py"
    proc = subprocess.run(
        [
            MPIEXEC,
            "-n",
            "2",
            sys.executable,
            str(example),
            "--device",
            "cpu",
            "--data-dir",
            str(mnist_dir),
            "--epochs",
            "1",
            "--limit",
            "2000",
            "--no-progress",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test accuracy") == 1  # printed by rank 0 only
    assert "2 processes" in proc.stdout


# --------------------------------------------------------------------------------------------------
# one process, no MPI
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def single():
    dist.shutdown()
    yield dist.init()
    dist.shutdown()


def test_without_a_launcher_there_is_one_rank_and_no_mpi(single):
    assert not dist.launched_by_mpi()
    assert (single.rank, single.world_size, single.local_rank, single.is_main) == (0, 1, 0, True)
    assert single.comm is None and dist.world_size() == 1 and dist.rank() == 0
    buf = np.arange(4.0)
    assert dist.allreduce_mean(buf) is buf and list(buf) == [0, 1, 2, 3]
    dist.barrier()
    code = "import sys, gpunn, gpunn.distributed as d; d.init(); print('mpi4py' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in dist._LAUNCHER_VARS}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_distributed_with_one_process_is_plain_training(single, dev):
    x, t = W.data()
    histories, params = [], []
    for distributed in (False, True):
        net = W.build(dev, "float32", seed=7)
        tr = gpunn.Trainer(
            net,
            gpunn.optim.Adam(lr=0.01),
            epochs=2,
            batch_size=W.BATCH,
            seed=3,
            progress=False,
            distributed=distributed,
        )
        histories.append(tr.fit(x, t, validation_data=W.data(1)))
        params.append(to_numpy(net.params.flat))
    assert tr.distributed is single
    np.testing.assert_array_equal(params[0], params[1])
    for key in ("iter_loss", "loss", "acc", "val_loss", "val_acc"):
        assert histories[0][key] == histories[1][key], key


def test_trainer_rejects_a_bad_distributed_argument():
    with pytest.raises(TypeError, match="distributed must be True, False or a gpunn.distributed.Context"):
        gpunn.Trainer(W.build("cpu"), gpunn.optim.SGD(lr=0.1), distributed="yes")


@pytest.mark.parametrize("m, world", [(0, 1), (1, 2), (3, 2), (10, 4), (20, 2), (7, 7), (5, 8)])
def test_shard_bounds_split_a_batch_into_near_equal_disjoint_parts(m, world):
    bounds = [dist.shard_bounds(m, r, world) for r in range(world)]
    sizes = [hi - lo for lo, hi in bounds]
    assert sizes == dist.shard_sizes(m, world) and sum(sizes) == m
    assert max(sizes) - min(sizes) <= 1
    assert bounds[0][0] == 0 and bounds[-1][1] == m
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    with pytest.raises(ValueError):
        dist.shard_bounds(m, world, world)


@pytest.mark.parametrize(
    "n, bs, world, drop_last", [(103, 20, 2, False), (103, 20, 3, True), (10, 4, 4, False), (7, 7, 2, False)]
)
def test_sampler_shards_are_disjoint_cover_each_batch_and_follow_the_trainer_order(n, bs, world, drop_last):
    samplers = [
        dist.ShardedSampler(n, bs, seed=5, rank=r, world_size=world, drop_last=drop_last)
        for r in range(world)
    ]
    rng = np.random.default_rng(5)  # the Trainer's data-order generator for seed=5
    for _ in range(3):  # epochs: a new permutation each, the same on every rank
        perm = rng.permutation(n)
        parts = [list(s) for s in samplers]
        assert all(len(p) == len(samplers[0]) for p in parts)
        batches = samplers[0].global_batches(perm)
        assert len(batches) == len(samplers[0]) == (n // bs if drop_last else -(-n // bs))
        for step, batch in enumerate(batches):
            joined = np.concatenate([p[step] for p in parts])
            np.testing.assert_array_equal(joined, batch)
        seen = np.concatenate([np.concatenate(p) for p in parts])
        assert len(set(seen)) == len(seen) == (n // bs * bs if drop_last else n)


def test_sampler_defaults_to_the_context_and_checks_its_arguments(single):
    s = dist.ShardedSampler(10, 3)
    assert (s.rank, s.world_size) == (0, 1)
    assert sorted(np.concatenate(list(s))) == list(range(10))
    for bad in ({"n": 0, "batch_size": 3}, {"n": 5, "batch_size": 0}):
        with pytest.raises(ValueError):
            dist.ShardedSampler(**bad)
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        dist.ShardedSampler(10, 3, rank=2, world_size=2)


def test_rank_seeds_differ_per_rank_and_repeat(single):
    seeds = [dist.rank_seed(0, r) for r in range(4)]
    assert len(set(seeds)) == 4 and seeds == [dist.rank_seed(0, r) for r in range(4)]
    assert dist.rank_seed(0) == seeds[0] and dist.rank_seed(1, 0) != seeds[0]
    gpunn.MLP(4, [3], 2, seed=dist.rank_seed(0))  # a valid model seed


def test_local_device(single):
    assert dist.local_device("cuda") == "cuda:0" and dist.local_device("GPU") == "cuda:0"
    assert dist.local_device("cpu") == "cpu" and dist.local_device("cuda:1") == "cuda:1"


def test_timeout_configuration(monkeypatch):
    monkeypatch.delenv(dist.ENV_TIMEOUT, raising=False)
    assert dist.Context().timeout == dist.DEFAULT_TIMEOUT == 300
    monkeypatch.setenv(dist.ENV_TIMEOUT, "12.5")
    assert dist.Context().timeout == 12.5
    assert dist.Context(timeout=3).timeout == 3.0
    monkeypatch.setenv(dist.ENV_TIMEOUT, "0")
    assert dist.Context().timeout is None  # 0: wait forever
    monkeypatch.setenv(dist.ENV_TIMEOUT, "soon")
    with pytest.raises(ValueError, match="GPUNN_DIST_TIMEOUT"):
        dist.Context()
    for bad in (-1, "3", float("nan"), True):
        with pytest.raises(ValueError, match="timeout"):
            dist.Context(timeout=bad)
    with pytest.raises(ValueError, match="backend"):
        dist.Context(timeout=1, backend="gloo")


def test_a_collective_past_its_deadline_raises_a_clear_error():
    ctx = dist.Context(timeout=0.05)
    start = time.monotonic()
    with pytest.raises(dist.DistributedTimeoutError) as info:
        ctx._poll(lambda: False, "allreduce_mean(gradients)", 7)
    assert 0.05 <= time.monotonic() - start < 5
    e = info.value
    assert (e.collective, e.step, e.rank, e.timeout) == ("allreduce_mean(gradients)", 7, 0, 0.05)
    assert isinstance(e, TimeoutError) and isinstance(e, dist.DistributedError)
    assert "allreduce_mean(gradients) at step 7 did not complete within 0.05 s on rank 0 of 1" in str(e)
    assert "GPUNN_DIST_TIMEOUT" in str(e)
    assert ctx.broken is not None
    with pytest.raises(dist.DistributedError, match="unusable"):
        ctx._check_usable("allreduce_mean(gradients)")


def test_missing_nccl_is_a_clear_error():
    class NoNccl:  # an array library without cuda.nccl
        __name__ = "gpunn_test_no_such_array_library"

    with pytest.raises(dist.DistributedError, match="NCCL is not available.*backend='mpi'"):
        dist._nccl_module(NoNccl())


def test_allreduce_checks_its_buffer():
    ctx = dist.Context(timeout=1)
    ctx.world_size = 2  # pretend: the checks come before any communication
    with pytest.raises(TypeError, match="1-D"):
        ctx.allreduce_mean(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        ctx.allreduce_mean(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        ctx.allreduce_mean(np.zeros(6)[::2])
