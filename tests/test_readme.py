"""Every fenced code block of README.md runs here, so a snippet cannot go stale.

* ```python blocks run, each in a fresh interpreter with the repository root as working directory,
  on the CPU (no simulator, no GPU visible, so ``device="auto"`` means the CPU), with the
  README's data path ``../shared/data/mnist`` replaced by wherever ``mnist_dir`` found the digits.
* ```bash blocks: each command line is checked by the rule of ``bash_check`` below: installs and
  GPU-only lines are skipped (the skip is counted and printed), the README's test command must be the
  one ``.ci/run`` runs, and every ``python SCRIPT`` line's script must exist and answer ``--help``;
  the main job also trains, with a small ``--epochs``/``--limit``.
* Every ``python PATH.py`` the README mentions (tables, prose) names a file that exists.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_DATA = "../shared/data/mnist"
TEST_COMMAND = "python -m pytest -q"

# Lines skipped, by rule: they install software, or need a GPU.
SKIP_PREFIXES = ("pip install", "python3 -m venv")
GPU_MARKERS = ("--device cuda", "GPUNN_TEST_DEVICE=cuda", "GPUNN_DEVICE=cuda")
# Scripts cheap enough to run for real, with these options appended (a smaller run than the README's).
CHEAP_RUNS = {"examples/mnist_mlp.py": ["--epochs", "1", "--limit", "1000", "--no-plot", "--no-progress"]}


def blocks(lang: str) -> list[str]:
    """The README's fenced blocks of language ``lang``, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def cpu_env() -> dict:
    """The environment of a README snippet: no simulated GPU, and no real one either unless the suite
    runs on a GPU (GPUNN_TEST_DEVICE=cuda): ``device="auto"`` is then the CPU."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if env.pop("GPUNN_TEST_DEVICE", "").lower() != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run(cmd, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=cpu_env(), capture_output=True, text=True, timeout=timeout)


def test_readme_has_code_blocks():
    assert len(blocks("python")) > 0 and len(blocks("bash")) > 0


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs(index, request):
    code = blocks("python")[index]
    if README_DATA in code:  # only the blocks that read MNIST need (and skip without) it
        code = code.replace(f'"{README_DATA}"', repr(str(request.getfixturevalue("mnist_dir"))))
    (ROOT / "out").mkdir(exist_ok=True)
    proc = run([sys.executable, "-c", code])
    assert proc.returncode == 0, f"README python block {index} failed:\n{code}\n{proc.stderr[-3000:]}"


def bash_lines() -> list[str]:
    """Every command line of the README's bash blocks, comments removed."""
    lines = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def bash_check(line: str, mnist_dir: Path) -> str:
    """Check one README command line; returns what was done ("skipped ..." for a skip)."""
    checked = False
    for part in line.split("&&"):
        part = part.strip()
        if part.startswith(". ") or part.startswith("source "):
            continue
        if part.startswith(SKIP_PREFIXES):
            continue  # installs: .ci/run does them from a clean clone
        if any(m in part for m in GPU_MARKERS):
            return f"skipped (needs a GPU): {line}"
        if part == TEST_COMMAND:
            ci = ROOT / ".ci" / "run"  # absent from an sdist
            if ci.exists():
                assert TEST_COMMAND in ci.read_text().splitlines(), ".ci/run must run the README's tests"
            checked = True
            continue  # this is the suite itself
        words = shlex.split(part)
        if words[0] == "mpirun":  # the launcher needs MPI; the script it launches is checked
            words = words[words.index("python") :]
        assert words[0] == "python" and words[1].endswith(".py"), f"no rule for README line: {line}"
        script = words[1]
        assert (ROOT / script).is_file(), f"README names {script}, which does not exist"
        proc = run([sys.executable, script, "--help"], timeout=300)
        assert proc.returncode == 0, f"{script} --help failed:\n{proc.stderr[-2000:]}"
        if script in CHEAP_RUNS and "--help" not in words:
            args = [a.replace(README_DATA, str(mnist_dir)) for a in words[2:]]
            proc = run([sys.executable, script, *args, *CHEAP_RUNS[script]])
            assert proc.returncode == 0, f"{part} failed:\n{proc.stderr[-3000:]}"
            assert "test accuracy" in proc.stdout
        checked = True
    return f"checked: {line}" if checked else f"skipped (installs): {line}"


def test_bash_blocks(mnist_dir):
    done = [bash_check(line, mnist_dir) for line in bash_lines()]
    print("\n".join(done))
    assert sum(d.startswith("checked") for d in done) > 0


def test_the_examples_table_names_every_example_and_only_existing_ones():
    section = README.read_text().split("## Examples", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"[`/](\w+\.py)", section))
    present = {p.name for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_")}
    assert named - present == set(), f"the README's examples table names missing scripts: {named - present}"
    assert present - named == set(), f"examples the README does not list: {present - named}"


def test_scripts_named_in_readme_exist():
    named = set(re.findall(r"python (?:-m \S+ )?([\w./-]+\.py)", README.read_text()))
    assert named, "the README names no script"
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"the README names scripts that do not exist: {missing}"
