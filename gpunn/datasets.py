"""MNIST and Fashion-MNIST loaders, and a strict reader for the IDX file format they are stored in.

Conventions (every loader):

* Arrays are host (NumPy) arrays; the trainer moves batches to the device.
* Images are scaled from bytes to ``[0, 1]`` in ``dtype`` (float32 by default).  ``flatten=True``
  (default) gives shape ``(n, 784)``; ``flatten=False`` keeps ``(n, 28, 28)``.
* Labels are int64 class indices ``(n,)`` by default; ``one_hot=True`` gives ``(n, 10)`` in ``dtype``.
* The result unpacks the textbook way::

      (x_train, t_train), (x_test, t_test) = load_mnist()
      (x_train, t_train), (x_val, t_val), (x_test, t_test) = load_mnist(validation=10_000)

  and also has attributes: ``data.train.x``, ``data.val`` (None without a validation split),
  ``data.test.t``, ``data.name``, ``data.class_names``.
* ``validation``: 0 (default) for no split; an int count, or a float fraction in ``(0, 1)``, of the
  training set, drawn with ``numpy.random.default_rng(seed)`` (``seed=0`` by default, so the split is
  the same on every run).  Both parts keep the original file order.

Where the files are looked for, in order (the first directory holding all the needed files wins):

1. ``path=`` (alias ``data_dir=``), and ``path/<name>``;
2. each directory in ``$GPUNN_DATA`` (``os.pathsep``-separated), and ``$GPUNN_DATA/<name>``;
3. ``~/.cache/gpunn/<name>``;
4. for Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist``
   (``apt-get install -y dataset-fashion-mnist``);
5. with ``download=True`` (default), the files are downloaded from the standard mirrors into
   ``~/.cache/gpunn/<name>``, each checked against its published md5 before it is renamed into
   place (a partial or corrupt download never stays in the cache).

``<name>`` is ``mnist`` or ``fashion-mnist``.  The file names are the usual
``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
``t10k-labels-idx1-ubyte.gz``; the same names without ``.gz`` are accepted too.  If nothing is found
a :class:`DatasetNotFoundError` (a ``FileNotFoundError``) lists every place searched, why each
download failed, and how to get the files.  Local files are not checksummed (Debian recompresses
its copies, for instance), but every file is fully validated by :func:`read_idx`.

Only have the 10,000 MNIST *test* digits (``t10k-*``)?  :func:`load_mnist_test_split` splits them
deterministically into a training and a test part.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .backend import host_xp
from .progress import progress

np = host_xp()

__all__ = [
    "IDXFormatError",
    "DatasetNotFoundError",
    "Split",
    "DatasetSplits",
    "read_idx",
    "load_idx_pair",
    "data_search_path",
    "find_data_dir",
    "download_dataset",
    "load_mnist",
    "load_fashion_mnist",
    "load_mnist_test_split",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FILES",
]

# --------------------------------------------------------------------------------------------------
# Dataset registry
# --------------------------------------------------------------------------------------------------

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
#: The four files of an MNIST-style dataset, without the ``.gz`` suffix.
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
_TEST_FILES = (TEST_IMAGES, TEST_LABELS)

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_DATASETS: dict[str, dict[str, Any]] = {
    "mnist": {
        "title": "MNIST",
        "mirrors": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        # checksums of the .gz files as published: (algorithm, hex digest); sha256 works too
        "checksums": {
            TRAIN_IMAGES: ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            TRAIN_LABELS: ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
            TEST_IMAGES: ("md5", "9fb629c4189551a2d022fa330f9573f3"),
            TEST_LABELS: ("md5", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        "system_dirs": (),
        "classes": MNIST_CLASSES,
    },
    "fashion-mnist": {
        "title": "Fashion-MNIST",
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "checksums": {
            TRAIN_IMAGES: ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            TRAIN_LABELS: ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
            TEST_IMAGES: ("md5", "bef4ecab320f06d8554ea6380940ec79"),
            TEST_LABELS: ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        "system_dirs": ("/usr/share/datasets/fashion-mnist",),
        "classes": FASHION_MNIST_CLASSES,
    },
}

_DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20


def _canonical_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    return key


# --------------------------------------------------------------------------------------------------
# Errors and result types
# --------------------------------------------------------------------------------------------------


class IDXFormatError(ValueError):
    """A file is not a valid IDX file (bad magic, truncated, trailing data, corrupt gzip, ...), or an
    images/labels pair does not fit together.  The message starts with the file's path."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files were found nowhere and could not be downloaded.  The message lists every
    place searched, every failed download, and how to get the files."""

    #: one line per failed download attempt (set by :func:`download_dataset`)
    download_errors: Sequence[str] = ()


class Split(NamedTuple):
    """One part of a dataset: inputs ``x`` and targets ``t``; unpacks as ``x, t = split``."""

    # host arrays (numpy.ndarray); ``object``, not ``Any``: NamedTuple's generated __new__ cannot
    # resolve names of this module, which pdoc (the API reference) reports as an error
    x: object
    t: object

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.x.shape[0])


class DatasetSplits(tuple):
    """``(train, test)``, or ``(train, val, test)`` when a validation split was asked for.

    A tuple of :class:`Split` pairs, so ``(x_train, t_train), (x_test, t_test) = data`` works, with
    attributes ``train``, ``val`` (None when there is no validation split), ``test``, ``name``,
    ``class_names`` and ``num_classes``.
    """

    def __new__(
        cls,
        train: Split,
        test: Split,
        val: Split | None = None,
        *,
        name: str = "",
        class_names: Sequence[str] = (),
    ):
        parts = (train, test) if val is None else (train, val, test)
        self = super().__new__(cls, parts)
        self.train = train
        self.val = val
        self.test = test
        self.name = name
        self.class_names = tuple(class_names)
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __reduce__(self):  # pickling (e.g. to worker processes) keeps the attributes
        kw = {"name": self.name, "class_names": self.class_names}
        return (_rebuild_splits, (self.train, self.test, self.val, kw))

    def __repr__(self) -> str:
        parts = [f"train={self.train.n}"]
        if self.val is not None:
            parts.append(f"val={self.val.n}")
        parts.append(f"test={self.test.n}")
        return f"DatasetSplits({self.name!r}, {', '.join(parts)}, x={self.train.x.shape[1:]})"


def _rebuild_splits(train, test, val, kw):
    return DatasetSplits(train, test, val, **kw)


# --------------------------------------------------------------------------------------------------
# IDX reader
# --------------------------------------------------------------------------------------------------

# IDX type codes -> big-endian NumPy dtype strings
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
# DEFLATE cannot compress better than about 1032:1, so a gzip file of c bytes holds at most this
# many times c bytes (plus slack for tiny files): larger declared sizes are rejected before reading.
_MAX_DEFLATE_RATIO = 1100


def _read_exactly(stream, n: int) -> bytes:
    """Read up to ``n`` bytes (fewer only at end of stream)."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _read_upto(stream, n: int) -> bytearray:
    """Read at most ``n`` bytes in bounded chunks, so a huge ``n`` never allocates up front."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(min(n - len(out), _CHUNK))
        if not chunk:
            break
        out += chunk
    return out


def _parse_header(stream, where: str, *, compressed: bool) -> tuple[Any, tuple[int, ...], int]:
    """Read and validate the IDX header; return (big-endian dtype, shape, header length)."""
    kind = "decompressed data" if compressed else "file"
    magic = _read_exactly(stream, 4)
    if len(magic) < 4:
        raise IDXFormatError(f"{where}: too short for an IDX header ({kind} has {len(magic)} bytes)")
    if magic[0] != 0 or magic[1] != 0:
        raise IDXFormatError(
            f"{where}: bad magic number 0x{magic.hex()}: not an IDX file (expected 0x0000 then a type "
            "code and the number of dimensions)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise IDXFormatError(f"{where}: unknown IDX data type code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= 4:
        raise IDXFormatError(f"{where}: unsupported number of dimensions {ndim} (expected 1 to 4)")
    raw_dims = _read_exactly(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IDXFormatError(
            f"{where}: truncated header: {ndim} dimensions need {4 * ndim} bytes after the magic "
            f"number, {kind} has {len(raw_dims)}"
        )
    shape = tuple(int(d) for d in struct.unpack(f">{ndim}I", raw_dims))
    dtype = np.dtype(_IDX_DTYPES[code])
    if _expected_bytes(dtype, tuple(d for d in shape if d)) > np.iinfo(np.intp).max:
        # NumPy refuses such a shape even when another dimension is 0 (the array would be empty)
        raise IDXFormatError(
            f"{where}: truncated or corrupt: header declares shape {shape}, beyond any array"
        )
    return dtype, shape, 4 + 4 * ndim


def _expected_bytes(dtype, shape: tuple[int, ...]) -> int:
    total = dtype.itemsize
    for d in shape:
        total *= d  # Python ints: no overflow, however absurd the header
    return total


def _to_array(buf: bytearray, dtype, shape: tuple[int, ...]):
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)  # writable: backed by a bytearray
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def read_idx(path: str | os.PathLike):
    """Read an IDX file (gzip-compressed or raw, detected by its magic bytes) into a NumPy array.

    Returns a writable, native-endian array with the file's dtype (uint8, int8, int16, int32,
    float32 or float64) and shape (1 to 4 dimensions).  The header is validated strictly and the
    data length must match it exactly; the declared size is checked against the file size before
    anything is allocated, so a corrupt header cannot cause a huge allocation.

    Raises :class:`IDXFormatError` (a ``ValueError``) naming the file and the problem: bad magic,
    unknown type code, bad number of dimensions, truncated header or data, trailing data, corrupt
    gzip stream.  A missing file raises ``FileNotFoundError`` as usual.
    """
    path = Path(path)
    where = str(path)
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        compressed = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if compressed:
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                    dtype, shape, _ = _parse_header(gz, where, compressed=True)
                    expected = _expected_bytes(dtype, shape)
                    if expected > file_size * _MAX_DEFLATE_RATIO + 4096:
                        raise IDXFormatError(
                            f"{where}: truncated or corrupt: header declares shape {shape}, {expected} "
                            f"bytes of data, more than a {file_size}-byte gzip file can hold"
                        )
                    # one byte more than declared, so trailing data is noticed (and, at the end of
                    # the stream, gzip's CRC and length checks run)
                    buf = _read_upto(gz, expected + 1)
            except IDXFormatError:
                raise
            except (OSError, EOFError, zlib.error) as exc:
                raise IDXFormatError(f"{where}: corrupt gzip data ({exc.__class__.__name__}: {exc})") from exc
            if len(buf) != expected:
                problem, got = ("truncated", len(buf)) if len(buf) < expected else ("trailing data", "more")
                raise IDXFormatError(
                    f"{where}: {problem}: header declares shape {shape}, {expected} bytes of data, "
                    f"decompressed data has {got}"
                )
        else:
            dtype, shape, header_len = _parse_header(f, where, compressed=False)
            expected = _expected_bytes(dtype, shape)
            payload = file_size - header_len
            if payload != expected:  # checked before allocating anything
                problem = "truncated" if payload < expected else "trailing data"
                raise IDXFormatError(
                    f"{where}: {problem}: header declares shape {shape}, {expected} bytes of data, "
                    f"file has {payload}"
                )
            buf = bytearray(payload)
            got = f.readinto(buf)
            if got != payload:  # the file shrank while being read
                raise IDXFormatError(f"{where}: truncated: expected {payload} bytes of data, read {got}")
    return _to_array(buf, dtype, shape)


def load_idx_pair(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    *,
    flatten: bool = True,
    one_hot: bool = False,
    num_classes: int = 10,
    dtype: str = "float32",
) -> Split:
    """Load one images/labels pair of IDX files as ``Split(x, t)`` with the module's conventions.

    ``images_path`` must hold unsigned bytes of shape ``(n, rows, cols)``, ``labels_path`` unsigned
    bytes of shape ``(n,)`` with values in ``0 .. num_classes-1``; otherwise :class:`IDXFormatError`.
    ``x`` is ``(n, rows*cols)`` (or ``(n, rows, cols)`` with ``flatten=False``) scaled to [0, 1] in
    ``dtype``; ``t`` is int64 ``(n,)``, or ``(n, num_classes)`` in ``dtype`` with ``one_hot=True``.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise IDXFormatError(
            f"{images_path}: expected unsigned-byte images of shape (n, rows, cols), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXFormatError(
            f"{labels_path}: expected unsigned-byte labels of shape (n,), got {labels.dtype} {labels.shape}"
        )
    if images.shape[0] == 0:
        raise IDXFormatError(
            f"{images_path}: holds 0 images (an empty dataset); check that the file is "
            "complete and is the right one"
        )
    if images.shape[0] != labels.shape[0]:
        raise IDXFormatError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise IDXFormatError(
            f"{labels_path}: label {int(labels[bad])} at index {bad} is out of range 0..{num_classes - 1}"
        )
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dt}")
    x = images.astype(dt)
    x /= dt.type(255)
    if flatten:
        x = x.reshape(x.shape[0], -1)
    t = labels.astype(np.int64)
    if one_hot:
        t = _one_hot(t, num_classes, dt)
    return Split(x, t)


