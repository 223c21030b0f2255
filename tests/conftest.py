"""Test configuration: which devices the suite runs on.

* Default (no GPU needed): every device-parametrised test runs on "cpu" and on "cuda" through
  Numba's CUDA simulator (NumPy arrays stand in for device arrays, the real CUDA kernels run in the
  simulator).  ``NUMBA_ENABLE_CUDASIM=1`` is set here, before anything imports numba.
* ``GPUNN_TEST_DEVICE=cuda``: the same tests run on the real GPU (no simulator), strictly: a
  missing GPU is an error, not a fallback.
* ``GPUNN_REPRODUCIBLE=1``: GEMM thread counts follow shapes only, not the machine's load.
* The argument types of every CUDA kernel launch of the session are recorded
  (``gpunn.kernels.record_signatures``), and ``test_cuda_compile.py`` -- the real-compiler gate,
  which compiles them all -- runs last.
"""

import os

# GEMM thread counts by shape only (gpunn.cpu_threads.set_reproducible): the suite compares runs bit
# for bit, which must not depend on the machine's load; subprocesses inherit it
os.environ.setdefault("GPUNN_REPRODUCIBLE", "1")

REAL_GPU = os.environ.get("GPUNN_TEST_DEVICE", "").lower() == "cuda"
if not REAL_GPU:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest  # noqa: E402

DEVICES = ["cpu", "cuda"]

GATE = "test_cuda_compile.py"
"""The real-compiler gate: it compiles what every other test launched, so it runs last."""


def pytest_configure(config):
    """Record the argument types of every CUDA launch from the start of the session."""
    import gpunn.kernels

    gpunn.kernels.record_signatures()


def pytest_collection_modifyitems(session, config, items):
    """Move the tests of the real-compiler gate (``GATE``) to the end, in their own order."""
    gate = [item for item in items if item.path.name == GATE]
    items[:] = [item for item in items if item.path.name != GATE] + gate


@pytest.fixture(params=DEVICES)
def dev(request):
    """A gpunn Device: the CPU, then CUDA (real with GPUNN_TEST_DEVICE=cuda, else simulated)."""
    import gpunn

    return gpunn.device(request.param, strict=True)


@pytest.fixture(scope="session")
def mnist_dir():
    """The shared real MNIST test set (10,000 digits): $GPUNN_DATA/mnist or ../shared/data/mnist."""
    from pathlib import Path

    candidates = []
    if os.environ.get("GPUNN_DATA"):
        candidates += [Path(os.environ["GPUNN_DATA"]) / "mnist", Path(os.environ["GPUNN_DATA"])]
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
    for c in candidates:
        if (c / "t10k-images-idx3-ubyte.gz").exists() or (c / "t10k-images-idx3-ubyte").exists():
            return c
    pytest.skip(f"MNIST test set not found in {[str(c) for c in candidates]}")


def to_numpy(a):
    import gpunn

    return gpunn.Device.to_numpy(a)
