"""The CUDA kernels' on-disk cache and gpunn's launch configuration, checked without a GPU.

* Every ``@cuda.jit`` kernel in ``kernels/*_cuda.py`` has ``cache=True`` (device functions are
  compiled into each calling kernel, whose cache entry holds them): read from the source, and from
  numba-cuda's real dispatchers (a subprocess without the simulator: the simulator ignores
  ``cache``), which must carry a ``CUDACache``.
* :func:`gpunn.kernels.launch` configures its launches without numba-cuda's low-occupancy
  ``NumbaPerformanceWarning`` (gpunn's grids are as small as their work), while a kernel of the
  user's still warns.  numba-cuda builds a real launch configuration without a driver, so this runs
  in a subprocess with the simulator off; only the launch itself is replaced by a recorder.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
CUDA_FILES = sorted(KERNELS.glob("*_cuda.py"))


def _is_cuda_jit(node) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "jit"
        and isinstance(target.value, ast.Name)
        and target.value.id == "cuda"
    )


def decorated(path: Path) -> dict[str, dict]:
    """``{function name: {keyword: literal value}}`` of every ``@cuda.jit``-decorated function."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            if _is_cuda_jit(dec):
                kws = dec.keywords if isinstance(dec, ast.Call) else []
                out[node.name] = {k.arg: ast.literal_eval(k.value) for k in kws}
    return out


def source_kernels() -> dict[str, dict]:
    """``{"topic.name": keywords}`` of the kernels (not device functions) of every ``*_cuda.py``."""
    out = {}
    for path in CUDA_FILES:
        topic = path.stem.removesuffix("_cuda")
        for name, kws in decorated(path).items():
            if not kws.get("device", False):
                out[f"{topic}.{name}"] = kws
    return out


def run_without_simulator(script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=str(Path(__file__).parent),
    )  # not the root: its gpunn/ would
    # shadow an installed gpunn (the source tree has no gpunn/kernels/)


def test_every_kernel_is_cached_in_the_source():
    kernels = source_kernels()
    assert len(CUDA_FILES) >= 4 and len(kernels) >= 15, (CUDA_FILES, kernels)
    missing = sorted(k for k, kws in kernels.items() if kws.get("cache") is not True)
    assert not missing, f"@cuda.jit kernels without cache=True: {missing}"


def test_decorator_reader_sees_a_missing_cache(tmp_path):
    src = tmp_path / "x_cuda.py"
    src.write_text(
        "from numba import cuda\n\n@cuda.jit\ndef k(a):\n    pass\n\n"
        "@cuda.jit(cache=True)\ndef c(a):\n    pass\n\n"
        "@cuda.jit(device=True)\ndef d(a):\n    return a\n"
    )
    assert decorated(src) == {"k": {}, "c": {"cache": True}, "d": {"device": True}}


DISPATCHERS = r"""
import json, pathlib
from numba.cuda.dispatcher import CUDADispatcher
from gpunn import kernels
out = {}
for path in sorted(pathlib.Path(kernels.__file__).parent.glob("*_cuda.py")):
    topic = path.stem[:-len("_cuda")]
    module = kernels._module(topic, True)
    for name, obj in vars(module).items():
        if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device"):
            out[f"{topic}.{name}"] = type(obj._cache).__name__
print(json.dumps(out))
"""


def test_every_kernel_dispatcher_has_a_disk_cache():
    proc = run_without_simulator(DISPATCHERS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    caches = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(caches) == set(source_kernels()), "the dispatchers found differ from the source's kernels"
    assert set(caches.values()) == {"CUDACache"}, caches


OCCUPANCY = r"""
import json, warnings
from numba import cuda
from numba.cuda.core import config
from numba.cuda.core.errors import NumbaPerformanceWarning  # numba-cuda's own class, not numba.core's
from gpunn import kernels

real = kernels.cuda_kernel("optim", "sgd")
launched = []

class Recorder:
    # stands in for the kernel: configuring is numba-cuda's own, the launch is only recorded
    def __getitem__(self, cfg):
        lc = real[cfg]
        return lambda *args: launched.append([list(lc.griddim), list(lc.blockdim), type(lc).__name__])

class Device:
    simulated = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

kernels.cuda_kernel = lambda topic, name: Recorder()
kernels.stream = lambda dev: 0

def perf_warnings(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn()
    return [str(x.message) for x in w if issubclass(x.category, NumbaPerformanceWarning)]

out = {"switch_before": config.CUDA_LOW_OCCUPANCY_WARNINGS}
out["gpunn"] = perf_warnings(lambda: [kernels.launch(Device(), "optim", "sgd", grid, 1.0)
                                      for grid in ((1, 256), (4, 256), (3, (32, 8)), (127, 32))])
out["launched"] = launched
out["switch_after"] = config.CUDA_LOW_OCCUPANCY_WARNINGS

@cuda.jit
def users_kernel(a):
    pass

out["user"] = perf_warnings(lambda: users_kernel[2, 32])
out["same_kernel_direct"] = perf_warnings(lambda: real[5, 64])
print(json.dumps(out))
"""


def test_gpunn_launches_do_not_warn_about_occupancy_but_user_kernels_do():
    proc = run_without_simulator(OCCUPANCY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["launched"] == [
        [[1, 1, 1], [256, 1, 1], "_LaunchConfiguration"],
        [[4, 1, 1], [256, 1, 1], "_LaunchConfiguration"],
        [[3, 1, 1], [32, 8, 1], "_LaunchConfiguration"],
        [[127, 1, 1], [32, 1, 1], "_LaunchConfiguration"],
    ]
    assert out["gpunn"] == [], out["gpunn"]
    assert out["switch_before"] == out["switch_after"] == 1
    # the switch is back on: the user's kernels, and gpunn's kernel configured directly, still warn
    assert len(out["user"]) == 1 and "Grid size 2" in out["user"][0], out["user"]
    assert len(out["same_kernel_direct"]) == 1 and "Grid size 5" in out["same_kernel_direct"][0]


def test_configure_restores_the_switch_when_configuring_fails(monkeypatch):
    from numba.cuda.core import config

    from gpunn import kernels

    class Broken:
        def __getitem__(self, cfg):
            assert config.CUDA_LOW_OCCUPANCY_WARNINGS == 0
            raise ValueError("bad grid")

    monkeypatch.setattr(config, "CUDA_LOW_OCCUPANCY_WARNINGS", 1)
    with pytest.raises(ValueError, match="bad grid"):
        kernels.configure(Broken(), 1, 32, 0)
    assert config.CUDA_LOW_OCCUPANCY_WARNINGS == 1
