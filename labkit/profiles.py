"""Run profiles: what ``PROFILE = "quick" | "full"`` means for every lab notebook.

``quick`` runs all notebooks top to bottom in minutes on 2 CPU cores: the embedded mini set, 2 fine-tuning
epochs and 3 + 3 of iterative pruning at batch 64; ResNet-20 on a class-balanced subset of it (1000
training / 500 test images), LeNet-5 (75x fewer multiply-adds per 28x28 image) on half its training images
and all its test images (5,000 / 2,000). Batch 64 gives ResNet-20 16 steps per epoch: at batch 128 (8 steps)
BatchNorm's running statistics lag the pruned or quantized weights and the test accuracy after fine-tuning
fell below the training accuracy by 30 points (issue 25's measurements, docs/RESULTS.md). ``full`` is the
handouts' own settings (20 fine-tuning epochs, batch 256, 10 iterative pruning epochs) on the handouts' data
sets (CIFAR-10 for ResNet-20, MNIST for LeNet-5); a ``DATASET`` override (e.g. ``fashion-mnist``, which
works offline) applies to either. Where no checkpoint is committed (CIFAR-10, MNIST), ``quick`` pretrains on
its subsets for ``pretrain_epochs`` (minutes on 2 cores; cached as ``<arch>-<dataset>-quick.pt``), ``full``
with the recipe on all the data. ``tiny`` is a smoke test for the kit's own tests and for an instructor's dry
run of grading: the quick data and checkpoints cut to a few hundred images and one epoch per step, seconds
per notebook; no references are recorded for it, so only the property checks grade it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from labkit import data, pretrain


@dataclass(frozen=True)
class Profile:
    """Knobs a notebook reads instead of hard-coding epochs and sizes."""

    name: str
    finetune_epochs: int  # the handout's 20
    prune_epochs: int  # iterative pruning steps before the final one is kept (the handout's 10)
    batch_size: int  # the handout's 256
    datasets: dict = field(default_factory=dict)  # architecture -> default data set
    subsets: dict = field(default_factory=dict)  # architecture -> (training, test images); None/absent: all
    scan_fraction: float = 1.0  # share of the test images a per-layer sensitivity scan evaluates on
    # Where no checkpoint is committed (CIFAR-10, MNIST): pretraining epochs on ``subsets``; None: the
    # recipe on all the data.
    pretrain_epochs: int | None = None


QUICK = Profile("quick", finetune_epochs=2, prune_epochs=3, batch_size=64,
                datasets={"resnet20": "fashion-mnist-mini", "lenet5": "fashion-mnist-mini"},
                subsets={"resnet20": (1000, 500), "lenet5": (5000, 2000)}, scan_fraction=0.3,
                pretrain_epochs=30)
FULL = Profile("full", finetune_epochs=20, prune_epochs=10, batch_size=256,
               datasets={"resnet20": "cifar10", "lenet5": "mnist"})

TINY = Profile("tiny", finetune_epochs=1, prune_epochs=1, batch_size=64,
               datasets={"resnet20": "fashion-mnist-mini", "lenet5": "fashion-mnist-mini"},
               subsets={"resnet20": (320, 200), "lenet5": (1000, 500)}, scan_fraction=0.5, pretrain_epochs=1)


PROFILES = {profile.name: profile for profile in (QUICK, FULL, TINY)}  # the one table: the CLI's choices too


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (a key of ``PROFILES``)."""
    if name not in PROFILES:
        raise ValueError(f"PROFILE={name!r}: allowed are {', '.join(PROFILES)}")
    return PROFILES[name]


def dataset_name(profile: Profile, arch: str, dataset: str | None = None) -> str:
    """``dataset`` if given (the notebook's DATASET override), else the profile's default for ``arch``."""
    if dataset is None:
        return profile.datasets[arch]
    if dataset not in data.DATASETS:
        raise ValueError(f"DATASET={dataset!r}: allowed are None or one of {', '.join(data.DATASETS)}")
    return dataset


def lab_data(profile: Profile, arch: str, dataset: str | None = None) -> data.Dataset:
    """The data set a lab trains ``arch`` on, cut to the profile's class-balanced subsets for ``arch``."""
    return data.load(dataset_name(profile, arch, dataset)).at_most(*profile.subsets.get(arch, (None, None)))


def lab_model(profile: Profile, arch: str, dataset: str | None = None,
              **model_kwargs) -> tuple[nn.Module, dict]:
    """The pretrained ``arch`` for this profile / data set, on the device policy's device: the committed
    checkpoint where there is one; else trained and cached first, by the full profile with the recipe on
    all the data, by the others on the profile's subset for ``pretrain_epochs`` (cached as
    ``<arch>-<dataset>-<profile>.pt``)."""
    name = dataset_name(profile, arch, dataset)
    if profile.pretrain_epochs is None:
        return pretrain.pretrained(arch, name, **model_kwargs)
    return pretrain.pretrained(arch, name, tag=profile.name, subset=profile.subsets.get(arch, (None, None)),
                               epochs=profile.pretrain_epochs, **model_kwargs)
