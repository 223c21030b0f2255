"""Build gpunn's API reference (HTML, from the docstrings) with pdoc::

    pip install -e ".[dev]"                      # pdoc comes with the test and dev extras
    python docs/build_api.py -o out/api          # then open out/api/index.html

Every public module is documented: gpunn and its subpackages, gpunn.kernels (the Numba kernels),
gpunn.textbook; modules whose name starts with ``_`` are left out.  The CUDA kernels are imported
under Numba's simulator, so no GPU (nor CUDA toolkit) is needed.  Exits non-zero, with pdoc's
messages, when pdoc reports any warning (a docstring or annotation it cannot read), so
tests/test_packaging.py keeps the reference buildable.
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import subprocess
import sys


def public_modules() -> list[str]:
    """``["gpunn", "gpunn.backend", ..., "gpunn.kernels", ...]``: every module without a private part."""
    import gpunn.kernels  # binds gpunn too

    names = ["gpunn", "gpunn.kernels"]
    for package in (gpunn, gpunn.kernels):  # noqa: F821 -- gpunn is bound by the import above
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not any(part.startswith("_") for part in info.name.split(".")) and info.name not in names:
                names.append(info.name)
    return sorted(names)


def pdoc_specs(modules) -> list[str]:
    """The fewest of ``modules`` to name to pdoc: it adds a package's submodules itself (those in its
    ``__all__``, or all when it has none) and warns when one is named twice."""
    from pdoc.extract import walk_specs

    specs, covered = [], set()
    for name in sorted(modules):  # a package before its submodules
        if name not in covered:
            specs.append(name)
            covered = set(walk_specs(specs))
    return specs


def build(out, modules=None) -> subprocess.CompletedProcess:
    """Run pdoc on ``modules`` (default: :func:`public_modules`) into the folder ``out``."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    specs = pdoc_specs(modules or public_modules())
    return subprocess.run(
        [sys.executable, "-m", "pdoc", "--docformat", "restructuredtext", "-o", str(out), *specs],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default="out/api", help="output folder (default out/api)")
    args = ap.parse_args(argv)
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before gpunn (and numba.cuda) are imported
    try:
        import pdoc  # noqa: F401
    except ImportError:
        sys.exit('pdoc is not installed: pip install pdoc (or pip install -e ".[dev]")')
    proc = build(args.out)
    messages = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "Warn" in messages or "Error" in messages:
        print(messages, file=sys.stderr)
        return proc.returncode or 1
    print(f"API reference: {os.path.join(args.out, 'index.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
