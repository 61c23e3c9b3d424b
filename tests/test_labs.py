import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from labkit import checkpoints, labs, prune, schedules, train
from labkit.models import lenet5, resnet20
from labkit.profiles import FULL, QUICK, Profile
from labkit.quant import QConv2d

MINI = "fashion-mnist-mini"
TINY = Profile("tiny", finetune_epochs=1, prune_epochs=2, batch_size=50,
               datasets={"lenet5": MINI, "resnet20": MINI})


def must_not_run(*args, **kwargs):
    raise AssertionError("the artifact exists: it must be loaded, not made again")


def pruned_fraction(n: int, q: float) -> float:
    """Fraction of n distinct magnitudes at or below their q-th percentile (linear interpolation)."""
    return (math.floor(q / 100 * (n - 1)) + 1) / n


# --- fine-tuning settings and artifacts ------------------------------------------------------------


def test_finetune_config_follows_the_profile_and_overrides():
    quick, full = labs.finetune_config(QUICK), labs.finetune_config(FULL)
    assert (quick.epochs, quick.batch_size) == (QUICK.finetune_epochs, QUICK.batch_size) == (2, 64)
    assert (full.epochs, full.batch_size) == (20, 256)
    assert (full.lr, full.momentum, full.weight_decay, full.schedule) == (0.01, 0.9, 5e-4, "cosine")
    custom = labs.finetune_config(QUICK, epochs=7, lr=0.05)
    assert (custom.epochs, custom.lr, custom.batch_size) == (7, 0.05, 64)
    with pytest.raises(TypeError):
        labs.finetune_config(QUICK, epoch=7)


def test_artifact_path_layout(monkeypatch, tmp_path):
    assert labs.ARTIFACTS == checkpoints.CHECKPOINT_DIR.parent / "runs" / "artifacts"  # git-ignored runs/
    monkeypatch.setattr(labs, "ARTIFACTS", tmp_path)
    path = labs.artifact_path("resnet20-global70", QUICK, MINI)
    assert path == tmp_path / "quick" / MINI / "resnet20-global70.pt"


# --- iterative pruning -----------------------------------------------------------------------------


def test_prune_schedule_linear_and_agp():
    linear = labs.prune_schedule(TINY)
    assert linear.targets == {0: 35.0, 1: 70.0}
    assert [linear.sparsity_at(e) for e in range(4)] == [35.0, 70.0, 70.0, 70.0]
    agp = labs.prune_schedule(TINY, q_final=80, schedule="agp")
    assert agp.targets == {0: 70.0, 1: 80.0}  # 80 * (1 - (1 - 1/2)**3), then 80
    assert len(labs.prune_schedule(FULL).targets) == 10
    assert schedules.AGPSchedule(50, start_epoch=2, n_steps=1).sparsity_at(1) == 0.0  # before the first step
    with pytest.raises(ValueError, match="schedule='cubic'"):
        labs.prune_schedule(TINY, schedule="cubic")


@pytest.mark.parametrize("schedule", labs.PRUNE_SCHEDULES)
def test_iterative_prune_reaches_the_final_sparsity_and_keeps_it(tiny_data, schedule):
    torch.manual_seed(0)
    model = lenet5()
    history = labs.iterative_prune(model, tiny_data, TINY, schedule=schedule, progress=False)
    assert len(history.test_acc) == 2 * TINY.prune_epochs
    assert history.best_epoch >= TINY.prune_epochs  # the best state counts only after the final step
    report = prune.sparsity_report(model)
    # Exactly the final step's 70% per layer: had the masks not been kept, the zeros would have regrown.
    for name, layer in prune.prunable_layers(model):
        assert report[name] == pruned_fraction(layer.weight.numel(), 70.0), name


def test_global_iterative_prune_uses_one_threshold(tiny_data):
    torch.manual_seed(0)
    model = lenet5()
    labs.iterative_prune(model, tiny_data, TINY, global_=True, progress=False)
    report = prune.sparsity_report(model)
    n = sum(layer.weight.numel() for _, layer in prune.prunable_layers(model))
    assert report["total"] == pruned_fraction(n, 70.0)
    assert max(report.values()) - min(report.values()) > 0.1  # not the same 70% in every layer


def handout_prune(layer, q):  # the notebook's prune_by_percentage (numpy, returns nothing)
    weight = layer.weight.data.cpu().numpy()
    mask = torch.from_numpy(np.abs(weight) > np.percentile(np.abs(weight), q)).to(layer.weight.device)
    layer.weight.data.mul_(mask)


def handout_masks(net):
    return {name: (layer.weight.data != 0).float() for name, layer in prune.prunable_layers(net)}


def handout_keep(net, weight_mask):
    for name, layer in prune.prunable_layers(net):
        layer.weight.data.mul_(weight_mask[name])


