"""Datasets as uint8 tensors in memory, and batches drawn from them with batched augmentation.

Every dataset is loaded once into ``(N, C, H, W)`` uint8 tensors. Batches are cut from those tensors
(no DataLoader workers, no PIL per sample): random crop with zero padding and horizontal flip run on
the whole batch at once, then conversion to float, normalization and channels_last, on the device the
tensors live on. That is what makes the CPU loop fast (see benchmarks/train_throughput.py).

Names: ``cifar10``, ``mnist``, ``fashion-mnist`` (through torchvision; Fashion-MNIST is also found in
Debian's ``dataset-fashion-mnist`` offline) and ``fashion-mnist-mini``, the real, class-balanced subset
committed under ``data/`` (built by ``scripts/build_mini.py``) that the quick profile uses.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from labkit import HOME, REPOSITORY
from labkit.atomic import atomic_open

MINI_PATH = HOME / "data" / "fashion-mnist-mini.npz"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("cifar10", "mnist", "fashion-mnist", "fashion-mnist-mini")
# Horizontal flips are label-preserving for objects and clothes, not for digits.
_HFLIP = {"cifar10": True, "mnist": False, "fashion-mnist": True, "fashion-mnist-mini": True}


class DamagedDataError(ValueError):
    """A data file that is there but does not read back as written."""


class DatasetNotFound(FileNotFoundError):
    """A dataset is neither on disk nor downloadable; the message says where it looked and what to do."""


def data_root() -> Path:
    """Where torchvision datasets are cached: ``$LABKIT_DATA`` or ``labkit.HOME/data/cache``."""
    return Path(os.environ.get("LABKIT_DATA", HOME / "data" / "cache"))


@dataclass(frozen=True)
class Dataset:
    """Train and test images as uint8 ``(N, C, H, W)`` tensors with int64 labels, plus the
    per-channel mean/std (of the training images, in 0..1 units) used to normalize batches."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True
    num_classes: int = 10

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[-1]

    @property
    def input_size(self) -> tuple[int, int, int]:
        """One example's shape ``(C, H, W)``, as ``labkit.measure`` takes it."""
        return tuple(self.train_x.shape[1:])

    def to(self, device, split: str | None = None) -> Dataset:
        """The same dataset with its tensors (only ``split``'s, if given) on ``device``, moved once,
        not per batch; tensors already there are not copied."""
        splits = ("train", "test") if split is None else (split,)
        self.split(splits[0])  # checks the name
        moved = {f"{s}_{k}": getattr(self, f"{s}_{k}").to(device) for s in splits for k in "xy"}
        return replace(self, **moved)

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A class-balanced random subset (``None`` keeps a split whole); mean/std are kept."""
        g = torch.Generator().manual_seed(seed)
        return replace(self, **_balanced(self.train_x, self.train_y, n_train, g, "train"),
                       **_balanced(self.test_x, self.test_y, n_test, g, "test"))

    def at_most(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """``subset`` for splits larger than ``n``; a split with at most ``n`` images (or ``n`` None)
        stays whole."""
        def cut(n, available):
            return n if n is not None and n < available else None

        return self.subset(cut(n_train, len(self.train_y)), cut(n_test, len(self.test_y)), seed)

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r}: allowed are 'train' and 'test'")
        return (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None, max_batches: int | None = None,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)``: x float32, normalized, channels_last, on the data's device.

        ``augment`` applies random crop with 4-pixel zero padding (torchvision's
        ``RandomCrop(size, padding=4)`` before ``Normalize``) and, where the dataset allows it,
        horizontal flip with probability 1/2. Randomness (order and augmentation) comes from
        ``generator`` (CPU), so a seeded generator gives the same batches on any device; all of it is
        drawn up front and copied to the device once, so no batch waits for the host.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: allowed is an int >= 1")
        x_all, y_all = self.split(split)
        n = len(y_all)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        starts = range(0, n, batch_size)[:max_batches]
        used = min(n, len(starts) * batch_size)
        # One row per drawn quantity (order, then per batch: crop dy, crop dx, flip), in the order the
        # per-batch functions random_crop / random_hflip draw them, copied to the device in one piece.
        draws = [order[:used]]
        if augment:
            per_batch = [_augment_draws(min(batch_size, n - s), 4, self.hflip, generator) for s in starts]
            draws += [torch.cat(rows) for rows in zip(*per_batch, strict=True)]
        draws = torch.stack(draws).to(x_all.device)
        mean, std = self._constants(x_all.device)
        for start in starts:
            d = draws[:, start:start + batch_size]
            x = x_all[d[0]]
            if augment:
                x = crop(x, 4, d[1], d[2])
                if self.hflip:
                    x = hflip(x, d[3].bool())
            yield _normalize(x, mean, std), y_all[d[0]]

    def _constants(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and std as (1, C, 1, 1) tensors on ``device``."""
        return (torch.tensor(self.mean, device=device).view(1, -1, 1, 1),
                torch.tensor(self.std, device=device).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 ``(x/255 - mean)/std`` in channels_last."""
        return _normalize(x, *self._constants(x.device))


def _normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = (x.float().div_(255) - mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


def _augment_draws(n: int, padding: int, hflip: bool, generator) -> list[torch.Tensor]:
    """The random draws of one batch's augmentation, on the CPU: crop offsets dy, dx and flip flags
    (zeros without ``hflip``), in the order ``random_crop`` and ``random_hflip`` make them."""
    dy, dx = _offsets(n, padding, generator)
    flip = _flips(n, generator).long() if hflip else torch.zeros(n, dtype=torch.long)
    return [dy, dx, flip]


def _offsets(n: int, padding: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.randint(0, 2 * padding + 1, (n,), generator=generator) for _ in "yx")


def _flips(n: int, generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < 0.5


def crop(x: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Crop each image of a batch, zero-padded by ``padding`` on each side, back to its size at
    offsets ``(dy[i], dx[i])`` (tensors on the batch's device)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (n, 1, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing over (batch, row, col) gathers every crop in one op: result (n, h, w, c).
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random crop of a batch to its own size after zero-padding each side by ``padding``."""
    return crop(x, padding, *(d.to(x.device) for d in _offsets(len(x), padding, generator)))


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Flip the images of a batch left-right where the boolean ``flip`` (on the batch's device) is set."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of the batch left-right with probability 1/2."""
    return hflip(x, _flips(len(x), generator).to(x.device))


def _balanced(x, y, n, generator, split) -> dict:
    if n is None:
        return {}
    classes = torch.unique(y)
    if not isinstance(n, int) or n < len(classes) or n > len(y):
        raise ValueError(f"n_{split}={n!r}: allowed is an int from {len(classes)} to {len(y)} (or None)")
    per_class = [torch.nonzero(y == c).flatten() for c in classes]
    picks = []
    for i, members in enumerate(per_class):
        take = n // len(classes) + (1 if i < n % len(classes) else 0)
        picks.append(members[torch.randperm(len(members), generator=generator)[:take]])
    idx = torch.cat(picks).sort().values
    return {f"{split}_x": x[idx], f"{split}_y": y[idx]}


def _stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.double().div(255).transpose(0, 1).flatten(1)
    return tuple(xf.mean(1).tolist()), tuple(xf.std(1).tolist())


def _make(name: str, train_x, train_y, test_x, test_y) -> Dataset:
    train_x, test_x = (torch.as_tensor(np.asarray(a)) for a in (train_x, test_x))
    if train_x.ndim == 3:  # grayscale (N, H, W) -> (N, 1, H, W)
        train_x, test_x = train_x[:, None], test_x[:, None]
    elif train_x.shape[-1] == 3:  # torchvision's CIFAR arrays are (N, H, W, C)
        train_x, test_x = train_x.permute(0, 3, 1, 2), test_x.permute(0, 3, 1, 2)
    train_x, test_x = train_x.contiguous(), test_x.contiguous()
    mean, std = _stats(train_x)
    return Dataset(name, train_x, torch.as_tensor(np.asarray(train_y), dtype=torch.int64), test_x,
                   torch.as_tensor(np.asarray(test_y), dtype=torch.int64), mean, std, _HFLIP[name])


def _offline_fashion_mnist(root: Path) -> None:
    """Decompress Debian's Fashion-MNIST into torchvision's raw folder (its gzip files differ
    byte-wise from torchvision's md5 list, so torchvision must not see them as downloads); a file there
    whose size or CRC-32 is not the one the gzip's trailer gives (a copy cut short, a flipped bit) is
    decompressed again, which stderr is told."""
    raw = root / "FashionMNIST" / "raw"
    for gz in DEBIAN_FASHION_MNIST.glob("*-ubyte.gz"):
        target = raw / gz.name[:-3]
        with open(gz, "rb") as f:  # gzip's trailer: CRC-32 and size (mod 2^32; these are < 50 MB)
            f.seek(-8, os.SEEK_END)
            crc, size = int.from_bytes(f.read(4), "little"), int.from_bytes(f.read(4), "little")
        if target.exists():
            found = target.read_bytes()
            if len(found) == size and zlib.crc32(found) == crc:
                continue
            print(f"{target} is damaged ({len(found)} bytes, CRC-32 {zlib.crc32(found):08x}; {gz} says "
                  f"{size}, {crc:08x}): decompressing it again", file=sys.stderr)
        with gzip.open(gz) as src, atomic_open(target) as dst:
            shutil.copyfileobj(src, dst)


def _torchvision(name: str, root: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST}[name]
    if name == "fashion-mnist" and DEBIAN_FASHION_MNIST.is_dir():
        _offline_fashion_mnist(root)
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except RuntimeError:
        if not download:
            raise
        try:
            train = cls(str(root), train=True, download=True)
            test = cls(str(root), train=False, download=True)
        except Exception as exc:  # no network, or a mirror failed: one clear message
            hint = ("  apt-get install dataset-fashion-mnist   (offline, Debian)\n"
                    if name == "fashion-mnist" else "")
            raise DatasetNotFound(
                f"dataset {name!r} is not on disk and could not be downloaded ({type(exc).__name__}: "
                f"{exc}).\nSearched: {root} (set LABKIT_DATA to change it)"
                + (f", {DEBIAN_FASHION_MNIST}" if name == "fashion-mnist" else "")
                + f".\nTo obtain it: run once where the internet is reachable (torchvision downloads it "
                f"into {root}), or copy torchvision's files there.\n{hint}"
                "Offline, the quick profile's 'fashion-mnist-mini' needs nothing.") from exc
    return _make(name, train.data, train.targets, test.data, test.targets)


def save_npz(ds: Dataset, path: str | Path) -> None:
    """Write a dataset's uint8 images and labels to a compressed ``.npz`` (atomically)."""
    arrays = {k: getattr(ds, k).numpy() for k in ("train_x", "train_y", "test_x", "test_y")}
    for key in ("train_y", "test_y"):
        arrays[key] = arrays[key].astype(np.uint8)
    with atomic_open(path) as f:  # a file object, so numpy adds no ".npz" to the temporary name
        np.savez_compressed(f, **arrays)


def load_npz(path: str | Path, name: str) -> Dataset:
    """Read a dataset written by ``save_npz``; ``name`` picks the flip rule. A damaged file (the zip's
    CRC-32 of each array catches a flipped bit) is a DamagedDataError naming it."""
    try:
        with np.load(path) as z:
            return _make(name, z["train_x"], z["train_y"], z["test_x"], z["test_y"])
    except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, EOFError) as exc:
        raise DamagedDataError(f"{path} is damaged ({type(exc).__name__}: {exc}): restore it (`git checkout "
                               f"{path}` in a checkout, or `python scripts/build_mini.py`)") from exc


def load(name: str, root: str | Path | None = None, download: bool = True) -> Dataset:
    """Load a dataset by name (one of ``DATASETS``) into memory, on the CPU."""
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r}: allowed are {', '.join(DATASETS)}")
    if name == "fashion-mnist-mini":
        if not MINI_PATH.is_file():
            raise DatasetNotFound(f"{MINI_PATH} is missing: it ships with the repository ({REPOSITORY}); "
                                  "outside a checkout set LABKIT_HOME to one, or rebuild it with "
                                  "`python scripts/build_mini.py` (needs Debian's dataset-fashion-mnist)")
        return load_npz(MINI_PATH, name)
    return _torchvision(name, Path(root) if root is not None else data_root(), download)
