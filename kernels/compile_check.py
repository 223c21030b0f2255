"""The real-compiler check of gpunn's CUDA kernels, runnable without a GPU.

The test suite runs the ``@cuda.jit`` kernels of ``kernels/*_cuda.py`` in Numba's CUDA simulator,
which never type-checks: a kernel it runs may still be rejected by the real compiler, or compile a
float32 kernel into float64 arithmetic.  This module compiles each kernel, for each argument-type
signature it was launched with (``gpunn.kernels.record_signatures``), to PTX with numba-cuda's real
compiler (NVVM) and reports per signature:

* ``ok`` -- it compiles (float32 kernels without float64 instructions);
* ``compile error`` -- with the compiler's message and the kernel source line it points at;
* ``float64 in float32`` -- float64 instructions in the PTX of a kernel whose floating-point arrays
  are all float32 (a Python float literal or argument promotes a whole rule to float64), unless the
  kernel's module lists the kernel in ``FLOAT64_INTENDED`` (name → reason), next to the kernel;
* ``not launched`` -- a kernel with no recorded signature (nothing checked it).

Usage, in a process *without* the simulator (``NUMBA_ENABLE_CUDASIM`` unset)::

    python -m gpunn.kernels.compile_check SIGS.json --cc 9.0 --cc 5.0

``SIGS.json`` holds the records of :func:`save_signatures`.  Several ``--cc`` values are checked in
separate processes (``--jobs`` at a time), so no compiled device function of one target is reused for
another.  The exit status is 1 when any signature fails (or a kernel was never launched), 2 on a usage
error.  Without a CUDA driver, compiling the device functions a kernel calls (the ``@njit`` rules)
asks numba-cuda's ``get_current_device()`` for the compute capability; a stand-in answering the one
being compiled for is installed then, and only then.

Importing this module loads neither Numba nor numba.cuda, so the simulated test run can use
:func:`save_signatures`, :func:`cuda_kernels` and :func:`f64_instructions`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import linecache
import os
import pkgutil
import re
import sys
from contextlib import contextmanager
from typing import NamedTuple

__all__ = [
    "Result",
    "check",
    "check_one",
    "compute_capability",
    "cuda_kernels",
    "f64_instructions",
    "load_signatures",
    "main",
    "numba_signature",
    "save_signatures",
]

OK, COMPILE_ERROR, F64, NOT_LAUNCHED = "ok", "compile error", "float64 in float32", "not launched"
FAILURES = (COMPILE_ERROR, F64, NOT_LAUNCHED)


class Result(NamedTuple):
    """The outcome for one signature (``args`` empty for a kernel never launched)."""

    topic: str
    kernel: str
    args: tuple
    status: str
    detail: str = ""


# -- signatures ---------------------------------------------------------------------------------
def save_signatures(signatures, path) -> None:
    """Write launch records ``(topic, kernel, (arg_type, ...))`` to ``path`` as JSON, sorted."""
    with open(path, "w") as f:
        json.dump(sorted(signatures), f, indent=0)


def load_signatures(path) -> list[tuple]:
    """The records written by :func:`save_signatures`, as tuples again."""
    with open(path) as f:
        records = json.load(f)
    return [(topic, name, tuple(tuple(a) for a in args)) for topic, name, args in records]


def numba_signature(args) -> tuple:
    """Numba types of recorded argument types: ``("array", dtype, ndim, layout)`` becomes
    ``types.Array(from_dtype(dtype), ndim, layout)``, ``("scalar", dtype)`` ``from_dtype(dtype)``."""
    import numba

    from gpunn.backend import host_xp

    dtype = host_xp().dtype
    out = []
    for a in args:
        if a[0] == "array":
            out.append(numba.types.Array(numba.from_dtype(dtype(a[1])), a[2], a[3]))
        elif a[0] == "scalar":
            out.append(numba.from_dtype(dtype(a[1])))
        else:
            raise ValueError(f"unknown argument type record {a!r}")
    return tuple(out)


def is_float32(args) -> bool:
    """True when every floating-point array argument is float32 (and there is one)."""
    floats = {a[1] for a in args if a[0] == "array" and a[1].startswith("float")}
    return floats == {"float32"}


def describe(args) -> str:
    """A short form of recorded argument types: ``f32[2C], i64[1C], f32, u64``."""
    short = {"float32": "f32", "float64": "f64", "int64": "i64", "uint64": "u64", "int32": "i32"}
    parts = []
    for a in args:
        name = short.get(a[1], a[1])
        parts.append(f"{name}[{a[2]}{a[3]}]" if a[0] == "array" else name)
    return ", ".join(parts)


# -- kernels ------------------------------------------------------------------------------------
def _kernel_function(obj):
    """The Python function of a ``@cuda.jit`` kernel (numba-cuda's dispatcher, or the simulator's
    stand-in), None for anything else -- device functions included."""
    kind = type(obj).__name__
    if kind == "CUDADispatcher" and not obj.targetoptions.get("device"):
        return obj.py_func
    if kind == "FakeCUDAKernel" and not obj._device:
        return obj.fn
    return None


def cuda_modules() -> dict:
    """``{topic: module}`` for every ``kernels/<topic>_cuda.py`` (imported)."""
    package = importlib.import_module("gpunn.kernels")
    return {
        info.name[: -len("_cuda")]: importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith("_cuda")
    }


def cuda_kernels() -> dict:
    """``{(topic, name): kernel}``: every ``@cuda.jit`` kernel defined in ``kernels/*_cuda.py``."""
    found = {}
    for topic, module in cuda_modules().items():
        for name, obj in vars(module).items():
            fn = _kernel_function(obj)
            if fn is not None and fn.__module__ == module.__name__:
                found[(topic, name)] = obj
    return found


# -- PTX ----------------------------------------------------------------------------------------
_F64_OPCODE = re.compile(r"\.f64(?:\.|$)")
_F64_REGISTER = re.compile(r"%fd\d")


def f64_instructions(ptx: str) -> list[str]:
    """The PTX instructions that compute on, convert to/from, load or store float64.

    An instruction counts when its opcode has a ``.f64`` type (``add.f64``, ``fma.rn.f64``,
    ``cvt.rn.f32.f64``, ``ld.shared.f64``) or an operand is a float64 register (``%fd1``, e.g. in
    ``mov.b64 %fd1, %rd2``).  Not counted: comments, and directives -- ``.param .f64`` (a kernel
    parameter that no instruction reads) and ``.reg .f64 %fd<N>`` (a register declaration)."""
    found = []
    for raw in ptx.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line or line[0] in ".{}()" or line.endswith(":") or line.endswith(","):
            continue
        if line.startswith("@"):  # a predicate guard: "@%p1 add.f64 ..."
            line = line.split(None, 1)[1] if " " in line else ""
        opcode, _, operands = line.partition(" ")
        if _F64_OPCODE.search(opcode) or _F64_REGISTER.search(operands):
            found.append(" ".join(line.rstrip(";").split()))
    return found


# -- compiling ----------------------------------------------------------------------------------
class _StandInDevice:
    """Answers what numba-cuda asks the current device while compiling: its compute capability."""

    def __init__(self, cc):
        self.compute_capability = cc


@contextmanager
def compute_capability(cc):
    """Within this block numba-cuda's ``get_current_device()`` reports ``cc`` -- only when no CUDA
    driver and device exist (with a real GPU, nothing is replaced)."""
    from numba import cuda
    from numba.cuda import dispatcher

    if cuda.is_available():
        yield
        return
    saved = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _StandInDevice(cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = saved


def _where(exc) -> str:
    """``file:line: source`` of the kernel code a compile error points at ('' when unknown).

    Numba attaches the location to some errors only; otherwise the innermost traceback frame of
    the type inference holding a ``loc`` (the statement being typed) gives it."""
    loc = getattr(exc, "loc", None)
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame.f_locals
        for cand in (frame.get("loc"), getattr(frame.get("self"), "loc", None)):
            if getattr(cand, "filename", None) and getattr(cand, "line", None):
                loc = cand
        tb = tb.tb_next
    if loc is None or not getattr(loc, "filename", None):
        return ""
    path = os.path.relpath(loc.filename) if os.path.isabs(loc.filename) else loc.filename
    return f"{path}:{loc.line}: {linecache.getline(loc.filename, loc.line).strip()}"


def _error_text(exc) -> str:
    """The first lines of a compiler error that say what went wrong, and where."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: " + " ".join(lines[:2])
    where = _where(exc)
    return f"{text} [at {where}]" if where else text


def compile_one(kernel, args, cc) -> tuple[str | None, str]:
    """Compile ``kernel`` for recorded argument types ``args`` to PTX for ``cc``:
    ``(ptx, "")``, or ``(None, error text)``."""
    from numba import cuda

    opts = kernel.targetoptions
    try:
        ptx, _ = cuda.compile_ptx(
            kernel.py_func,
            numba_signature(args),
            cc=cc,
            debug=opts.get("debug"),
            lineinfo=opts.get("lineinfo", False),
            fastmath=opts.get("fastmath", False),
            opt=opts.get("opt"),
            launch_bounds=opts.get("launch_bounds"),
        )
    except Exception as exc:  # any failure of the compiler is the finding
        return None, _error_text(exc)
    return ptx, ""


def _judge(topic, name, args, ptx, intended) -> Result:
    """The result for a signature that compiled to ``ptx`` (the float64 check)."""
    if not is_float32(args):
        return Result(topic, name, args, OK)
    f64 = f64_instructions(ptx)
    if not f64:
        if name in intended:
            return Result(topic, name, args, OK, f"note: FLOAT64_INTENDED lists {name} but its PTX has none")
        return Result(topic, name, args, OK)
    if name in intended:
        return Result(topic, name, args, OK, f"{len(f64)} f64 instructions, intended (FLOAT64_INTENDED)")
    sample = "; ".join(dict.fromkeys(f64))
    sample = sample if len(sample) <= 160 else sample[:157] + "..."
    wide = [i for i, a in enumerate(args) if a[1] == "float64"]
    why = f" (float64 arguments at {wide})" if wide else ""
    return Result(topic, name, args, F64, f"{len(f64)} f64 instructions{why}, e.g. {sample}")


def check_one(topic, name, kernel, args, cc, intended=None) -> Result:
    """Compile ``kernel`` (``name`` of ``topic``) for recorded argument types ``args`` and compute
    capability ``cc``, and judge the PTX; ``intended``: the module's ``FLOAT64_INTENDED``.  Without a
    driver, call it inside :func:`compute_capability`."""
    ptx, error = compile_one(kernel, args, cc)
    if ptx is None:
        return Result(topic, name, args, COMPILE_ERROR, error)
    return _judge(topic, name, args, ptx, intended or {})


def check(signatures, cc) -> list[Result]:
    """Compile every recorded signature for compute capability ``cc`` (a ``(major, minor)`` tuple);
    one :class:`Result` per signature, plus one ``not launched`` per kernel without a signature."""
    kernels = cuda_kernels()
    modules = cuda_modules()
    results = []
    with compute_capability(cc):
        for topic, name, args in sorted(set(signatures)):
            kernel = kernels.get((topic, name))
            if kernel is None:
                results.append(Result(topic, name, args, COMPILE_ERROR, "no such kernel"))
                continue
            intended = getattr(modules[topic], "FLOAT64_INTENDED", {})
            results.append(check_one(topic, name, kernel, args, cc, intended))
    launched = {(topic, name) for topic, name, _ in signatures}
    results += [
        Result(topic, name, (), NOT_LAUNCHED, "no signature recorded: nothing checked it")
        for topic, name in sorted(kernels)
        if (topic, name) not in launched
    ]
    return results


def _check_in_child(path, cc):
    """Worker of :func:`main` (one process per compute capability)."""
    return check(load_signatures(path), cc)


# -- command line -------------------------------------------------------------------------------
def table(cc, results) -> str:
    """The report for one compute capability: a line per signature, then a summary line."""
    tag = f"sm_{cc[0]}{cc[1]}"
    lines = []
    for r in results:
        kernel = f"{r.topic}.{r.kernel}"
        lines.append(f"{tag}  {r.status:<18}  {kernel:<32}  ({describe(r.args)})")
        if r.detail:
            lines.append(f"{'':>{len(tag)}}      {r.detail}")
    bad = sum(r.status in FAILURES for r in results)
    n_sigs = sum(r.status != NOT_LAUNCHED for r in results)
    n_kernels = len({(r.topic, r.kernel) for r in results if r.status != NOT_LAUNCHED})
    lines.append(
        f"{tag}: {n_sigs} signatures of {n_kernels} kernels compiled: "
        f"{'all ok' if not bad else f'{bad} FAILED'}"
    )
    return "\n".join(lines)


def _parse_cc(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise argparse.ArgumentTypeError(f"compute capability like 9.0 expected, got {text!r}")
    return int(major), int(minor)


def main(argv=None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m gpunn.kernels.compile_check",
        description="Compile gpunn's CUDA kernels for recorded signatures.",
    )
    parser.add_argument("signatures", help="JSON file written by save_signatures")
    parser.add_argument(
        "--cc",
        action="append",
        type=_parse_cc,
        required=True,
        help="compute capability MAJOR.MINOR (repeatable)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="processes compiling at once (default 2)")
    ns = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print(
            "compile_check: NUMBA_ENABLE_CUDASIM is set; the simulator has no compiler. Unset it.",
            file=sys.stderr,
        )
        return 2
    ccs = list(dict.fromkeys(ns.cc))
    if len(ccs) == 1:
        reports = [check(load_signatures(ns.signatures), ccs[0])]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # the worker by its importable name (not ``__main__``'s copy when run with ``-m``)
        worker = importlib.import_module("gpunn.kernels.compile_check")._check_in_child
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max(1, min(ns.jobs, len(ccs))), mp_context=spawn) as ex:
            reports = list(ex.map(worker, [ns.signatures] * len(ccs), ccs))
    failed = False
    for cc, results in zip(ccs, reports, strict=True):
        print(table(cc, results))
        failed |= any(r.status in FAILURES for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
