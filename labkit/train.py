"""The one training / evaluation loop every lab uses.

``fit`` trains with SGD (momentum, weight decay, a per-step LR schedule) on batches drawn from an
in-memory ``labkit.data.Dataset``, evaluates after every epoch, keeps a per-epoch ``History`` and the
best state, and runs ``Callback`` hooks before each epoch and after every optimizer step (pruning
keeps its masks and follows its schedules through them). Deterministic for a given seed on CPU.
Device and precision follow ``labkit.device`` (``LABKIT_DEVICE``, ``LABKIT_PRECISION``); evaluation is
fp32 unless asked otherwise. A training step never waits for the host: the epoch's random draws are
copied to the device once, metrics accumulate on the device and are read once per epoch.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from labkit import device as policy
from labkit.data import Dataset

LR_SCHEDULES = ("cosine", "constant")  # learning-rate schedules (labs.PRUNE_SCHEDULES: pruning)


@dataclass
class TrainConfig:
    """Hyperparameters of one run. ``best_after``: the best state is tracked from that epoch on
    (iterative pruning only counts epochs after its final pruning step). ``max_batches``: cut each
    epoch to that many batches (benchmarks and tests). ``amp``: train in the device policy's autocast
    dtype (``LABKIT_PRECISION``); False: fp32."""

    epochs: int = 20
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    schedule: str = "cosine"
    augment: bool = True
    seed: int = 0
    best_after: int = 0
    max_batches: int | None = None
    amp: bool = True

    def __post_init__(self):
        if self.schedule not in LR_SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: allowed are {', '.join(LR_SCHEDULES)}")
        for name, low in (("epochs", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r}: allowed is an int >= {low}")
        if not self.lr > 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError(f"lr={self.lr}, weight_decay={self.weight_decay}, momentum={self.momentum}: "
                             "allowed are lr > 0, weight_decay >= 0, 0 <= momentum < 1")

    def to_dict(self) -> dict:
        return asdict(self)


class Callback:
    """Hooks into ``fit``; override what you need."""

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        """Before epoch ``epoch`` (0-based) trains."""

    def after_step(self, model: nn.Module) -> None:
        """After every ``optimizer.step()``."""


@dataclass
class History:
    """Per-epoch metrics (accuracies in 0..1) and the best test accuracy's state (a copy, on the
    device the model trained on)."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    images_per_s: list[float] = field(default_factory=list)
    best_acc: float = -1.0
    best_epoch: int = -1
    best_state: dict | None = field(default=None, repr=False)


def _lr_factor(schedule: str, step: int, total: int) -> float:
    if schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * step / max(1, total)))  # cosine


# Evaluation batches: a GPU wants large ones; on a CPU, batches of 128 stay in its caches and evaluated
# ResNet-20 twice as fast as batches of 1000 (2-core AVX2 EPYC: benchmarks/train_throughput.py).
EVAL_BATCH = {"cpu": 128}
EVAL_BATCH_OTHER = 1000


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, split: str = "test", device=None,
             batch_size: int | None = None, amp: bool = False) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (0..1) of ``model`` on a split, in fp32 (``amp``: in the
    device policy's autocast dtype), on ``device`` (default: where the model's parameters are), in
    batches of ``batch_size`` (default :data:`EVAL_BATCH` for the device's type); only that split is
    copied there. The model's train/eval mode is restored afterwards."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batch_size = batch_size or EVAL_BATCH.get(device.type, EVAL_BATCH_OTHER)
    dtype = policy.autocast_dtype(device) if amp else None
    policy.configure(device)
    data = data.to(device, split=split)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in data.batches(split, batch_size):
        with policy.autocast(device, dtype):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
    model.train(was_training)
    n = len(data.split(split)[1])
    return loss_sum.item() / n, correct.item() / n


def fit(model: nn.Module, data: Dataset, config: TrainConfig, callbacks=(), device=None,
        progress: bool = True, desc: str = "train", restore_best: bool = False) -> History:
    """Train ``model`` in place for ``config.epochs`` epochs on ``device`` (default: the device
    policy's; the model is moved there) and return its ``History``.

    The model ends in its last-epoch state, or with ``restore_best`` in its best one;
    ``history.best_state`` holds the best state either way."""
    device = torch.device(device) if device is not None else policy.get_device()
    dtype = policy.autocast_dtype(device) if config.amp else None
    policy.configure(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data = data.to(device)
    model.to(device=device, memory_format=torch.channels_last)
    scaler = policy.grad_scaler(device, dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    n_train = len(data.train_y)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    if config.max_batches is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_batches)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(config.schedule, s, total))
    history = History()
    for epoch in range(config.epochs):
        for cb in callbacks:
            cb.on_epoch_start(epoch, model)
        model.train()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        batches = data.batches("train", config.batch_size, shuffle=True, augment=config.augment,
                               generator=generator, max_batches=config.max_batches)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"{desc} {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False, unit="batch")
        for x, y in bar:
            with policy.autocast(device, dtype):
                out = model(x)
                loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # fp16 only: skips steps with inf/nan gradients (one host read)
            scaler.update()
            scheduler.step()
            for cb in callbacks:
                cb.after_step(model)
            # Accumulate on the device: no host sync per step.
            loss_sum += loss.detach() * len(y)
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
        train_loss, train_correct = loss_sum.item(), correct.item()  # the epoch's one read: waits for the GPU
        seconds = time.perf_counter() - start
        test_loss, test_acc = evaluate(model, data, device=device)
        history.train_loss.append(train_loss / seen)
        history.train_acc.append(train_correct / seen)
        history.test_loss.append(test_loss)
        history.test_acc.append(test_acc)
        history.images_per_s.append(seen / seconds)
        if epoch >= config.best_after and test_acc > history.best_acc:
            history.best_acc, history.best_epoch = test_acc, epoch
            history.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress:
            tqdm.write(f"{desc} epoch {epoch + 1}/{config.epochs}: loss {history.train_loss[-1]:.4f} "
                       f"train acc {history.train_acc[-1]:.4f} test acc {test_acc:.4f} "
                       f"({seen / seconds:.0f} img/s)", file=sys.stderr)  # labkit run shows stderr
    if restore_best and history.best_state is not None:
        model.load_state_dict(history.best_state)
    return history

