"""Tests for gpunn.datasets (IDX reader, MNIST / Fashion-MNIST loaders, downloads) and gpunn.progress.

Real data: MNIST's t10k files in the repository's sibling ``shared/data/mnist`` (or ``$GPUNN_DATA``),
Fashion-MNIST from Debian's ``/usr/share/datasets/fashion-mnist``; those tests skip when the files
are absent.  Everything else runs on small synthetic IDX files written into tmp_path, and the
download code runs against a fake ``urllib.request.urlopen`` (no network).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import time
import urllib.error
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpunn.datasets as D
import gpunn.progress as P
from gpunn.datasets import DatasetNotFoundError, IDXFormatError, read_idx

TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise ``arr`` as an IDX file (big-endian)."""
    code = CODES[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr_or_bytes, gz: bool | None = None) -> Path:
    data = arr_or_bytes if isinstance(arr_or_bytes, bytes) else idx_bytes(arr_or_bytes)
    if gz is None:
        gz = path.suffix == ".gz"
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def make_dataset(directory: Path, n_train=50, n_test=20, seed=0, gz=True, files=D.FILES) -> Path:
    """Write a small random MNIST-style dataset (28x28 ubyte images, labels 0..9)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_train, "t10k": n_test}
    for stem in files:
        n = sizes[stem.split("-")[0]]
        if "images" in stem:
            arr = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        else:
            arr = (np.arange(n) % 10).astype(np.uint8)
            rng.shuffle(arr)
        write_idx(directory / (stem + (".gz" if gz else "")), arr, gz=gz)
    return directory


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """HOME and GPUNN_DATA pointed at empty tmp dirs, no system dirs, and no network."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GPUNN_DATA", raising=False)
    for info in D._DATASETS.values():
        monkeypatch.setitem(info, "system_dirs", ())

    def no_network(url, *a, **k):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    return home


def rows(split) -> Counter:
    """Multiset of (image bytes, label) of a split, to compare splits without knowing indices."""
    x, t = split
    return Counter((xi.tobytes(), int(ti)) for xi, ti in zip(x, t, strict=True))


# --------------------------------------------------------------------------------------------------
# real MNIST (t10k only) and Fashion-MNIST
# --------------------------------------------------------------------------------------------------


def _real_mnist_dir() -> Path | None:
    candidates = []
    for entry in os.environ.get("GPUNN_DATA", "").split(os.pathsep):
        if entry:
            candidates += [Path(entry), Path(entry) / "mnist"]
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist")
    for d in candidates:
        if all((d / f"{s}.gz").is_file() or (d / s).is_file() for s in TEST_FILES):
            return d
    return None