def _one_hot(t, num_classes: int, dtype):
    out = np.zeros((t.shape[0], num_classes), dtype=dtype)
    out[np.arange(t.shape[0]), t] = 1
    return out


# --------------------------------------------------------------------------------------------------
# Finding and downloading the files
# --------------------------------------------------------------------------------------------------


def _cache_dir(name: str) -> Path:
    return Path.home() / ".cache" / "gpunn" / name


def data_search_path(name: str, path: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """The directories searched for dataset ``name``, in order, as ``(directory, where-from)`` pairs."""
    name = _canonical_name(name)
    out: list[tuple[Path, str]] = []
    if path is not None:
        p = Path(path).expanduser()
        out += [(p, "path= argument"), (p / name, "path= argument")]
    env = os.environ.get("GPUNN_DATA", "")
    for entry in (e for e in env.split(os.pathsep) if e):
        p = Path(entry).expanduser()
        out += [(p, "$GPUNN_DATA"), (p / name, "$GPUNN_DATA")]
    out.append((_cache_dir(name), "cache"))
    for d in _DATASETS.get(name, {}).get("system_dirs", ()):
        out.append((Path(d), "system package"))
    seen: set[Path] = set()
    unique = []
    for p, why in out:
        if p not in seen:
            seen.add(p)
            unique.append((p, why))
    return unique


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _missing(directory: Path, files: Sequence[str]) -> list[str]:
    return [stem for stem in files if _find_file(directory, stem) is None]


def _describe(directory: Path, files: Sequence[str]) -> str:
    if not directory.exists():
        return "does not exist"
    if not directory.is_dir():
        return "is not a directory"
    missing = _missing(directory, files)
    if not missing:
        return "has all the files"
    return "missing " + ", ".join(f"{m}[.gz]" for m in missing)


def _not_found_message(
    name: str, path, files: Sequence[str], download: bool, download_errors: Sequence[str]
) -> str:
    info = _DATASETS.get(name, {"title": name, "system_dirs": ()})
    title = info["title"]
    lines = [f"{title} dataset not found: need {', '.join(f + '[.gz]' for f in files)}.", "Looked in:"]
    if path is None:
        lines.append("  - (no path= / data_dir= given)")
    if not os.environ.get("GPUNN_DATA"):
        lines.append("  - $GPUNN_DATA (not set)")
    for d, why in data_search_path(name, path):
        lines.append(f"  - {d} [{why}]: {_describe(d, files)}")
    if not download:
        lines.append("Downloading is disabled (download=False).")
    elif download_errors:
        lines.append(f"Downloading into {_cache_dir(name)} failed:")
        lines += [f"  - {e}" for e in download_errors]
    lines.append("To get the files:")
    lines.append("  - pass path=DIR (examples: --data-dir DIR) for a directory holding them, or")
    lines.append(f"  - set GPUNN_DATA=DIR (searched as DIR and DIR/{name}), or")
    if name in _DATASETS:
        lines.append(f"  - call with download=True while online (saved in {_cache_dir(name)})")
    for d in info.get("system_dirs", ()):
        lines.append(f"  - on Debian/Ubuntu: apt-get install -y dataset-{name}  (installs {d})")
    if name == "mnist" and set(files) != set(_TEST_FILES):
        for d, _ in data_search_path(name, path):
            if d.is_dir() and not _missing(d, _TEST_FILES):
                lines.append(
                    f"  - only the test files are in {d}: gpunn.datasets.load_mnist_test_split(path="
                    f"{str(d)!r}) splits those 10,000 digits into a training and a test part"
                )
                break
    return "\n".join(lines)


def find_data_dir(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    files: Sequence[str] = FILES,
    download: bool = False,
    progress_bar: bool | None = None,
) -> Path:
    """Return the first directory (see the module docstring for the order) holding all ``files``.

    ``name`` is ``"mnist"`` or ``"fashion-mnist"``; ``files`` are file names without ``.gz``
    (default: all four).  With ``download=True`` missing files are downloaded into
    ``~/.cache/gpunn/<name>`` when no directory has them.  Raises :class:`DatasetNotFoundError`.
    """
    name = _canonical_name(name)
    for d, _ in data_search_path(name, path):
        if d.is_dir() and not _missing(d, files):
            return d
    errors: list[str] = []
    if download and name in _DATASETS:
        try:
            return download_dataset(name, files=files, progress_bar=progress_bar)
        except DatasetNotFoundError as exc:
            errors = list(exc.download_errors)
    raise DatasetNotFoundError(_not_found_message(name, path, files, download, errors))


def _download_file(url: str, dest: Path, checksum: tuple[str, str], progress_bar: bool | None) -> None:
    """Download ``url`` to ``dest`` through a temporary file in the same directory, verified by
    ``checksum`` before the rename; the temporary file is removed on every failure."""
    algo, expected = checksum
    h = hashlib.new(algo, usedforsecurity=False)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                total = None
                headers = getattr(resp, "headers", None)
                if headers is not None:
                    try:
                        total = int(headers.get("Content-Length") or 0) or None
                    except (TypeError, ValueError):
                        total = None
                with progress(
                    total=total,
                    desc=dest.name,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    disable=(not progress_bar) if progress_bar is not None else None,
                ) as bar:
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
        digest = h.hexdigest()
        if digest.lower() != expected.lower():
            raise ValueError(f"checksum mismatch: {algo} {digest}, expected {expected}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def download_dataset(
    name: str,
    *,
    files: Sequence[str] = FILES,
    directory: str | os.PathLike | None = None,
    progress_bar: bool | None = None,
) -> Path:
    """Download the missing ``files`` (``.gz``) of dataset ``name`` into ``directory`` (default
    ``~/.cache/gpunn/<name>``) and return that directory.

    Each mirror is tried in turn; a file is written to a temporary file, checked against its
    published checksum and only then renamed into place.  ``progress_bar``: True/False, or None
    (default) for a bar only when stderr is a terminal.  Raises :class:`DatasetNotFoundError` (with
    attribute ``download_errors``, one line per failed attempt) if a file could not be had.
    """
    name = _canonical_name(name)
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(_DATASETS)})")
    info = _DATASETS[name]
    target = Path(directory).expanduser() if directory is not None else _cache_dir(name)
    errors: list[str] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        errors.append(f"cannot create {target}: {exc}")
    for stem in files if not errors else ():
        if _find_file(target, stem) is not None:
            continue
        dest = target / f"{stem}.gz"
        attempts: list[str] = []
        for mirror in info["mirrors"]:
            url = mirror + dest.name
            try:
                _download_file(url, dest, info["checksums"][stem], progress_bar)
                break
            except urllib.error.HTTPError as exc:
                attempts.append(f"{url}: HTTP {exc.code} {exc.reason}")
            except urllib.error.URLError as exc:
                attempts.append(f"{url}: {exc.reason}")
            except Exception as exc:  # timeouts, resets, checksum mismatch, disk full, ...
                attempts.append(f"{url}: {exc.__class__.__name__}: {exc}")
        else:
            errors += attempts  # this file failed on every mirror: give up
            break
    if errors or _missing(target, files):
        err = DatasetNotFoundError(
            f"could not download {info['title']} into {target}:\n" + "\n".join(f"  - {e}" for e in errors)
        )
        err.download_errors = errors
        raise err
    return target


