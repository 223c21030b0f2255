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
8.0 ms, these threads 5.5 ms in a noisier one).  A
helper here sleeps on a semaphore (a futex) and wakes when its chunk is posted.

Calls from several Python threads are serialised by a lock; a forked child starts with no helpers.
A helper runs on every CPU the process had when this module was imported: a thread inherits its
creator's CPU mask, and an OpenMP runtime with ``OMP_PROC_BIND`` set (PyTorch's, Numba's ``omp``
layer) pins the main thread to one CPU, which put both chunks on that CPU (BatchNorm 4096×1024 took
7.6-9.8 ms instead of 3.6-4.7 ms next to torch in one process).
"""

from __future__ import annotations

import os
import threading

_CPUS = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
"""The CPUs this process may use, read at import (before an OpenMP runtime binds the main thread)."""


class _Helper(threading.Thread):
    def __init__(self):
        super().__init__(name="gpunn-kernel-helper", daemon=True)
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.job = None
        self.error: BaseException | None = None
        self.start()

    def run(self):
        if _CPUS is not None:
            try:
                os.sched_setaffinity(0, _CPUS)  # 0: this thread
            except OSError:
                pass  # CPUs taken away since import: keep the inherited mask
        while True:
            self.go.acquire()
            fn, args = self.job
            try:
                fn(*args)
            except BaseException as e:  # handed to the caller in run_chunks
                self.error = e
            self.job = None
            self.done.release()


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
    jobs have ended, so no helper is still writing into the caller's arrays."""
    jobs = list(jobs)
    if len(jobs) == 1:
        fn(*jobs[0])
        return
    with _lock:
        while len(_helpers) < len(jobs) - 1:
            _helpers.append(_Helper())
        posted = _helpers[: len(jobs) - 1]
        for h, args in zip(posted, jobs[1:], strict=True):
            h.job = (fn, args)
            h.go.release()
        try:
            fn(*jobs[0])
        finally:
            for h in posted:
                h.done.acquire()
        for h in posted:
            if h.error is not None:
                err, h.error = h.error, None
                raise err