MNIST_DIR = _real_mnist_dir()
needs_mnist = pytest.mark.skipif(
    MNIST_DIR is None,
    reason="real MNIST t10k files not found in ../shared/data/mnist (repo sibling) nor in $GPUNN_DATA",
)
needs_fashion = pytest.mark.skipif(
    not all((FASHION_DIR / f"{s}.gz").is_file() for s in D.FILES),
    reason=f"Fashion-MNIST not installed in {FASHION_DIR} (apt-get install -y dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def mnist_split():
    return D.load_mnist_test_split(MNIST_DIR, download=False)


@needs_mnist
def test_real_mnist_read_idx():
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert images.flags.writeable
    x, t = D.load_idx_pair(MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    assert t.dtype == np.int64 and set(np.unique(t)) == set(range(10))
    np.testing.assert_allclose(x.reshape(-1, 28, 28), images / 255.0, rtol=1e-6)


@needs_mnist
def test_real_mnist_test_split(mnist_split):
    (x_train, t_train), (x_test, t_test) = mnist_split
    assert x_train.shape == (8000, 784) and x_test.shape == (2000, 784)
    assert x_train.dtype == np.float32 and t_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert set(np.unique(t_train)) == set(range(10)) and set(np.unique(t_test)) == set(range(10))
    assert mnist_split.train.n == 8000 and mnist_split.val is None and mnist_split.num_classes == 10
    # disjoint and complete: train + test is exactly the 10,000 digits
    full = D.load_idx_pair(MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert rows(mnist_split.train) + rows(mnist_split.test) == rows(full)
    # deterministic for a seed, different for another
    again = D.load_mnist_test_split(MNIST_DIR, download=False)
    np.testing.assert_array_equal(again.train.x, x_train)
    np.testing.assert_array_equal(again.test.t, t_test)
    other = D.load_mnist_test_split(MNIST_DIR, seed=1, download=False)
    assert not np.array_equal(other.test.t, t_test)


@needs_mnist
def test_real_mnist_one_hot_and_images(mnist_split):
    oh = D.load_mnist_test_split(MNIST_DIR, one_hot=True, flatten=False, n_train=9000, download=False)
    (x_train, y_train), (x_test, y_test) = oh
    assert x_train.shape == (9000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert y_train.shape == (9000, 10) and y_train.dtype == np.float32
    np.testing.assert_array_equal(y_train.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="n_train"):
        D.load_mnist_test_split(MNIST_DIR, n_train=10000, download=False)


@needs_mnist
def test_real_mnist_via_gpunn_data_and_validation(isolated, tmp_path, monkeypatch):
    """load_mnist on a $GPUNN_DATA/mnist whose 'train' files are links to the real t10k files."""
    d = tmp_path / "data" / "mnist"
    d.mkdir(parents=True)
    for kind in ("images-idx3", "labels-idx1"):
        src = MNIST_DIR / f"t10k-{kind}-ubyte.gz"
        for prefix in ("train", "t10k"):
            (d / f"{prefix}-{kind}-ubyte.gz").symlink_to(src)
    monkeypatch.setenv("GPUNN_DATA", str(tmp_path / "data"))
    assert D.find_data_dir("mnist") == d
    (x_train, t_train), (x_val, t_val), (x_test, t_test) = D.load_mnist(validation=1000, download=False)
    assert x_train.shape == (9000, 784) and x_val.shape == (1000, 784) and x_test.shape == (10000, 784)
    full = D.Split(x_test, t_test)
    assert rows((x_train, t_train)) + rows((x_val, t_val)) == rows(full)
    frac = D.load_mnist(validation=0.25, download=False, one_hot=True)
    assert frac.train.n == 7500 and frac.val.n == 2500 and frac.val.t.shape == (2500, 10)


@needs_fashion
def test_real_fashion_mnist(isolated, monkeypatch):
    monkeypatch.setitem(D._DATASETS["fashion-mnist"], "system_dirs", (str(FASHION_DIR),))
    data = D.load_fashion_mnist(download=False)
    (x_train, t_train), (x_test, t_test) = data
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert t_train.shape == (60000,) and set(np.unique(t_train)) == set(range(10))
    assert np.bincount(t_test).tolist() == [1000] * 10
    assert data.class_names[9] == "Ankle boot" and data.name == "fashion-mnist"
    assert D.find_data_dir("fashion_mnist") == FASHION_DIR


# --------------------------------------------------------------------------------------------------
# read_idx on synthetic files
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(CODES))
def test_read_idx_round_trip(tmp_path, gz, dtype):
    rng = np.random.default_rng(0)
    for shape in [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2), (0, 28, 28)]:
        arr = (rng.standard_normal(shape) * 100).astype(dtype)
        p = write_idx(tmp_path / f"a{len(shape)}.idx", arr, gz=gz)
        out = read_idx(p)
        assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.shape == shape
        np.testing.assert_array_equal(out, arr)


def test_read_idx_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain-name", arr, gz=True)), arr)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "raw.gz", arr, gz=False)), arr)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path, gz):
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    p = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", data[: 16 + 1000], gz=gz)  # header + 1000 bytes
    with pytest.raises(IDXFormatError, match=r"t10k-images-idx3-ubyte\.gz: truncated.*7840 bytes.* 1000"):
        read_idx(p)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_trailing_data(tmp_path, gz):
    p = write_idx(tmp_path / "x.idx", idx_bytes(np.zeros((4, 2), np.int16)) + b"\x00", gz=gz)
    with pytest.raises(IDXFormatError, match="trailing data"):
        read_idx(p)


@pytest.mark.parametrize(
    "data, msg",
    [
        (b"", "too short"),
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
        (b"PK\x03\x04junk", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX data type code 0x07"),
        (b"\x00\x00\x08\x00", "dimensions 0"),
        (b"\x00\x00\x08\x05" + b"\x00" * 20, "dimensions 5"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "truncated header"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_bad_headers(tmp_path, data, msg, gz):
    p = write_idx(tmp_path / "bad.idx", data, gz=gz)
    with pytest.raises(IDXFormatError, match=msg) as info:
        read_idx(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "header",
    [
        b"\x00\x00\x08\x02" + struct.pack(">2I", 2**31, 2**31),
        b"\x00\x00\x0e\x04" + struct.pack(">4I", 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1),
        b"\x00\x00\x08\x01" + struct.pack(">I", 10**9),
        # empty (a dimension is 0), yet the others multiply past what NumPy allows (found by Hypothesis)
        b"\x00\x00\x08\x04" + struct.pack(">4I", 0, 32308, 16892239, 16900223),
    ],
)
def test_read_idx_absurd_header_fails_fast(tmp_path, header, gz):
    p = write_idx(tmp_path / "absurd.idx", header + b"\x00" * 100, gz=gz)
    start = time.perf_counter()
    with pytest.raises(IDXFormatError, match="truncated"):
        read_idx(p)
    assert time.perf_counter() - start < 1.0


def test_read_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32)), mtime=0)
    cases = {
        "flipped": good[:40] + bytes([good[40] ^ 0xFF]) + good[41:],
        "cut": good[: len(good) // 2],
        "header-only": good[:10],
        "bad-crc": good[:-8] + bytes([good[-8] ^ 0xFF]) + good[-7:],
        "garbage": b"\x1f\x8b" + b"\x00" * 30,
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.gz"
        p.write_bytes(data)
        with pytest.raises(IDXFormatError, match=name):
            read_idx(p)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


# --------------------------------------------------------------------------------------------------
# load_idx_pair / load_mnist on synthetic data
# --------------------------------------------------------------------------------------------------


def test_load_idx_pair_validation(tmp_path):
    images = write_idx(tmp_path / "img.gz", np.zeros((5, 28, 28), np.uint8))
    labels4 = write_idx(tmp_path / "lab4.gz", np.arange(4, dtype=np.uint8))
    with pytest.raises(IDXFormatError, match="5 images but .*lab4.gz has 4 labels"):
        D.load_idx_pair(images, labels4)
    bad = write_idx(tmp_path / "bad.gz", np.array([0, 1, 12, 3, 4], np.uint8))
    with pytest.raises(IDXFormatError, match=r"label 12 at index 2 is out of range 0\.\.9"):
        D.load_idx_pair(images, bad)
    ok = write_idx(tmp_path / "ok.gz", np.array([0, 1, 9, 3, 4], np.uint8))
    with pytest.raises(IDXFormatError, match="unsigned-byte images"):
        D.load_idx_pair(write_idx(tmp_path / "f.gz", np.zeros((5, 28, 28), np.float32)), ok)
    with pytest.raises(IDXFormatError, match="unsigned-byte labels"):
        D.load_idx_pair(images, write_idx(tmp_path / "l2.gz", np.zeros((5, 1), np.uint8)))
    x, t = D.load_idx_pair(images, ok, one_hot=True, dtype="float64")
    assert x.dtype == np.float64 and t.shape == (5, 10) and t[2, 9] == 1 and t.sum() == 5


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_synthetic(isolated, tmp_path, gz):
    d = make_dataset(tmp_path / "ds", gz=gz)
    data = D.load_mnist(d, download=False)
    (x_train, t_train), (x_test, t_test) = data
    assert x_train.shape == (50, 784) and x_test.shape == (20, 784) and t_train.dtype == np.int64
    raw = read_idx(next(d.glob("train-images*")))
    np.testing.assert_allclose(x_train, raw.reshape(50, -1) / np.float32(255), rtol=1e-6)
    assert "train=50" in repr(data) and data.val is None

    # validation: int count and fraction, deterministic, disjoint; data_dir alias; 28x28; one-hot
    v = D.load_mnist(data_dir=d, validation=10, download=False, flatten=False, one_hot=True)
    (xa, ta), (xv, tv), (xt, tt) = v
    assert xa.shape == (40, 28, 28) and xv.shape == (10, 28, 28) and tv.shape == (10, 10)
    assert rows((xa.reshape(40, -1), ta.argmax(1))) + rows((xv.reshape(10, -1), tv.argmax(1))) == rows(
        (x_train, t_train)
    )
    v2 = D.load_mnist(d, validation=10, download=False, flatten=False, one_hot=True)
    np.testing.assert_array_equal(v2.val.x, xv)
    v3 = D.load_mnist(d, validation=10, seed=5, download=False, flatten=False, one_hot=True)
    assert not np.array_equal(v3.val.x, xv)
    assert D.load_mnist(d, validation=0.2, download=False).val.n == 10
    restored = pickle.loads(pickle.dumps(v))
    assert restored.name == "mnist" and restored.val.n == 10 and len(restored) == 3
    np.testing.assert_array_equal(restored.test.t, tt)
    assert len(D.load_mnist(d, validation=0, download=False)) == 2
    for bad in (50, -1, 1.0, 1.5, True):
        with pytest.raises((ValueError, TypeError)):
            D.load_mnist(d, validation=bad, download=False)


def test_search_order(isolated, tmp_path, monkeypatch):
    explicit = make_dataset(tmp_path / "explicit", n_train=11)
    env_root = tmp_path / "env"
    make_dataset(env_root / "mnist", n_train=12)
    cache = make_dataset(isolated / ".cache" / "gpunn" / "mnist", n_train=13)
    monkeypatch.setenv("GPUNN_DATA", str(env_root))
    assert D.load_mnist(explicit, download=False).train.n == 11
    assert D.load_mnist(tmp_path / "elsewhere", download=False).train.n == 12
    assert D.find_data_dir("mnist") == env_root / "mnist"
    monkeypatch.delenv("GPUNN_DATA")
    assert D.find_data_dir("mnist") == cache
    # a directory with only some of the files is skipped
    partial = make_dataset(tmp_path / "partial", files=TEST_FILES)
    assert D.find_data_dir("mnist", partial) == cache
    assert D.find_data_dir("mnist", partial, files=TEST_FILES) == partial
    assert [why for _, why in D.data_search_path("fashion-mnist", partial)][:2] == ["path= argument"] * 2


def test_missing_dataset_message(isolated, tmp_path, monkeypatch):
    env = tmp_path / "envdata"
    env.mkdir()
    monkeypatch.setenv("GPUNN_DATA", str(env))
    only_test = make_dataset(tmp_path / "only-test", files=TEST_FILES)
    with pytest.raises(DatasetNotFoundError) as info:
        D.load_mnist(only_test, download=False)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    cache = isolated / ".cache" / "gpunn" / "mnist"
    for place in (only_test, only_test / "mnist", env, env / "mnist", cache):
        assert str(place) in msg
    assert "download=False" in msg and "GPUNN_DATA" in msg and "download=True" in msg
    assert "load_mnist_test_split" in msg  # the t10k files were found: point at the way to use them

    monkeypatch.setitem(D._DATASETS["fashion-mnist"], "system_dirs", (str(tmp_path / "usr-share"),))
    with pytest.raises(DatasetNotFoundError) as info:
        D.load_fashion_mnist(download=False)
    msg = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in msg and str(tmp_path / "usr-share") in msg
    assert str(isolated / ".cache" / "gpunn" / "fashion-mnist") in msg


# --------------------------------------------------------------------------------------------------
# downloads against a fake urlopen
# --------------------------------------------------------------------------------------------------


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, fail_after: int | None = None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}
        self.fail_after = fail_after

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(n if self.fail_after is None else min(n, self.fail_after))


def serve(monkeypatch, files: dict[str, bytes], *, bad_mirrors=(), corrupt=False, fail_after=None):
    """Patch urlopen to serve ``files`` by basename; record the URLs asked for."""
    asked = []

    def urlopen(url, timeout=None):
        asked.append(url)
        if any(url.startswith(m) for m in bad_mirrors):
            raise urllib.error.URLError("mirror down")
        name = url.rsplit("/", 1)[1]
        if name not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        data = files[name]
        if corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        return FakeResponse(data, fail_after=fail_after)

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    return asked


@pytest.fixture
def served(isolated, tmp_path, monkeypatch):
    """A synthetic MNIST whose .gz files are registered as the official ones (checksums patched)."""
    src = make_dataset(tmp_path / "upstream", n_train=30, n_test=10)
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    sums = {name[: -len(".gz")]: ("md5", hashlib.md5(data).hexdigest()) for name, data in files.items()}
    labels = files["t10k-labels-idx1-ubyte.gz"]
    sums["t10k-labels-idx1-ubyte"] = ("sha256", hashlib.sha256(labels).hexdigest())  # sha256 works too
    monkeypatch.setitem(D._DATASETS["mnist"], "checksums", sums)
    return files


def test_download_good_checksum(served, isolated, monkeypatch):
    first_mirror = D._DATASETS["mnist"]["mirrors"][0]
    asked = serve(monkeypatch, served, bad_mirrors=(first_mirror,))
    data = D.load_mnist(progress_bar=False)
    assert data.train.n == 30 and data.test.n == 10
    cache = isolated / ".cache" / "gpunn" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(served)
    assert len(asked) == 8  # each file: first mirror down, second one serves it
    asked.clear()
    D.load_mnist(progress_bar=False)  # now cached: no network
    assert asked == []


def test_download_only_missing_test_files(served, isolated, monkeypatch):
    asked = serve(monkeypatch, served)
    split = D.load_mnist_test_split(n_train=6, progress_bar=False)
    assert split.train.n == 6 and split.test.n == 4
    assert sorted(u.rsplit("/", 1)[1] for u in asked) == sorted(f + ".gz" for f in TEST_FILES)


@pytest.mark.parametrize("how", ["checksum", "reset"])
def test_download_failure_leaves_nothing(served, isolated, monkeypatch, how):
    if how == "checksum":
        serve(monkeypatch, served, corrupt=True)
    else:
        serve(monkeypatch, served, fail_after=100)
    with pytest.raises(DatasetNotFoundError) as info:
        D.load_mnist(progress_bar=False)
    msg = str(info.value)
    assert ("checksum mismatch" if how == "checksum" else "connection reset") in msg
    assert "Looked in:" in msg and "To get the files:" in msg
    cache = isolated / ".cache" / "gpunn" / "mnist"
    assert list(cache.iterdir()) == []  # no partial or unverified file, no temporary file


def test_offline_download_gives_clear_error(isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        D.load_mnist()  # download=True by default; the isolated fixture's urlopen is "offline"
    msg = str(info.value)
    assert "network disabled in tests" in msg and "Downloading into" in msg
    assert D._DATASETS["mnist"]["mirrors"][1] in msg


# --------------------------------------------------------------------------------------------------
# property test: read_idx returns an array or raises IDXFormatError, never anything else
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hyp_file(tmp_path_factory):
    return tmp_path_factory.mktemp("idx-hypothesis") / "f.idx"


@st.composite
def idx_like(draw):
    if draw(st.booleans()):
        data = draw(st.binary(max_size=64))
    else:
        code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]))
        ndim = draw(st.integers(0, 5))
        dims = draw(
            st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), min_size=ndim, max_size=ndim)
        )
        magic = draw(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\x1f\x8b"]))
        header = magic + bytes([code, ndim]) + struct.pack(f">{ndim}I", *dims)
        header = header[: draw(st.integers(0, len(header)))] if draw(st.booleans()) else header
        itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(code, 1)
        n = int(np.prod([d for d in dims if d <= 6] or [1])) * itemsize
        data = header + draw(st.binary(min_size=max(0, n - 2), max_size=n + 2))
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
        if draw(st.booleans()) and data:
            cut = draw(st.integers(0, len(data) - 1))
            data = data[:cut] + bytes([data[cut] ^ draw(st.integers(1, 255))]) + data[cut + 1 :]
    return data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(idx_like())
def test_read_idx_property(hyp_file, data):
    p = hyp_file
    p.write_bytes(data)
    try:
        out = read_idx(p)
    except IDXFormatError as exc:
        assert str(p) in str(exc)
    else:
        assert isinstance(out, np.ndarray) and 1 <= out.ndim <= 4 and out.dtype.isnative


# --------------------------------------------------------------------------------------------------
# gpunn.progress
# --------------------------------------------------------------------------------------------------


def test_progress_fallback(monkeypatch, capsys):
    monkeypatch.setattr(P, "_get_tqdm", lambda: None)
    assert list(P.progress(range(3), desc="it", disable=False)) == [0, 1, 2]
    assert "it: 3/3 it" in capsys.readouterr().err
    with P.progress(total=100, desc="dl", unit="B", unit_scale=True, disable=False) as bar:
        assert isinstance(bar, P.SimpleProgress)
        bar.update(40)
        bar.update(60)
        bar.set_postfix(loss=0.1234567, epoch=2)
        bar.set_description("dl2")
    bar.close()  # closing twice prints once
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dl2: 100/100 B" in err and "loss=0.1235, epoch=2" in err
    with P.progress(total=5, disable=True) as bar:
        bar.update(5)
    with P.progress(total=5, disable=None) as bar:  # stderr captured: not a TTY, so silent
        bar.update(5)
    assert capsys.readouterr().err == ""


def test_progress_tqdm():
    tqdm = pytest.importorskip("tqdm")
    bar = P.progress(total=3, disable=True)
    assert isinstance(bar, tqdm.tqdm)
    bar.update(3)
    bar.set_postfix(loss=1.0)
    bar.close()


def test_no_numpy_import_in_my_modules():
    root = Path(D.__file__).parent
    for name in ("datasets.py", "progress.py"):
        text = (root / name).read_text()
        assert "import numpy" not in text and "import cupy" not in text
