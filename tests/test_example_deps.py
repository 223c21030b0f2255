"""The examples check their optional dependency (matplotlib) before they load data or train, and say
how to install it, instead of training and then crashing with ModuleNotFoundError."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PLOTTING = [
    "batchnorm_compare",
    "fashion_mnist_batchnorm",
    "hyperparameter_search",
    "mnist_mlp",
    "optimizer_compare",
    "optimizer_paths",
    "overfitting",
    "weight_init_activations",
    "weight_init_compare",
    "zero_init",
]
WITHOUT_NO_PLOT = {"optimizer_compare", "optimizer_paths"}

# Runs every script as ``python examples/<name>.py --device cpu`` with matplotlib made unimportable
# (None in sys.modules: "import matplotlib" raises ImportError) and gpunn's network and layer
# constructors replaced by a tripwire: what each run printed and how it exited, as JSON.
DRIVER = r"""
import contextlib, io, json, runpy, sys
sys.modules["matplotlib"] = None
sys.path.insert(0, EXAMPLES)
import gpunn, gpunn.layers

def tripwire(*args, **kwargs):
    raise RuntimeError("TRIPWIRE: a network was built")

gpunn.MLP.__init__ = tripwire
gpunn.layers.Affine.__init__ = tripwire
out = {}
for name in NAMES:
    stdout = io.StringIO()
    sys.argv = [f"{EXAMPLES}/{name}.py", "--device", "cpu"]
    try:
        with contextlib.redirect_stdout(stdout):
            runpy.run_path(sys.argv[0], run_name="__main__")
        code = "returned"
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:
        code = f"{type(exc).__name__}: {exc}"
    out[name] = {"exit": code if isinstance(code, (int, str)) else repr(code), "stdout": stdout.getvalue()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs():
    code = f"EXAMPLES = {str(EXAMPLES)!r}\nNAMES = {PLOTTING!r}\n" + DRIVER
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=EXAMPLES
    )  # not ROOT: its gpunn/ would shadow an installed gpunn
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", PLOTTING)
def test_missing_matplotlib_stops_before_training(runs, name):
    r = runs[name]
    msg = r["exit"]
    assert isinstance(msg, str) and "TRIPWIRE" not in msg, msg
    assert msg.startswith(f"examples/{name}.py draws its figures with matplotlib, which is not installed")
    assert 'pip install "gpunn[examples]"' in msg
    assert ("--no-plot" in msg) == (name not in WITHOUT_NO_PLOT)
    assert r["stdout"] == ""  # nothing loaded, nothing trained, nothing printed


def test_every_plotting_example_is_checked():
    """A new example that imports pyplot must be listed above (and call _common.parse_args)."""

    def plots(path):
        return "pyplot" in path.read_text() or "plot_learning_curves" in path.read_text()

    plotting = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_") and plots(p))
    assert plotting == sorted(PLOTTING)
    for name in PLOTTING:
        assert "parse_args(" in (EXAMPLES / f"{name}.py").read_text(), name


def test_no_plot_runs_without_matplotlib(tmp_path):
    """--no-plot, as the message suggests, runs an example to the end without matplotlib."""
    code = (
        "import runpy, sys\nsys.modules['matplotlib'] = None\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        f"sys.argv = ['weight_init_activations.py', '--device', 'cpu', '--no-plot', '--out', "
        f"{str(tmp_path)!r}]\n"
        f"runpy.run_path({str(EXAMPLES / 'weight_init_activations.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=EXAMPLES
    )  # not ROOT: its gpunn/ would shadow an installed gpunn
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "layer" in proc.stdout and not list(tmp_path.iterdir())
