"""The labs' shared runs: the handouts' fine-tuning settings and the models one lab hands to the next.

Lab 3 (d) starts from Lab 2 (e)'s 70% global-pruned ResNet-20. ``global_pruned_resnet20`` loads it
from the artifacts folder when notebook 02 already made it, and makes it (the same run) otherwise, so
each notebook also runs on its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from labkit import checkpoints, prune, train
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


def iterative_prune(model: nn.Module, data, profile: Profile, q_final: float = 70.0, global_: bool = False,
                    progress: bool = True) -> train.History:
    """Lab 2 (d)/(e): prune to q_final * (e+1) / P percent before each of the first P =
    ``profile.prune_epochs`` epochs (per layer, or with one global threshold), then fine-tune P more
    epochs with the final masks kept; the best state counts only after the final pruning step.
    ``model`` ends in its best state."""
    schedule = prune.LinearSchedule(q_final=q_final, prune_epochs=profile.prune_epochs, global_=global_)
    config = finetune_config(profile, epochs=2 * profile.prune_epochs, best_after=profile.prune_epochs)
    history = train.fit(model, data, config, callbacks=[schedule], progress=progress,
                        desc="global prune" if global_ else "prune")
    model.load_state_dict(history.best_state)
    return history


def global_pruned_resnet20(profile: Profile, dataset: str | None = None, **model_kwargs
                           ) -> tuple[nn.Module, dict]:
    """Lab 2 (e)'s ResNet-20, iteratively pruned to 70% with one global threshold: loaded from
    ``artifact_path("resnet20-global70", ...)``, or made and saved there first. ``model_kwargs``
    (e.g. ``nbits=2``) build a quantized variant around the same weights."""
    name = dataset_name(profile, "resnet20", dataset)
    path = artifact_path("resnet20-global70", profile, name)
    if not path.is_file():
        model, _ = lab_model(profile, "resnet20", dataset)
        history = iterative_prune(model, lab_data(profile, "resnet20", dataset), profile, global_=True)
        checkpoints.save_checkpoint(model, path, arch="resnet20", dataset=name, accuracy=history.best_acc,
                                    recipe={"global_iterative_prune": 70.0, "profile": profile.name})
    return checkpoints.load_model(path, arch="resnet20", dataset=name, **model_kwargs)