# --------------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------------


def _n_validation(validation: int | float, n: int) -> int:
    if isinstance(validation, bool):
        raise TypeError("validation must be an int count or a float fraction, not a bool")
    if isinstance(validation, float):
        if not 0.0 <= validation < 1.0:
            raise ValueError(f"validation fraction must be in [0, 1), got {validation}")
        k = int(round(validation * n))
        if validation > 0 and k == 0:
            k = 1
    else:
        k = int(validation)
        if k != validation or k < 0:
            raise ValueError(f"validation count must be a non-negative int, got {validation!r}")
    if k >= n and k > 0:
        raise ValueError(f"validation={validation!r} leaves no training examples (training set has {n})")
    return k


def _seeded_split(n: int, k: int, seed: int | None):
    """Indices (first, rest): ``k`` chosen by a seeded permutation and the other ``n - k``, each sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:k]), np.sort(perm[k:])


def _take(split: Split, idx) -> Split:
    return Split(split.x[idx], split.t[idx])


def _load(
    name: str, path, *, data_dir, flatten, one_hot, validation, seed, download, dtype, progress_bar
) -> DatasetSplits:
    if path is not None and data_dir is not None and Path(path) != Path(data_dir):
        raise TypeError("pass either path= or data_dir=, not both")
    path = path if path is not None else data_dir
    info = _DATASETS[name]
    d = find_data_dir(name, path, files=FILES, download=download, progress_bar=progress_bar)
    kw = dict(flatten=flatten, one_hot=one_hot, num_classes=len(info["classes"]), dtype=dtype)
    train = load_idx_pair(_find_file(d, TRAIN_IMAGES), _find_file(d, TRAIN_LABELS), **kw)
    test = load_idx_pair(_find_file(d, TEST_IMAGES), _find_file(d, TEST_LABELS), **kw)
    val = None
    k = _n_validation(validation, train.n)
    if k:
        val_idx, train_idx = _seeded_split(train.n, k, seed)
        train, val = _take(train, train_idx), _take(train, val_idx)
    return DatasetSplits(train, test, val, name=name, class_names=info["classes"])


def _loader(name: str, public_name: str, doc: str):
    """The public loader of dataset ``name``: one signature for MNIST and its drop-in twins."""

    def load(
        path: str | os.PathLike | None = None,
        *,
        data_dir: str | os.PathLike | None = None,
        flatten: bool = True,
        one_hot: bool = False,
        validation: int | float = 0,
        seed: int | None = 0,
        download: bool = True,
        dtype: str = "float32",
        progress_bar: bool | None = None,
    ) -> DatasetSplits:
        return _load(
            name,
            path,
            data_dir=data_dir,
            flatten=flatten,
            one_hot=one_hot,
            validation=validation,
            seed=seed,
            download=download,
            dtype=dtype,
            progress_bar=progress_bar,
        )

    load.__name__ = load.__qualname__ = public_name
    load.__doc__ = doc
    return load


load_mnist = _loader(
    "mnist",
    "load_mnist",
    """\
