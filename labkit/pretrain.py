"""Pretrained models: the recipes that made the committed checkpoints, and the registry lookup that
trains and caches a missing one (CIFAR-10 / MNIST cannot ship here). A cached model is reused only
while its provenance (architecture, data set, recipe, training subset) is what is asked for."""

from __future__ import annotations

import sys
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
    # Deep Compression's Table 1 networks (LeNet-300-100, Caffe's LeNet-5 20-50-500)
    "lenet-300-100": train.TrainConfig(epochs=20, lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=128,
                                       schedule="cosine", augment=False),
    "lenet5-caffe": train.TrainConfig(epochs=20, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=128,
                                      schedule="cosine", augment=False),
}


def recipe(arch: str, **overrides) -> train.TrainConfig:
    """``RECIPES[arch]`` with fields overridden (e.g. ``epochs=5``)."""
    if arch not in RECIPES:
        raise ValueError(f"arch={arch!r}: allowed are {', '.join(RECIPES)}")
    return replace(RECIPES[arch], **overrides)


def pretrain(arch: str, dataset: str, *, out: str | Path | None = None, device=None, progress: bool = True,
             subset: tuple[int | None, int | None] = (None, None), **overrides) -> tuple[nn.Module, dict]:
    """Train ``arch`` on ``dataset`` (cut to ``subset``: at most that many training / test images,
    ``Dataset.at_most``) with its recipe (fields overridable, e.g. ``epochs=5``), keep the best epoch,
    save it to ``out`` (default: the registry path) and return ``(model, meta)``; the meta records the
    recipe and the subset. The recipe's seed is set before the model is built, so the same command gives
    the same weights on one machine."""
    config = recipe(arch, **overrides)
    ds = data.load(dataset).at_most(*subset)
    torch.manual_seed(config.seed)  # the initial weights are part of the recipe
    model = models.build(arch, num_classes=ds.num_classes, in_channels=ds.in_channels)
    start = time.perf_counter()
    device = torch.device(device) if device is not None else policy.get_device()
    history = train.fit(model, ds, config, device=device, progress=progress, desc=f"{arch}/{dataset}",
                        restore_best=True)
    out = Path(out) if out is not None else checkpoints.pretrained_path(arch, dataset)
    checkpoints.save_checkpoint(model.cpu(), out, arch=arch, dataset=dataset, accuracy=history.best_acc,
                                recipe=config.to_dict(), subset=list(subset), best_epoch=history.best_epoch,
                                train_seconds=round(time.perf_counter() - start, 1),
                                device=str(device))
    return checkpoints.load_model(out)


def provenance_mismatch(meta: dict, config: train.TrainConfig, subset=(None, None)) -> str | None:
    """Why a checkpoint's ``meta`` was not made by ``config`` on ``subset`` (None: it was). Fields the
    meta has but ``TrainConfig`` no longer knows are ignored."""
    made = meta.get("recipe", {})
    diff = [f"{k}={made.get(k)!r}, not {v!r}" for k, v in config.to_dict().items() if made.get(k) != v]
    if list(meta.get("subset", [None, None])) != list(subset):
        diff.append(f"subset={meta.get('subset')}, not {list(subset)}")
    return "; ".join(diff) or None


def pretrained(arch: str, dataset: str, *, tag: str | None = None, subset=(None, None),
               epochs: int | None = None, **model_kwargs) -> tuple[nn.Module, dict]:
    """``arch`` trained on ``dataset``: the committed checkpoint where there is one, else the cache's
    (``checkpoints.pretrained_path(arch, dataset, tag)``) if its provenance is the recipe (``epochs``
    overrides its epochs) on ``subset`` and it loads intact, else trained and cached first (minutes on a GPU;
    see README for CPU times), which the terminal is told. ``model_kwargs`` (e.g. ``nbits=4``) build a
    quantized variant around the same weights."""
    path = checkpoints.pretrained_path(arch, dataset, tag)
    config = recipe(arch, **({} if epochs is None else {"epochs": epochs}))
    why = None
    if path.is_file() and path.parent == checkpoints.CACHE_DIR:
        try:
            meta = checkpoints.load_checkpoint(path, arch=arch, dataset=dataset)[1]
            why = provenance_mismatch(meta, config, subset)
        except checkpoints.CheckpointError as exc:  # truncated, damaged or foreign: made again
            why = str(exc)
    if why or not path.is_file():
        print(f"pretraining {arch} on {dataset} ({config.epochs} epochs, subset {list(subset)}) into {path}"
              + (f"; the cached one differs: {why}" if why else ""), file=sys.stderr, flush=True)
        pretrain(arch, dataset, out=path, subset=subset, epochs=config.epochs)
    return checkpoints.load_model(path, arch=arch, dataset=dataset, **model_kwargs)
