"""The labs' shared runs: the handouts' fine-tuning settings and the models one lab hands to the next.

Lab 3 (d) starts from Lab 2 (e)'s 70% global-pruned ResNet-20, made with labkit's own pruning functions
(``make_global_pruned_resnet20``) so that it does not depend on whose notebook 02 ran before:
``global_pruned_resnet20`` loads it from the checkpoint cache when it is there, made from the same inputs
(``global_recipe``: the profile's settings and the pretrained weights), and makes it otherwise. Being
labkit's alone, it is shared like a pretrained model: ``labkit grade`` makes it once per class, not once per
submission. Notebook 02's own (e) run uses the student's functions, so it is not reused (a grade must not
rest on a model the student's code made) and saves nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from torch import nn

from labkit import checkpoints, prune, schedules, train
from labkit.profiles import Profile, dataset_name, lab_data, lab_model

ARTIFACTS = checkpoints.CHECKPOINT_DIR.parent / "runs" / "artifacts"


def artifact_path(name: str, profile: Profile, dataset: str) -> Path:
    """Where notebooks keep the models they make for later labs (git-ignored ``runs/artifacts``)."""
    return ARTIFACTS / profile.name / dataset / f"{name}.pt"


def finetune_config(profile: Profile, **overrides) -> train.TrainConfig:
    """The handouts' fine-tuning: SGD with momentum, ``profile.finetune_epochs`` epochs (20 in
    full), batch ``profile.batch_size`` (256 in full), cosine decay from lr 0.01; overridable."""
    config = train.TrainConfig(epochs=profile.finetune_epochs, lr=0.01, momentum=0.9, weight_decay=5e-4,
                               batch_size=profile.batch_size, schedule="cosine", augment=True)
    return replace(config, **overrides)


PRUNE_SCHEDULES = ("linear", "agp")  # pruning schedules (train.LR_SCHEDULES: learning rates)


def prune_schedule(profile: Profile, q_final: float = 70.0, global_: bool = False,
                   schedule: str = "linear", **functions) -> schedules.LinearSchedule | schedules.AGPSchedule:
    """Lab 2's iterative pruning steps, one before each of the first P = ``profile.prune_epochs``
    epochs: ``"linear"`` (the handout's q_final * (e+1) / P percent, pruned weights may regrow until
    the last step) or ``"agp"`` (Zhu & Gupta's cubic ramp to q_final, masks kept between steps).
    ``functions``: the handout's functions that do the pruning and the mask step instead of labkit's
    (``prune_layer``, ``prune_net``, ``make_masks``, ``keep_masks``; see ``labkit.prune``)."""
    if schedule == "linear":
        return schedules.LinearSchedule(q_final=q_final, prune_epochs=profile.prune_epochs, global_=global_,
                                    **functions)
    if schedule == "agp":
        return schedules.AGPSchedule(s_final=q_final, n_steps=profile.prune_epochs, global_=global_,
                                     **functions)
    raise ValueError(f"schedule={schedule!r}: allowed are {', '.join(PRUNE_SCHEDULES)}")


def iterative_prune(model: nn.Module, data, profile: Profile, q_final: float = 70.0, global_: bool = False,
                    progress: bool = True, schedule="linear", **functions) -> train.History:
    """Lab 2 (d)/(e): prune before each of the first P = ``profile.prune_epochs`` epochs following
    ``prune_schedule`` (per layer, or with one global threshold), then fine-tune P more epochs with
    the final masks kept; the best state counts only after the final pruning step. ``model`` ends in
    its best state. ``schedule``: a name (with ``q_final``, ``global_`` and ``functions`` passed on to
    ``prune_schedule``) or a schedule ``prune_schedule`` made, whose ``steps`` then record the run."""
    if isinstance(schedule, str):
        steps = prune_schedule(profile, q_final, global_, schedule, **functions)
    elif isinstance(schedule, schedules.LinearSchedule | schedules.AGPSchedule):
        if functions:
            raise TypeError(f"{', '.join(functions)}: with a ready schedule, give them to prune_schedule")
        steps = schedule
    else:
        raise TypeError(f"schedule={schedule!r}: allowed is one of {', '.join(PRUNE_SCHEDULES)} or a "
                        "schedule from prune_schedule")
    config = finetune_config(profile, epochs=2 * profile.prune_epochs, best_after=profile.prune_epochs)
    history = train.fit(model, data, config, callbacks=[steps], progress=progress,
                        desc=f"{'global ' if steps.global_ else ''}{steps.name} prune", restore_best=True)
    return history


def global_pruned_path(profile: Profile, dataset: str) -> Path:
    """Where the checkpoint cache keeps Lab 2 (e)'s model for ``profile`` on ``dataset`` (a data set name)."""
    return checkpoints.CACHE_DIR / f"resnet20-{dataset}-{profile.name}-global70.pt"


def global_recipe(profile: Profile, dataset: str | None = None) -> dict:
    """What Lab 2 (e)'s model is made from, stored with it as its cache key: the pruning, every setting of
    ``profile`` (epochs, batch, subsets, ...) and the checksum of the pretrained weights it starts from. A
    cached model made from anything else (an older profile, another checkpoint) is made again."""
    settings = json.loads(json.dumps(asdict(profile)))  # tuples as lists: equal to what a load gives back
    return {"global_iterative_prune": 70.0, "profile": settings,
            "pretrained": lab_model(profile, "resnet20", dataset)[1]["checksum"]}


def make_global_pruned_resnet20(profile: Profile, dataset: str | None = None, progress: bool = True
                                ) -> tuple[nn.Module, train.History]:
    """Lab 2 (e): iteratively prune the pretrained ResNet-20 to 70% with one global threshold, save
    it to ``global_pruned_path`` (replacing an older one) and return it with its History."""
    name = dataset_name(profile, "resnet20", dataset)
    model, _ = lab_model(profile, "resnet20", dataset)
    history = iterative_prune(model, lab_data(profile, "resnet20", dataset), profile, global_=True,
                              progress=progress)
    checkpoints.save_checkpoint(model, global_pruned_path(profile, name), arch="resnet20", dataset=name,
                                accuracy=history.best_acc, recipe=global_recipe(profile, dataset))
    return model, history


def global_pruned_resnet20(profile: Profile, dataset: str | None = None, **model_kwargs
                           ) -> tuple[nn.Module, dict]:
    """Lab 2 (e)'s ResNet-20, iteratively pruned to 70% with one global threshold: loaded from
    ``global_pruned_path``, or made there first (``make_global_pruned_resnet20``) when that file is
    missing, unreadable or made from other inputs (``global_recipe``). ``model_kwargs`` (e.g.
    ``nbits=2``) build a quantized variant around the same weights."""
    name = dataset_name(profile, "resnet20", dataset)
    path = global_pruned_path(profile, name)
    try:
        _, meta = checkpoints.load_checkpoint(path, arch="resnet20", dataset=name)
        usable = meta.get("recipe") == global_recipe(profile, dataset)
    except (FileNotFoundError, checkpoints.CheckpointError):
        usable = False
    if not usable:
        make_global_pruned_resnet20(profile, dataset)
    return checkpoints.load_model(path, arch="resnet20", dataset=name, **model_kwargs)


def layer_sensitivity(model: nn.Module, data, profile: Profile, sparsities=(30, 50, 70, 90), prune_layer=None,
                      progress: bool = True) -> tuple[float, dict[str, list[float]]]:
    """``(dense accuracy, {layer: [accuracy per sparsity]})``: test accuracy of ``model`` as it is, and
    after pruning one layer at a time to each of ``sparsities`` (percent) with ``prune_layer(layer, q)``
    (default ``prune.prune_by_percentage``; ``prune.sensitivity_scan``, ``model`` is left unchanged).
    Both on a class-balanced ``profile.scan_fraction`` of ``data``'s test images (150 of ResNet-20's
    500 in quick; all in full)."""
    if profile.scan_fraction < 1:
        data = data.subset(None, int(len(data.test_y) * profile.scan_fraction))

    def accuracy(net):
        return train.evaluate(net, data)[1]

    return accuracy(model), prune.sensitivity_scan(model, accuracy, sparsities, prune_layer=prune_layer,
                                                   progress=progress)


def comparison_rows(models: dict[str, nn.Module], data) -> list[dict]:
    """One row per model of ``{label: model}``, as the handout's (d) table: test loss, test accuracy
    (0..1) and total sparsity of the prunable layers (0..1)."""
    rows = []
    for label, model in models.items():
        loss, acc = train.evaluate(model, data)
        rows.append({"model": label, "test loss": loss, "test accuracy": acc,
                     "sparsity": prune.sparsity_report(model)["total"]})
    return rows