def test_iterative_prune_with_the_handouts_functions_makes_labkits_run(tiny_data):
    torch.manual_seed(0)
    reference = lenet5()
    model = copy.deepcopy(reference)
    labs.iterative_prune(reference, tiny_data, TINY, progress=False)
    schedule = labs.prune_schedule(TINY, prune_layer=handout_prune, make_masks=handout_masks,
                                      keep_masks=handout_keep)
    labs.iterative_prune(model, tiny_data, TINY, schedule=schedule, progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reference.state_dict().items())
    assert [(step["epoch"], step["q"], step["by_magnitude"]) for step in schedule.steps] == [
        (0, 35.0, True), (1, 70.0, True)]
    with pytest.raises(TypeError, match="prune_layer: with a ready schedule"):
        labs.iterative_prune(model, tiny_data, TINY, schedule=schedule, prune_layer=handout_prune)
    with pytest.raises(TypeError, match="schedule=3"):
        labs.iterative_prune(model, tiny_data, TINY, schedule=3)


def test_iterative_prune_runs_a_wrong_function_as_it_is(tiny_data):
    def per_layer(net, q):  # a plausible wrong global_prune_by_percentage
        for _, layer in prune.prunable_layers(net):
            prune.prune_by_percentage(layer, q)

    torch.manual_seed(0)
    model = lenet5()
    schedule = labs.prune_schedule(TINY, global_=True, prune_net=per_layer)
    labs.iterative_prune(model, tiny_data, TINY, schedule=schedule, progress=False)
    assert not any(step["by_magnitude"] for step in schedule.steps)  # not one threshold over all layers
    report = prune.sparsity_report(model)
    assert max(report.values()) - min(report.values()) < 0.01  # the same 70% everywhere


# --- Lab 2 (e)'s model for Lab 3 -------------------------------------------------------------------


def save_artifact(model: nn.Module, profile: Profile, recipe=None) -> None:
    checkpoints.save_checkpoint(model, labs.global_pruned_path(profile, MINI), arch="resnet20", dataset=MINI,
                                accuracy=0.5, recipe=recipe or labs.global_recipe(profile))


def test_global_pruned_resnet20_loads_an_existing_artifact_without_retraining(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoints, "CACHE_DIR", tmp_path)
    assert labs.global_pruned_path(QUICK, MINI) == tmp_path / f"resnet20-{MINI}-quick-global70.pt"
    model = resnet20(in_channels=1)
    prune.global_prune_by_percentage(model, 70)
    save_artifact(model, QUICK)
    monkeypatch.setattr(labs, "make_global_pruned_resnet20", must_not_run)
    loaded, meta = labs.global_pruned_resnet20(QUICK)
    assert meta["accuracy"] == 0.5
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    quantized, _ = labs.global_pruned_resnet20(QUICK, nbits=2)
    assert isinstance(quantized.body_op[0].conv1, QConv2d)
    assert torch.equal(quantized.body_op[0].conv1.weight, model.body_op[0].conv1.weight)


@pytest.mark.parametrize("damage", ["truncated", "other recipe", "other profile settings",
                                    "other pretrained weights"])
def test_global_pruned_resnet20_remakes_a_damaged_or_foreign_artifact(monkeypatch, tmp_path, damage):
    monkeypatch.setattr(checkpoints, "CACHE_DIR", tmp_path)
    model = resnet20(in_channels=1)
    if damage == "truncated":
        save_artifact(model, QUICK)
        path = labs.global_pruned_path(QUICK, MINI)
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "other recipe":
        save_artifact(model, QUICK, recipe={**labs.global_recipe(QUICK), "global_iterative_prune": 50.0})
    elif damage == "other profile settings":  # e.g. made before the quick profile's epochs changed
        save_artifact(model, QUICK, recipe=labs.global_recipe(replace(QUICK, finetune_epochs=3)))
    else:
        save_artifact(model, QUICK, recipe={**labs.global_recipe(QUICK), "pretrained": "0" * 64})
    made = []

    def make(profile, dataset=None):
        made.append(profile.name)
        save_artifact(model, profile)

    monkeypatch.setattr(labs, "make_global_pruned_resnet20", make)
    labs.global_pruned_resnet20(QUICK)
    assert made == ["quick"]


