"""How long the quick profile's pretraining takes where no checkpoint is committed (CIFAR-10), on a
CIFAR-10 stand-in in torchvision's format (the mini set padded to 32x32x3, ``tests/standins.py``), so
that it runs offline: the time, the stand-in's test accuracy (not CIFAR-10's) and that a second call
reuses the cached model.

    python benchmarks/quick_pretrain.py [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from labkit import HOME, checkpoints, profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HOME / "tests"))
    import standins
    from torchvision.datasets import cifar

    cifar.check_integrity = lambda *a, **k: True  # the stand-in cannot match CIFAR-10's md5 sums
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        standins.cifar10(root / "data", n_train=10_000, n_test=2_000)
        os.environ["LABKIT_DATA"] = str(root / "data")
        checkpoints.CHECKPOINT_DIR, checkpoints.CACHE_DIR = root, root / "cache"
        start = time.perf_counter()
        _, meta = profiles.lab_model(profiles.QUICK, "resnet20", "cifar10")
        first = time.perf_counter() - start
        start = time.perf_counter()
        profiles.lab_model(profiles.QUICK, "resnet20", "cifar10")
        print(f"quick pretraining of ResNet-20 on the CIFAR-10 stand-in: {first:.0f} s with {args.threads} "
              f"thread(s), {meta['recipe']['epochs']} epochs on {meta['subset']}, stand-in test accuracy "
              f"{100 * meta['accuracy']:.1f}%; cached reuse {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
