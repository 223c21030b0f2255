import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpunn
from gpunn import backend


def test_cpu_device_basics():
    d = gpunn.device("cpu")
    assert d is gpunn.device("CPU") and d.kind == "cpu" and d.xp is np
    a = d.to_device([1, 2, 3], dtype="float32")
    assert a.dtype == np.float32 and a.flags.c_contiguous
    assert isinstance(d.to_numpy(a), np.ndarray)
    assert d.to_device(np.float32(2.0)).shape == ()  # 0-d stays 0-d
    assert d.to_device(np.ones((3, 4))[:, ::2]).flags.c_contiguous
    d.synchronize()
    assert d.host_rng(3).standard_normal(4).tolist() == d.host_rng(3).standard_normal(4).tolist()


def test_default_dtype_is_float32_and_float64_allowed():
    assert gpunn.Device.dtype() == np.float32
    assert gpunn.Device.dtype("float64") == np.float64
    with pytest.raises(ValueError, match="float32 or float64"):
        gpunn.Device.dtype("int32")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cuda:-1", ""])
def test_unknown_device_names(name):
    with pytest.raises(ValueError, match="unknown device"):
        gpunn.device(name)


def test_device_name_type():
    with pytest.raises(TypeError):
        gpunn.device(3)


def test_simulated_cuda_device_in_the_suite():
    d = gpunn.device("cuda:0", strict=True)
    if os.environ.get("GPUNN_TEST_DEVICE") == "cuda":
        assert not d.simulated and d.xp is not np
    else:
        from gpunn import simcupy

        assert d.simulated and d.is_cuda and d.xp is simcupy and d.name == "cuda:0"


def test_scalar_keeps_dtype():
    assert isinstance(gpunn.Device.scalar(0.1, np.float32), np.float32)
    assert isinstance(gpunn.Device.scalar(0.1, "float64"), np.float64)


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "GPUNN_REQUIRE_CUDA")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(os.environ.get("GPUNN_TEST_DEVICE") == "cuda", reason="needs a machine without a GPU")
def test_cuda_falls_back_to_cpu_with_one_warning_without_a_gpu():
    r = _run("""
        import warnings, gpunn
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            a = gpunn.device("cuda"); b = gpunn.device("cuda:1"); c = gpunn.device("auto")
        ws = [x for x in w if issubclass(x.category, gpunn.DeviceFallbackWarning)]
        msgs = [str(x.message) for x in ws]
        print(a.name, b.name, c.name, len(msgs), ws[0].filename)
        print(msgs[0])
    """)
    assert r.returncode == 0, r.stderr
    first, message = r.stdout.splitlines()[:2]
    assert first == "cpu cpu cpu 1 <string>"  # the warning points at the user's line
    assert "Falling back to the CPU" in message and "strict=True" in message


@pytest.mark.skipif(os.environ.get("GPUNN_TEST_DEVICE") == "cuda", reason="needs a machine without a GPU")
@pytest.mark.parametrize("how", ["strict", "env"])
def test_strict_mode_raises_without_a_gpu(how):
    code = "import gpunn\ngpunn.device('cuda'{})".format(", strict=True" if how == "strict" else "")
    r = _run(code, **({"GPUNN_REQUIRE_CUDA": "1"} if how == "env" else {}))
    assert r.returncode != 0 and "DeviceError" in r.stderr and "not usable" in r.stderr


def test_probe_reports_a_reason_without_a_gpu():
    if backend.cuda_available():
        pytest.skip("a real GPU is present")
    reason = backend._probe_cuda(0)
    assert isinstance(reason, str) and reason


def test_owns_distinguishes_arrays():
    d = gpunn.device("cpu")
    assert d.owns(np.zeros(2)) and not d.owns([1.0]) and not d.owns(3.0)
