"""The main job: examples/mnist_mlp.py on the real MNIST digits."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import mnist_mlp  # noqa: E402


def test_textbook_network_reaches_93_percent_on_cpu(mnist_dir, tmp_path):
    result = mnist_mlp.main(
        ["--device", "cpu", "--data-dir", str(mnist_dir), "--no-progress", "--out", str(tmp_path)]
    )
    assert result["test_acc"] >= 0.93
    assert (tmp_path / "mnist_mlp_curves.png").stat().st_size > 10_000


def test_cuda_path_trains_like_cpu(mnist_dir, tmp_path):
    """A smaller run on the "cuda" device (the simulator here; the GPU with GPUNN_TEST_DEVICE=cuda):
    the same steps give the same losses as on the CPU, up to float rounding."""
    args = ["--data-dir", str(mnist_dir), "--epochs", "1", "--limit", "128", "--no-progress", "--no-plot"]
    cpu = mnist_mlp.main(["--device", "cpu", *args])
    cuda = mnist_mlp.main(["--device", "cuda", *args])
    assert len(cuda["history"]["iter_loss"]) == 2
    assert np.allclose(cuda["history"]["iter_loss"], cpu["history"]["iter_loss"], rtol=1e-5)
    assert cuda["test_acc"] == pytest.approx(cpu["test_acc"], abs=1e-3)
