"""Row-chunk parallelism for CPU kernels on gpunn's own helper threads.

:func:`run_chunks` runs one ``nogil`` Numba function on several argument tuples at once: the first
on the calling thread, the others on persistent helper threads (created on first use, one per extra
chunk), and returns when all are done.  Numba releases the GIL inside a ``nogil`` function, so the
chunks really run in parallel.

Why not ``prange``: under Numba's ``workqueue`` threading layer (gpunn's default, see
``kernels/__init__.py``) idle workers poll with 1 µs naps, which Linux rounds up to its ~50 µs timer
slack, so each parallel region pays 80-120 µs to start and finish, and a kernel with two regions
ran *slower* on 2 threads than on one (BatchNorm 4096×1024 forward + backward, medians on the
2-core development VM: serial 5.9 ms, ``prange`` 9.1 ms in one run; serial 8.9 ms, ``prange``
8.0 ms, these threads 5.5 ms in a noisier one).

Hand-off: waking a thread that sleeps on a futex took 60-90 µs on the development VM (a vCPU that
went idle has to be woken by the hypervisor), twice per call (the helper's start, the caller's
wait for it), even with no gap between calls.  So both sides first *spin* on a shared sequence
number -- atomic loads and the CPU's pause instruction, inside a ``nogil`` Numba loop, so the
spinning thread holds no GIL -- for ``SPINS`` iterations (~110 µs here), and only then sleep
on a semaphore.  A sleeper announces itself in a flag before its last check, and the side that
publishes a sequence number releases the semaphore when it sees that flag (both accesses
sequentially consistent: one of the two always sees the other), so no wake-up is lost; a spare
release only costs the next wait one more loop.  Back-to-back calls (BatchNorm's two passes per
direction, merged on the caller in between) then hand off in ~16 µs (median; 7 µs at best)
instead of ~75 µs; after a pause longer than the spin, the first call still pays a wake-up.

Spinning happens only while the process has a core to spare (:func:`gpunn.cpu_threads.budget` ≥ 2;
otherwise a waiting side sleeps at once), so a helper never spins against another process's work.
Calls from several Python threads do not wait for each other: one holds the helpers, the others run
all their chunks on their own thread meanwhile (chunked kernels give the same results either way;
an exception then stops at the failing chunk).  A forked child starts with no helpers.
A helper runs on every CPU the process had when this module was imported: a thread inherits its
creator's CPU mask, and an OpenMP runtime with ``OMP_PROC_BIND`` set (PyTorch's, Numba's ``omp``
layer) pins the main thread to one CPU, which put both chunks on that CPU (BatchNorm 4096×1024 took
7.6-9.8 ms instead of 3.6-4.7 ms next to torch in one process).
"""

from __future__ import annotations

import os
import threading

from numba import njit

from ..backend import host_xp
from ..cpu_threads import budget
from .intrinsics import atomic_load, atomic_store, spin_pause

_CPUS = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
"""The CPUs this process may use, read at import (before an OpenMP runtime binds the main thread)."""

SPINS = 4096
"""Spin iterations (an atomic load and a PAUSE) a waiting thread runs through before it sleeps:
~110 µs on the development VM's AMD EPYC."""

POSTED, DONE, HELPER_SLEEPS, CALLER_SLEEPS = 0, 1, 2, 3
"""Slots of a helper's flag array: the last job posted / finished (sequence numbers), and who sleeps."""


@njit(nogil=True, cache=True)
def _spin_until(flags, slot, value, spins):
    """Whether flags[slot] reached ``value`` within ``spins`` pauses (the GIL released meanwhile)."""
    for _ in range(spins):
        if atomic_load(flags, slot) >= value:
            return True
        spin_pause()
    return atomic_load(flags, slot) >= value


@njit(nogil=True, cache=True)
def _get(flags, slot):
    return atomic_load(flags, slot)


@njit(nogil=True, cache=True)
def _set(flags, slot, value):
    atomic_store(flags, slot, value)


def _spins() -> int:
    """``SPINS`` while this process has a core to spare (:func:`gpunn.cpu_threads.budget` ≥ 2), else 0:
    no spinning against a core another process keeps busy."""
    return SPINS if budget() >= 2 else 0


def _wait(flags, slot, value, sleeps_slot, sem):
    """Return once flags[slot] ≥ ``value``: spin, then sleep on ``sem`` (see the module docstring)."""
    while not _spin_until(flags, slot, value, _spins()):
        _set(flags, sleeps_slot, 1)
        if _get(flags, slot) < value:
            sem.acquire()
        _set(flags, sleeps_slot, 0)


def _publish(flags, slot, value, sleeps_slot, sem):
    """flags[slot] = ``value``, and wake the other side if it sleeps."""
    _set(flags, slot, value)
    if _get(flags, sleeps_slot):
        sem.release()


class _Helper(threading.Thread):
    def __init__(self):
        super().__init__(name="gpunn-kernel-helper", daemon=True)
        self.flags = host_xp().zeros(8, dtype="int64")
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.posted = 0  # the caller's count of jobs posted (only the caller touches it)
        self.job = None
        self.error: BaseException | None = None
        self.start()

    def run(self):
        if _CPUS is not None:
            try:
                os.sched_setaffinity(0, _CPUS)  # 0: this thread
            except OSError:
                pass  # CPUs taken away since import: keep the inherited mask
        seq = 0
        while True:
            seq += 1
            _wait(self.flags, POSTED, seq, HELPER_SLEEPS, self.go)
            fn, args = self.job
            try:
                fn(*args)
            except BaseException as e:  # handed to the caller in run_chunks
                self.error = e
            self.job = None
            _publish(self.flags, DONE, seq, CALLER_SLEEPS, self.done)

    def post(self, fn, args):
        self.job = (fn, args)
        self.posted += 1
        _publish(self.flags, POSTED, self.posted, HELPER_SLEEPS, self.go)

    def join_job(self):
        _wait(self.flags, DONE, self.posted, CALLER_SLEEPS, self.done)


_helpers: list[_Helper] = []
_lock = threading.Lock()


def _forget_helpers():
    global _lock
    _helpers.clear()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def run_chunks(fn, jobs) -> None:
    """Call ``fn(*args)`` for every ``args`` in ``jobs``, concurrently; return when all have finished.

    ``fn`` should be a ``nogil`` Numba function (a GIL-holding one is correct, just serial).  The
    first job runs on the caller's thread.  An exception in any job is re-raised here after all
    jobs have ended, so no helper is still writing into the caller's arrays.  While another Python
    thread is in here, every job runs on the caller's thread, in order."""
    jobs = list(jobs)
    if len(jobs) == 1:
        fn(*jobs[0])
        return
    if not _lock.acquire(blocking=False):
        for args in jobs:  # another Python thread has the helpers: run every chunk here, in order
            fn(*args)
        return
    try:
        while len(_helpers) < len(jobs) - 1:
            _helpers.append(_Helper())
        posted = _helpers[: len(jobs) - 1]
        for h, args in zip(posted, jobs[1:], strict=True):
            h.post(fn, args)
        try:
            fn(*jobs[0])
        finally:
            for h in posted:
                h.join_job()
        for h in posted:
            if h.error is not None:
                err, h.error = h.error, None
                raise err
    finally:
        _lock.release()
