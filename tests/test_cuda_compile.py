"""The real-compiler gate: every CUDA kernel, compiled by NVVM for every signature it was launched with.

The suite runs the CUDA kernels in Numba's simulator, which never type-checks.  ``conftest.py``
records the argument types of every launch of the session and runs this module last; a short tour of
the public API here adds every launch path of its own (so the gate does not depend on which other
tests ran).  A subprocess without the simulator then compiles each kernel for each recorded signature
with the real compiler (:mod:`gpunn.kernels.compile_check`) for ``CCS``, and fails on a compile
error or on float64 instructions in a float32 kernel (unless its module's ``FLOAT64_INTENDED`` lists
it).  No GPU is needed.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from gpunn.kernels import compile_check, record_signatures

import gpunn
from gpunn.backend import DTYPES
from gpunn.layers import ACTIVATIONS
from gpunn.optim import Optimizer

ROOT = Path(__file__).resolve().parents[1]

CCS = ("9.0", "5.0")
"""Compute capabilities compiled for: 9.0 (H100/H200), and 5.0 (sm_50, Maxwell), the oldest the
README's install line promises: the oldest the NVVM of the CUDA 12 wheels supports (CuPy 13/14
support compute capability 3.0 and newer)."""


def activation_names() -> list[str]:
    """One name per activation class of gpunn's registry (``gpunn.layers.ACTIVATIONS``)."""
    first = {}
    for name, cls in sorted(ACTIVATIONS.items()):
        first.setdefault(cls, name)
    return sorted(first.values())


def optimizer_classes() -> list[type]:
    """Every optimizer gpunn.optim exports (``__all__``) that has an update rule."""
    found = [getattr(gpunn.optim, name) for name in gpunn.optim.__all__]
    return [c for c in found if isinstance(c, type) and issubclass(c, Optimizer) and c.rule]


def tour() -> None:
    """Launch every CUDA kernel through the public API on device "cuda" (simulated, or the real GPU
    under ``GPUNN_TEST_DEVICE=cuda``): per dtype, an MLP with every activation, dropout and weight
    decay, with and without BatchNorm; a training step with class-index and with one-hot targets;
    one update by every optimizer (each of its ``variants``); then prediction and accuracy
    (evaluation mode)."""
    dev = gpunn.device("cuda", strict=True)
    names = activation_names()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    t = np.arange(4) % 2
    for dtype in DTYPES:
        for batchnorm in (False, True):
            net = gpunn.MLP(
                3,
                [2] * len(names),
                2,
                activation=names,
                device=dev,
                dtype=dtype,
                seed=0,
                batchnorm=batchnorm,
                dropout=0.25,
                weight_decay=1e-3,
            )
            for target in (t, np.eye(2)[t]):
                grads = net.gradient(x, target)
            for cls in optimizer_classes():
                for kwargs in cls.variants:  # every form with a kernel of its own
                    cls(weight_decay=1e-3, **kwargs).update(net.params, grads)
            net.predict(x)
            net.accuracy(x, t)


@pytest.fixture(scope="module")
def launched():
    """The signatures of every CUDA launch of the session (recording starts in conftest), tour
    included."""
    tour()
    return set(record_signatures())


def test_the_tour_covers_the_registries():
    # guard against the tour passing vacuously
    assert {"sigmoid", "tanh", "relu", "leaky_relu", "identity"} <= set(activation_names())
    assert set(optimizer_classes()) >= set(gpunn.optim.OPTIMIZERS)


def test_every_cuda_kernel_was_launched(launched):
    kernels = compile_check.cuda_kernels()
    assert {("optim", "adam"), ("batchnorm", "backward"), ("activations", "softmax_xent")} <= set(kernels)
    assert not any(name.startswith("_") for _, name in kernels), "device functions are not kernels"
    missing = sorted(set(kernels) - {(topic, name) for topic, name, _ in launched})
    assert not missing, f"CUDA kernels never launched, so never compile-checked: {missing}"