Load MNIST (60,000 training and 10,000 test handwritten digits, 28x28, classes 0-9).

    ``(x_train, t_train), (x_test, t_test) = load_mnist()``, or with ``validation=N`` (or a
    fraction) ``(x_train, t_train), (x_val, t_val), (x_test, t_test)``.  See the module docstring
    for the array conventions and where the files are looked for; ``data_dir`` is an alias of
    ``path``.  Raises :class:`DatasetNotFoundError` when the files cannot be found or downloaded
    (if only the t10k files exist, use :func:`load_mnist_test_split`), :class:`IDXFormatError` for
    a corrupt file.
    """,
)

load_fashion_mnist = _loader(
    "fashion-mnist",
    "load_fashion_mnist",
    """\
Load Fashion-MNIST (60,000 + 10,000 28x28 images of clothing, 10 classes, see
    :data:`FASHION_MNIST_CLASSES`); same interface and conventions as :func:`load_mnist`.

    On Debian/Ubuntu ``apt-get install -y dataset-fashion-mnist`` provides the files in
    ``/usr/share/datasets/fashion-mnist``, which is searched automatically.
    """,
)


def load_mnist_test_split(
    path: str | os.PathLike | None = None,
    n_train: int = 8000,
    seed: int | None = 0,
    one_hot: bool = False,
    flatten: bool = True,
    *,
    download: bool = True,
    dtype: str = "float32",
    progress_bar: bool | None = None,
) -> DatasetSplits:
    """Load only MNIST's 10,000 test digits (``t10k-*``) and split them into train and test parts.

    For when just the test set is at hand.  A permutation drawn with
    ``numpy.random.default_rng(seed)`` picks ``n_train`` digits (default 8,000) for training and
    the rest (2,000) for testing; both keep the file order, so the split is the same on every run
    and machine for a given seed.  Returns ``(x_train, t_train), (x_test, t_test)`` with the
    module's conventions.  The files are searched like :func:`load_mnist`'s, but only the two
    t10k files are needed (and downloaded with ``download=True``).
    """
    d = find_data_dir("mnist", path, files=_TEST_FILES, download=download, progress_bar=progress_bar)
    full = load_idx_pair(
        _find_file(d, TEST_IMAGES),
        _find_file(d, TEST_LABELS),
        flatten=flatten,
        one_hot=one_hot,
        num_classes=10,
        dtype=dtype,
    )
    if isinstance(n_train, bool) or not 0 < int(n_train) < full.n or int(n_train) != n_train:
        raise ValueError(f"n_train must be an int in 1..{full.n - 1}, got {n_train!r}")
    train_idx, test_idx = _seeded_split(full.n, int(n_train), seed)
    return DatasetSplits(
        _take(full, train_idx), _take(full, test_idx), name="mnist-t10k-split", class_names=MNIST_CLASSES
    )