def test_global_pruned_resnet20_makes_a_missing_artifact_once(monkeypatch, tmp_path, tiny_data):
    monkeypatch.setattr(checkpoints, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(labs, "lab_data", lambda *args: tiny_data)
    profile = Profile("tiny", 1, 1, 100, {"resnet20": MINI})
    model, meta = labs.global_pruned_resnet20(profile)
    assert (tmp_path / f"resnet20-{MINI}-tiny-global70.pt").is_file()
    assert meta["recipe"] == labs.global_recipe(profile)
    assert meta["recipe"]["profile"]["batch_size"] == 100
    n = sum(layer.weight.numel() for _, layer in prune.prunable_layers(model))
    assert prune.sparsity_report(model)["total"] == pruned_fraction(n, 70.0)
    monkeypatch.setattr(labs, "iterative_prune", must_not_run)
    again, _ = labs.global_pruned_resnet20(profile)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


# --- sensitivity and comparison tables -------------------------------------------------------------


def test_layer_sensitivity_runs_on_the_profile_scan_fraction_of_the_test_images(tiny_data):
    torch.manual_seed(0)
    model = lenet5()
    train.fit(model, tiny_data, train.TrainConfig(epochs=2, lr=0.05, augment=False), progress=False)
    assert len(tiny_data.test_y) == 50
    fifth = Profile("q", 1, 1, 50, scan_fraction=0.2)  # 10 of the 50 test images
    dense_acc, results = labs.layer_sensitivity(model, tiny_data, fifth, sparsities=(50, 100))
    assert dense_acc == train.evaluate(model, tiny_data.subset(None, 10))[1]
    assert list(results) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert all(len(accs) == 2 for accs in results.values())
    assert {round(10 * acc, 6) % 1 for accs in results.values() for acc in accs} == {0.0}  # k / 10 images
    dense_acc, _ = labs.layer_sensitivity(model, tiny_data, TINY, sparsities=(50,))
    assert dense_acc == train.evaluate(model, tiny_data)[1]  # no test subset: all 50 images


def test_layer_sensitivity_prunes_with_the_given_function(tiny_data):
    torch.manual_seed(0)
    model = lenet5()
    seen = []

    def prune_layer(layer, q):
        seen.append(q)
        handout_prune(layer, q)

    _, mine = labs.layer_sensitivity(model, tiny_data, TINY, sparsities=(50, 90), prune_layer=prune_layer)
    assert seen == [50, 90] * 5
    assert mine == labs.layer_sensitivity(model, tiny_data, TINY, sparsities=(50, 90))[1]


def test_comparison_rows(tiny_data):
    torch.manual_seed(0)
    dense, pruned = lenet5(), lenet5()
    prune.global_prune_by_percentage(pruned, 50)
    rows = labs.comparison_rows({"dense": dense, "pruned": pruned}, tiny_data)
    assert [r["model"] for r in rows] == ["dense", "pruned"]
    assert (rows[0]["sparsity"], rows[1]["sparsity"]) == (0.0, pytest.approx(0.5, abs=1e-4))
    assert (rows[1]["test loss"], rows[1]["test accuracy"]) == train.evaluate(pruned, tiny_data)


# --- the handout's functions as tensor functions (the notebook's function checks) -------------------


def test_on_weight_runs_an_in_place_layer_function_on_a_copy():
    weight = torch.tensor([[0.5, -0.25, 1.0, -0.75, 0.25]])
    pruned = prune.on_weight(prune.prune_by_percentage)(weight, 50)
    assert pruned.tolist() == [[0.0, 0.0, 1.0, -0.75, 0.0]]  # threshold 0.5: the tie goes too
    assert weight.tolist() == [[0.5, -0.25, 1.0, -0.75, 0.25]]
    conv = torch.arange(1.0, 19.0).reshape(2, 1, 3, 3)
    assert int((prune.on_weight(prune.prune_by_percentage)(conv, 50) == 0).sum()) == 9
    assert prune.on_weight(prune.prune_by_percentage).__name__ == "prune_by_percentage"
    with pytest.raises(ValueError, match=r"shape \(2, 2, 2\)"):
        prune.on_weight(prune.prune_by_percentage)(torch.ones(2, 2, 2), 50)


def test_on_weights_names_the_layers_so_id_mapping_is_skipped():
    weights = {"conv": torch.tensor([[[[1.0, -2.0], [3.0, -4.0]]]]),
               "id_mapping": torch.tensor([[0.25, 0.5]]), "fc": torch.tensor([[0.5, 8.0]])}
    pruned = prune.on_weights(prune.global_prune_by_percentage)(weights, 50)
    assert pruned["conv"].flatten().tolist() == [0.0, 0.0, 3.0, -4.0]  # threshold 2.5 over the 6 weights
    assert pruned["fc"].tolist() == [[0.0, 8.0]] and pruned["id_mapping"].tolist() == [[0.25, 0.5]]

    def per_layer(net, q):
        for _, layer in prune.prunable_layers(net):
            prune.prune_by_percentage(layer, q)

    weights["fc"] = torch.tensor([[0.5, 1.5]])
    assert prune.on_weights(prune.global_prune_by_percentage)(weights, 50)["fc"].tolist() == [[0.0, 0.0]]
    assert prune.on_weights(per_layer)(weights, 50)["fc"].tolist() == [[0.0, 1.5]]


def test_mask_step_on_weights_masks_the_stepped_weights():
    pruned = {"fc": torch.tensor([[1.0, 0.0], [0.0, -2.0]])}
    stepped = {"fc": torch.tensor([[0.9, 0.1], [-0.1, -1.9]])}
    step = prune.mask_step_on_weights(prune.masks_from_zeros, prune.apply_masks)
    assert step(pruned, stepped)["fc"].tolist() == [[pytest.approx(0.9), 0.0], [0.0, pytest.approx(-1.9)]]
    assert step.__name__ == "apply_masks"  # labkit release matches function checks to blanked functions

    def positive_masks(net):  # a wrong mask: drops the negative weights as well
        return {name: layer.weight > 0 for name, layer in prune.prunable_layers(net)}

    wrong = prune.mask_step_on_weights(positive_masks, prune.apply_masks)(pruned, stepped)
    assert wrong["fc"][1, 1] == 0