def test_every_signature_compiles_for_real(launched, tmp_path):
    path = tmp_path / "signatures.json"
    compile_check.save_signatures(launched, path)
    assert compile_check.load_signatures(path) == sorted(launched)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    ccs = [arg for cc in CCS for arg in ("--cc", cc)]
    out = subprocess.run(
        [sys.executable, "-m", "gpunn.kernels.compile_check", str(path), *ccs],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = out.stdout + out.stderr
    print(report)  # the table, for ``pytest -rP``
    assert out.returncode == 0, report
    n_kernels = len({(topic, name) for topic, name, _ in launched})
    for cc in CCS:
        tag = "sm_" + cc.replace(".", "")
        assert f"{tag}: {len(launched)} signatures of {n_kernels} kernels compiled: all ok" in report, report
        # the float64 scan sees the float64 BatchNorm deliberately uses
        assert f"{tag}  ok" in report and "f64 instructions, intended (FLOAT64_INTENDED)" in report, report


def test_the_readme_promises_the_oldest_architecture_checked():
    oldest = "sm_" + min(CCS, key=lambda cc: tuple(map(int, cc.split(".")))).replace(".", "")
    assert oldest in (ROOT / "README.md").read_text()


# -- the checker itself ---------------------------------------------------------------------------
PTX_FLOAT32 = """
// Generated by NVIDIA NVVM Compiler; the f64 in this comment is no instruction: add.f64
.visible .entry k(
\t.param .u64 k_param_0,
\t.param .f64 k_param_1
)
{
\t.reg .f32 \t%f<3>;
\t.reg .f64 \t%fd<2>;
$L__BB0_1:
\tld.param.f32 \t%f1, [k_param_0];   // ld.param.f64 in a comment
\tadd.rn.f32 \t%f2, %f1, %f1;
\tret;
}
"""

PTX_FLOAT64 = """
\tcvt.f64.f32 \t%fd1, %f1;
\t@%p1 fma.rn.f64 \t%fd2, %fd1, %fd1, %fd1;
\tmov.b64 \t%fd3, %rd1;
\tst.shared.f64 \t[%rd2], %fd3;
\tcvt.rn.f32.f64 \t%f2, %fd2;
"""


def test_f64_scan_ignores_comments_and_declarations():
    assert ".f64" in PTX_FLOAT32
    assert compile_check.f64_instructions(PTX_FLOAT32) == []


def test_f64_scan_finds_arithmetic_conversions_moves_and_memory():
    found = compile_check.f64_instructions(PTX_FLOAT32 + PTX_FLOAT64)
    assert found == [
        "cvt.f64.f32 %fd1, %f1",
        "fma.rn.f64 %fd2, %fd1, %fd1, %fd1",
        "mov.b64 %fd3, %rd1",
        "st.shared.f64 [%rd2], %fd3",
        "cvt.rn.f32.f64 %f2, %fd2",
    ]


def test_signature_records_become_numba_types():
    args = (("array", "float32", 2, "C"), ("array", "int64", 1, "A"), ("scalar", "uint64"))
    assert [str(t) for t in compile_check.numba_signature(args)] == [
        "array(float32, 2d, C)",
        "array(int64, 1d, A)",
        "uint64",
    ]
    assert compile_check.is_float32(args)
    assert not compile_check.is_float32((("array", "float64", 1, "C"), ("array", "float32", 1, "C")))
    assert not compile_check.is_float32((("array", "int64", 1, "C"),))


BAD_KERNELS = """
from numba import cuda, float32, njit

N = 32


@njit
def literal_rule(x):
    return x * (1.0 - x)  # a float64 literal (a lone "1.0 - x" LLVM narrows back to float32)


@cuda.jit
def literal(p):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        p[i] = literal_rule(p[i])


@cuda.jit
def shared_expression(p):
    sh = cuda.shared.array(2 * N, float32)
    sh[cuda.threadIdx.x] = p[0]
    p[0] = sh[0]
"""

BAD_DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
import bad
from gpunn.kernels import compile_check
args = (("array", "float32", 1, "C"),)
with compile_check.compute_capability((9, 0)):
    for name in ("literal", "shared_expression"):
        r = compile_check.check_one("bad", name, getattr(bad, name), args, (9, 0))
        print(r.kernel, "|", r.status, "|", r.detail)
"""


def test_the_checker_catches_a_float_literal_and_a_shared_size_expression(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD_KERNELS))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run(
        [sys.executable, "-c", BAD_DRIVER, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = dict(line.split(" | ", 1) for line in out.stdout.splitlines() if " | " in line)
    assert lines["literal"].startswith("float64 in float32 | "), out.stdout
    assert "cvt.f64.f32" in lines["literal"], out.stdout
    assert lines["shared_expression"].startswith("compile error | TypingError"), out.stdout
    source = "sh = cuda.shared.array(2 * N, float32)"
    line = textwrap.dedent(BAD_KERNELS).splitlines().index("    " + source) + 1
    assert f"bad.py:{line}: {source}" in lines["shared_expression"], out.stdout
