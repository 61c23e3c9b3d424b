"""Small stand-ins for the handouts' data sets (CIFAR-10, MNIST) in torchvision's exact on-disk formats,
cut from the committed Fashion-MNIST mini set, so that the online paths (``data.load("cifar10")``, a
notebook or a grading run with ``DATASET="mnist"``) run here without a download.

torchvision checks CIFAR-10's files against their published md5 sums, which a stand-in cannot match:
``accept_cifar_checksums`` turns that check off in this process, and ``site_dir`` is a folder to put on
``PYTHONPATH`` so that kernels started by a notebook run or by ``labkit grade`` turn it off too (its
``sitecustomize`` does so only where ``LABKIT_STANDIN=1``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from labkit import data

SITE = Path(__file__).parent / "standin_site"


def _mini(n_train: int, n_test: int):
    """The first ``n_train`` / ``n_test`` mini-set images (N, 28, 28) uint8 and their labels."""
    with np.load(data.MINI_PATH) as z:
        train, test = slice(n_train), slice(n_test)
        return z["train_x"][train, 0], z["train_y"][train], z["test_x"][test, 0], z["test_y"][test]


def _idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the idx format MNIST ships in: magic 0x08 0x0N, big-endian sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def mnist(root: Path, n_train: int = 1000, n_test: int = 500) -> Path:
    """``root/MNIST/raw/*-ubyte``: 28x28 grayscale, as torchvision's MNIST reads it offline."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_x, train_y, test_x, test_y = _mini(n_train, n_test)
    _idx(raw / "train-images-idx3-ubyte", train_x)
    _idx(raw / "train-labels-idx1-ubyte", train_y)
    _idx(raw / "t10k-images-idx3-ubyte", test_x)
    _idx(raw / "t10k-labels-idx1-ubyte", test_y)
    return Path(root)


def _rgb32(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28) grayscale -> (N, 3 * 32 * 32) rows as CIFAR-10 stores them: padded to 32x32, the three
    channels differently scaled so that they are not copies of each other."""
    x = np.pad(x, ((0, 0), (2, 2), (2, 2))).astype(np.float32)
    channels = np.stack([x, 0.8 * x, 255 - x], axis=1)
    return channels.clip(0, 255).astype(np.uint8).reshape(len(x), -1)


def cifar10(root: Path, n_train: int = 1000, n_test: int = 500) -> Path:
    """``root/cifar-10-batches-py/``: five training batches, a test batch and ``batches.meta``, pickled dicts
    of (N, 3072) uint8 rows and labels, 32x32 RGB (call ``accept_cifar_checksums`` before loading)."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y, test_x, test_y = _mini(n_train, n_test)
    batches = np.array_split(np.arange(n_train), 5)
    for i, index in enumerate(batches, start=1):
        batch = {"data": _rgb32(train_x[index]), "labels": train_y[index].tolist()}
        _pickle(folder / f"data_batch_{i}", batch)
    _pickle(folder / "test_batch", {"data": _rgb32(test_x), "labels": test_y.tolist()})
    _pickle(folder / "batches.meta", {"label_names": [f"class {c}" for c in range(10)]})
    return Path(root)


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def accept_cifar_checksums(monkeypatch) -> None:
    """Let torchvision's CIFAR10 read a stand-in in this process (its md5 check would refuse it)."""
    from torchvision.datasets import cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)


def kernel_environment(monkeypatch, root: Path) -> None:
    """Point this process and the kernels it starts at the stand-ins under ``root``."""
    monkeypatch.setenv("LABKIT_DATA", str(root))
    monkeypatch.setenv("LABKIT_STANDIN", "1")
    monkeypatch.setenv("PYTHONPATH", str(SITE))
    accept_cifar_checksums(monkeypatch)
