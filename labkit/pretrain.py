"""Pretrained models: the recipes that made the committed checkpoints, and the registry lookup that
trains and caches a missing one (CIFAR-10 / MNIST cannot ship here; the full profile trains them)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from labkit import checkpoints, data, models, train
from labkit import device as policy

# Each recipe is the exact configuration used for the committed checkpoints (README lists results).
RECIPES = {
    "resnet20": train.TrainConfig(epochs=30, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128,
                                  schedule="cosine", augment=True),
    "lenet5": train.TrainConfig(epochs=20, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=128,
                                schedule="cosine", augment=False),
}


def pretrain(arch: str, dataset: str, *, out: str | Path | None = None, device=None, progress: bool = True,
             **overrides) -> tuple[nn.Module, dict]:
    """Train ``arch`` on ``dataset`` with its recipe (fields overridable, e.g. ``epochs=5``), keep the
    best epoch, save it to ``out`` (default: the registry path) and return ``(model, meta)``. The recipe's
    seed is set before the model is built, so the same command gives the same weights on one machine."""
    if arch not in RECIPES:
        raise ValueError(f"arch={arch!r}: allowed are {', '.join(RECIPES)}")
    config = replace(RECIPES[arch], **overrides)
    ds = data.load(dataset)
    torch.manual_seed(config.seed)  # the initial weights are part of the recipe
    model = models.build(arch, num_classes=ds.num_classes, in_channels=ds.in_channels)
    start = time.perf_counter()
    device = torch.device(device) if device is not None else policy.get_device()
    history = train.fit(model, ds, config, device=device, progress=progress, desc=f"{arch}/{dataset}",
                        restore_best=True)
    out = Path(out) if out is not None else checkpoints.pretrained_path(arch, dataset)
    checkpoints.save_checkpoint(model.cpu(), out, arch=arch, dataset=dataset, accuracy=history.best_acc,
                                recipe=config.to_dict(), best_epoch=history.best_epoch,
                                train_seconds=round(time.perf_counter() - start, 1),
                                device=str(device))
    return checkpoints.load_model(out)


def pretrained(arch: str, dataset: str, **model_kwargs) -> tuple[nn.Module, dict]:
    """Load ``arch`` trained on ``dataset`` from the registry, training and caching it first if it
    is missing (minutes on a GPU; see README for CPU times). ``model_kwargs`` (e.g. ``nbits=4``)
    build a quantized variant around the same weights."""
    path = checkpoints.pretrained_path(arch, dataset)
    if not path.is_file():
        pretrain(arch, dataset, out=path)
    return checkpoints.load_model(path, arch=arch, dataset=dataset, **model_kwargs)
