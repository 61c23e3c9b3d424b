"""Started with every Python on PYTHONPATH in the stand-in tests (tests/standins.py): where
LABKIT_STANDIN=1, torchvision's CIFAR10 accepts the stand-in's files, whose md5 sums cannot match."""

import os

if os.environ.get("LABKIT_STANDIN") == "1":
    from torchvision.datasets import cifar as _cifar

    _cifar.check_integrity = lambda *args, **kwargs: True
