"""The book's ``dataset/mnist.py`` loader: ``load_mnist(normalize=True, flatten=True, one_hot_label=False)``.

``(x_train, t_train), (x_test, t_test) = load_mnist(...)``, as in the book:

* ``normalize`` -- images as float32 in [0, 1] (``/ 255``); else the raw uint8 values;
* ``flatten`` -- images as rows of 784; else ``(N, 1, 28, 28)``;
* ``one_hot_label`` -- labels as one-hot float64 rows of 10; else class indices (int64 here; the
  book's are uint8 -- the same numbers).

The IDX files are read by :mod:`gpunn.datasets` from the first directory holding them among
``$GPUNN_DATA`` (and ``$GPUNN_DATA/mnist``) and ``~/.cache/gpunn/mnist`` (see
:func:`gpunn.datasets.data_search_path`):

1. all four files (60,000 training and 10,000 test digits): the book's data;
2. else only the two ``t10k-*`` files (the 10,000 test digits): they are split into 8,000 training
   and 2,000 test digits (:func:`gpunn.datasets.load_mnist_test_split`, seed 0), with a
   :class:`MnistSubsetWarning` -- a script then runs, but on other data than the book's;
3. else the four files are downloaded into ``~/.cache/gpunn/mnist`` (checksummed); if that fails a
   :class:`gpunn.datasets.DatasetNotFoundError` lists every place searched and how to get the files.
"""

from __future__ import annotations

import warnings
from functools import cache

from .. import datasets
from .optimizer import np

__all__ = ["load_mnist", "MnistSubsetWarning"]


class MnistSubsetWarning(UserWarning):
    """Only MNIST's 10,000 test digits were found: the 8,000/2,000 split of them is used."""


@cache
def _raw():
    """``((images, labels), (images, labels), where)`` as uint8 arrays, read once per process."""
    found = None
    for directory, _ in datasets.data_search_path("mnist"):
        if all(datasets._find_file(directory, f) for f in datasets.FILES):
            found = ("full", directory)
            break
    if found is None:
        for directory, _ in datasets.data_search_path("mnist"):
            if all(datasets._find_file(directory, f) for f in datasets._TEST_FILES):
                found = ("t10k", directory)
                break
    if found is None:  # the book downloads the data: so does this (or explains where to put it)
        found = ("full", datasets.find_data_dir("mnist", files=datasets.FILES, download=True))
    kind, d = found

    def pair(images, labels):
        return tuple(datasets.read_idx(datasets._find_file(d, f)) for f in (images, labels))

    test = pair(datasets.TEST_IMAGES, datasets.TEST_LABELS)
    if kind == "full":
        return pair(datasets.TRAIN_IMAGES, datasets.TRAIN_LABELS), test, str(d)
    train_idx, test_idx = datasets._seeded_split(test[0].shape[0], 8000, 0)
    return (test[0][train_idx], test[1][train_idx]), (test[0][test_idx], test[1][test_idx]), str(d)


def _prepare(images, labels, normalize, flatten, one_hot_label):
    x = images.reshape(images.shape[0], 1, 28, 28)
    if normalize:
        x = x.astype(np.float32)
        x /= np.float32(255.0)
    else:
        x = x.copy()
    if flatten:
        x = x.reshape(x.shape[0], 784)
    t = labels.astype(np.int64)
    if one_hot_label:
        one_hot = np.zeros((t.size, 10))
        one_hot[np.arange(t.size), t] = 1
        t = one_hot
    return x, t


def load_mnist(normalize=True, flatten=True, one_hot_label=False):
    """``(x_train, t_train), (x_test, t_test)`` of MNIST with the book's options (see the module)."""
    for name, v in (("normalize", normalize), ("flatten", flatten), ("one_hot_label", one_hot_label)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {v!r}")
    train, test, where = _raw()
    if train[0].shape[0] == 8000:
        warnings.warn(
            f"gpunn.textbook.load_mnist: only MNIST's 10,000 test digits were found (in {where}); "
            "using 8,000 of them for training and 2,000 for testing -- results differ from the "
            "book's, which trains on the 60,000 training digits.  Put the four MNIST files in "
            "$GPUNN_DATA or ~/.cache/gpunn/mnist for the book's data.",
            MnistSubsetWarning,
            stacklevel=2,
        )
    return (
        _prepare(*train, normalize, flatten, one_hot_label),
        _prepare(*test, normalize, flatten, one_hot_label),
    )
