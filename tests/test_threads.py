"""gpunn.kernels.threads.run_chunks: every job runs once, errors come back after all jobs end, and
helpers are not stuck on the CPU an OpenMP runtime pinned the main thread to."""

import os
import threading
import time

import pytest
from gpunn.kernels import threads


def test_every_job_runs_once_on_distinct_threads():
    seen = []
    lock = threading.Lock()

    def job(i):
        with lock:
            seen.append((i, threading.get_ident()))

    for n in (1, 2, 3):
        seen.clear()
        threads.run_chunks(job, [(i,) for i in range(n)])
        assert sorted(i for i, _ in seen) == list(range(n))
        assert len({t for _, t in seen}) == n
        assert dict(seen)[0] == threading.get_ident()  # the first job runs on the caller


def test_a_helper_error_is_raised_after_every_job_has_ended():
    finished = []

    def job(i):
        if i == 1:
            raise ValueError("chunk 1 failed")
        time.sleep(0.05)
        finished.append(i)

    with pytest.raises(ValueError, match="chunk 1 failed"):
        threads.run_chunks(job, [(0,), (1,), (2,)])
    assert sorted(finished) == [0, 2]
    threads.run_chunks(job, [(0,), (2,)])  # the pool still works afterwards
    assert sorted(finished) == [0, 0, 2, 2]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_helpers_use_every_cpu_even_when_the_caller_is_pinned():
    allowed = os.sched_getaffinity(0)
    masks = []

    def job():
        masks.append(os.sched_getaffinity(0))

    threads._forget_helpers()  # new helpers are created by a pinned caller
    os.sched_setaffinity(0, {min(allowed)})
    try:
        threads.run_chunks(job, [(), ()])
    finally:
        os.sched_setaffinity(0, allowed)
    assert masks[0] == {min(allowed)} or masks[1] == {min(allowed)}  # the caller's own job
    assert allowed in masks


def test_hand_off_spins_then_sleeps_without_losing_a_job():
    """Both waits of the hand-off: back-to-back calls (the helper still spinning), calls after a
    pause longer than the spin (the helper asleep on its semaphore), and a helper job that outlasts
    the caller's spin (the caller asleep): every job runs exactly once, in order."""
    counts = [0, 0]

    def job(i, delay):
        time.sleep(delay)
        counts[i] += 1

    calls = 0
    for gap, slow in [(0, 0), (0.002, 0), (0, 0.005), (0.002, 0.005)] * 5:
        time.sleep(gap)
        threads.run_chunks(job, [(0, 0), (1, slow)])
        calls += 1
        assert counts == [calls, calls]
    h = threads._helpers[0]
    assert threads._get(h.flags, threads.DONE) == threads._get(h.flags, threads.POSTED) == h.posted
