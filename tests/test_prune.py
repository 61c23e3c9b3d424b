import copy

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from labkit import channel_pruning as CP
from labkit import prune as P
from labkit import schedules as S
from labkit.data import Dataset
from labkit.models import LeNet5, lenet5, lenet5_caffe, lenet_300_100, resnet20
from labkit.train import TrainConfig, fit


def two_layers(w0, w1) -> nn.Sequential:
    """Two bias-free Linear layers named "0" and "1" holding the given 2x2 weights."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w0, dtype=torch.float32))
        net[1].weight.copy_(torch.tensor(w1, dtype=torch.float32))
    return net


def tiny_mlp(seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def sgd_steps(net, n, callback=None, seed=0):
    """n steps of SGD(momentum=0.9, weight_decay=5e-4) on random data, ``callback.after_step`` after each."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(n):
        x, y = torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if callback is not None:
            callback.after_step(net)


def params_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- prunable layers -------------------------------------------------------------------------------


def test_prunable_layers_resnet20_lenet5_and_quantized():
    names = [name for name, _ in P.prunable_layers(resnet20())]
    assert len(names) == 20
    assert names[0] == "head_conv" and names[1] == "body_op.0.conv1" and names[-1] == "final_fc"
    assert not any("id_mapping" in name for name in names)
    assert [name for name, _ in P.prunable_layers(lenet5())] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert len(P.prunable_layers(resnet20(nbits=4))) == 20


def test_prunable_layers_are_the_declared_ones_and_the_name_rule_is_the_fallback():
    for make in (resnet20, lenet5, lenet_300_100, lenet5_caffe):
        net = make()
        assert [name for name, _ in P.prunable_layers(net)] == list(net.prunable_layer_names)
    assert [name for name, _ in P.prunable_layers(lenet5_caffe())] == ["conv1", "conv2", "fc1", "fc2"]

    class Foreign(nn.Module):  # declares nothing: every Conv2d / Linear outside id_mapping
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 2))
            self.id_mapping = nn.Conv2d(1, 2, 1)

    assert [name for name, _ in P.prunable_layers(Foreign())] == ["body.0", "body.1"]

    class Declared(Foreign):  # the declaration wins, in its order
        prunable_layer_names = ("body.1", "id_mapping")

    assert [name for name, _ in P.prunable_layers(Declared())] == ["body.1", "id_mapping"]
    Declared.prunable_layer_names = ("body",)
    with pytest.raises(ValueError, match="body is a Sequential: pruning handles only Conv2d / Linear"):
        P.prunable_layers(Declared())


def test_prunable_layers_errors():
    with pytest.raises(ValueError, match="no prunable layer"):
        P.prunable_layers(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="net=list"):
        P.prunable_layers([nn.Linear(2, 2)])


# --- percentile pruning ----------------------------------------------------------------------------


def test_prune_by_percentage_hand_case():
    layer = two_layers([[-4, 1], [3, -2]], [[0, 0], [0, 0]])[0]
    mask = P.prune_by_percentage(layer, 50)  # |w| = 1,2,3,4: threshold 2.5
    assert mask.tolist() == [[True, False], [True, False]]
    assert layer.weight.tolist() == [[-4, 0], [3, 0]]


def test_q0_prunes_the_smallest_and_q100_prunes_all():
    layer = two_layers([[-4, 1], [3, -2]], [[0, 0], [0, 0]])[0]
    assert P.prune_by_percentage(layer, 0).tolist() == [[True, False], [True, True]]  # threshold = min|w| = 1
    layer = two_layers([[-4, 1], [3, -2]], [[0, 0], [0, 0]])[0]
    assert not P.prune_by_percentage(layer, 100).any()
    assert torch.count_nonzero(layer.weight) == 0


def test_q0_with_exact_zeros_prunes_only_the_zeros():
    layer = two_layers([[0, 0.5], [0, -1]], [[0, 0], [0, 0]])[0]
    assert P.prune_by_percentage(layer, 0).tolist() == [[False, True], [False, True]]
    assert layer.weight.tolist() == [[0, 0.5], [0, -1]]


def test_ties_at_the_threshold_are_all_pruned():
    layer = nn.Linear(5, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0, 1.0, 1.0, 2.0]]))
    mask = P.prune_by_percentage(layer, 50)  # threshold = 1: four of five weights go (80% > 50%)
    assert mask.tolist() == [[False, False, False, False, True]]


@pytest.mark.parametrize("shape", [(1,), (2,), (7,), (10, 10), (16, 8, 3, 3)])
def test_agrees_with_numpy_percentile(shape):
    g = torch.Generator().manual_seed(sum(shape))
    for q in (0, 0.3, 30, 33.3, 50, 70, 99.9, 100):
        layer = nn.Module()
        layer.weight = nn.Parameter(torch.randn(shape, generator=g))
        w = layer.weight.detach().numpy().copy()
        mask = P.prune_by_percentage(layer, q)
        expected = np.abs(w) > np.percentile(np.abs(w), q)
        np.testing.assert_array_equal(mask.numpy(), expected)
        np.testing.assert_array_equal(layer.weight.detach().numpy(), w * expected)


def test_works_beyond_two_to_the_24_elements():  # older torch.quantile refuses such tensors
    layer = nn.Module()
    layer.weight = nn.Parameter(torch.rand(2**24 + 1, generator=torch.Generator().manual_seed(0)))
    w = layer.weight.detach().numpy().copy()
    mask = P.prune_by_percentage(layer, 70)
    assert int(mask.sum()) == int((w > np.percentile(w, 70)).sum())


def test_prune_by_percentage_errors():
    layer = nn.Linear(2, 2)
    for q in (-1, 100.5, float("nan")):
        with pytest.raises(ValueError, match="q="):
            P.prune_by_percentage(layer, q)
    for q in ("70", True, None):
        with pytest.raises(TypeError, match="q="):
            P.prune_by_percentage(layer, q)
    with pytest.raises(TypeError, match="layer=ReLU"):
        P.prune_by_percentage(nn.ReLU(), 50)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        P.prune_by_percentage(layer, 50)


def test_global_threshold_ranks_across_layers():
    net = two_layers([[1, 2], [3, 4]], [[10, 20], [30, 40]])
    masks = P.global_prune_by_percentage(net, 50)  # 8 values: threshold 4 + 0.5 * (10 - 4) = 7
    assert not masks["0"].any() and masks["1"].all()
    assert P.sparsity_report(net) == {"0": 1.0, "1": 0.0, "total": 0.5}
    net = two_layers([[1, 2], [3, 4]], [[10, 20], [30, 40]])
    for _, layer in P.prunable_layers(net):
        P.prune_by_percentage(layer, 50)
    assert P.sparsity_report(net) == {"0": 0.5, "1": 0.5, "total": 0.5}


# --- masks and sparsity ----------------------------------------------------------------------------


def test_masks_from_zeros_and_apply_masks():
    net = two_layers([[0, 2], [3, 0]], [[1, 1], [1, 1]])
    masks = P.masks_from_zeros(net)
    assert masks["0"].tolist() == [[False, True], [True, False]] and masks["1"].all()
    P.apply_masks(net, {"1": masks["0"]})
    assert net[1].weight.tolist() == [[0, 1], [1, 0]]


def test_apply_masks_errors():
    net = two_layers([[1, 2], [3, 4]], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="'2'.*allowed are the prunable layers 0, 1"):
        P.apply_masks(net, {"2": torch.ones(2, 2)})
    with pytest.raises(ValueError, match=r"shape \(4,\).*\(2, 2\)"):
        P.apply_masks(net, {"0": torch.ones(4)})
    with pytest.raises(TypeError, match="masks=list"):
        P.apply_masks(net, [torch.ones(2, 2)])
    assert net[0].weight.tolist() == [[1, 2], [3, 4]]


def test_sparsity_report_and_format():
    net = two_layers([[0, 2], [3, 4]], [[0, 0], [0, 4]])
    report = P.sparsity_report(net)
    assert report == {"0": 0.25, "1": 0.75, "total": 0.5}
    assert P.format_sparsity(report).splitlines() == [
        "Sparsity of 0: 0.25", "Sparsity of 1: 0.75", "Total sparsity: 0.5"]


# --- keeping masks while training ------------------------------------------------------------------


def test_keep_masks_survive_momentum_and_weight_decay():
    net = tiny_mlp()
    masks = P.global_prune_by_percentage(net, 60)
    sgd_steps(net, 100, P.MaskStep(masks))
    for name, layer in P.prunable_layers(net):
        assert torch.all(layer.weight[~masks[name]] == 0)
        assert torch.all(layer.weight[masks[name]] != 0)
    control = tiny_mlp()
    control_masks = P.global_prune_by_percentage(control, 60)
    sgd_steps(control, 5)
    assert torch.all(control[0].weight[~control_masks["0"]] != 0)  # without MaskStep they regrow


def test_keep_masks_applies_masks_at_epoch_start():
    net = two_layers([[1, 2], [3, 4]], [[1, 2], [3, 4]])
    P.MaskStep({"0": torch.tensor([[True, False], [False, True]])}).on_epoch_start(0, net)
    assert net[0].weight.tolist() == [[1, 0], [0, 4]] and net[1].weight.tolist() == [[1, 2], [3, 4]]


def tiny_dataset() -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(24) % 3
    return Dataset("tiny", images[:16], labels[:16], images[16:], labels[16:], (0.5,), (0.25,),
                   hflip=False, num_classes=3)


def tiny_convnet() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


TINY_CONFIG = TrainConfig(epochs=2, batch_size=8, augment=False, lr=0.05)


def test_finetune_after_prune_keeps_zeros():
    net = tiny_convnet()
    P.global_prune_by_percentage(net, 50)
    zeros = {name: layer.weight.detach() == 0 for name, layer in P.prunable_layers(net)}
    history = P.finetune_after_prune(net, tiny_dataset(), TINY_CONFIG, device="cpu", progress=False)
    assert len(history.test_acc) == 2
    for name, layer in P.prunable_layers(net):
        assert torch.all(layer.weight[zeros[name]] == 0)
        assert torch.all(layer.weight[~zeros[name]] != 0)


def handout_masks(net):  # the notebook's weight_masks: float masks from the zeros
    return {name: (layer.weight.data != 0).float() for name, layer in P.prunable_layers(net)}


def handout_keep(net, weight_mask):  # the notebook's keep_pruned_at_zero
    for name, layer in P.prunable_layers(net):
        layer.weight.data.mul_(weight_mask[name])


def test_finetune_after_prune_runs_the_given_mask_step():
    calls = {"make": 0, "keep": 0}

    def make(net):
        calls["make"] += 1
        return handout_masks(net)

    def keep(net, masks):
        calls["keep"] += 1
        handout_keep(net, masks)

    net = tiny_convnet()
    P.global_prune_by_percentage(net, 50)
    reference = copy.deepcopy(net)
    P.finetune_after_prune(reference, tiny_dataset(), TINY_CONFIG, device="cpu", progress=False)
    P.finetune_after_prune(net, tiny_dataset(), TINY_CONFIG, make_masks=make, keep_masks=keep, device="cpu",
                           progress=False)
    assert calls["make"] == 1  # once, as the handout builds weight_mask once
    assert calls["keep"] == 2 * 2  # after each of 2 steps in each of 2 epochs
    assert params_equal(net, reference)  # the handout's mask step is labkit's

    def forgets(net, masks):  # a wrong mask step: does nothing, so the pruned weights regrow
        pass

    wrong = tiny_convnet()
    P.global_prune_by_percentage(wrong, 50)
    P.finetune_after_prune(wrong, tiny_dataset(), TINY_CONFIG, keep_masks=forgets, device="cpu",
                           progress=False)
    assert P.sparsity_report(wrong)["total"] < 0.5


def test_pruned_smallest_per_layer_and_global():
    net = two_layers([[1, 2], [3, 4]], [[10, 20], [30, 40]])
    before = {name: layer.weight.detach().clone() for name, layer in P.prunable_layers(net)}
    for _, layer in P.prunable_layers(net):
        P.prune_by_percentage(layer, 50)
    assert P.pruned_smallest(before, net) and not P.pruned_smallest(before, net, global_=True)
    net = two_layers([[1, 2], [3, 4]], [[10, 20], [30, 40]])
    P.global_prune_by_percentage(net, 50)
    assert P.pruned_smallest(before, net) and P.pruned_smallest(before, net, global_=True)
    with torch.no_grad():
        net[1].weight[0, 0] = 0.0  # layer 1 loses its smallest weight, 10
        net[0].weight.fill_(1.0)  # and layer 0 keeps all of its weights (1..4), each smaller than 10
    assert not P.pruned_smallest(before, net, global_=True) and P.pruned_smallest(before, net)
    with torch.no_grad():
        net[1].weight[1, 1] = 0.0  # 40, the largest, pruned while 20 is kept
    assert not P.pruned_smallest(before, net)


# --- schedules -------------------------------------------------------------------------------------


def test_linear_sparsity_by_hand():
    assert [S.linear_sparsity(e) for e in range(12)] == [7 * (e + 1) for e in range(10)] + [70, 70]
    assert [S.linear_sparsity(e, 50, 4) for e in range(4)] == [12.5, 25, 37.5, 50]
    schedule = S.LinearSchedule(q_final=50, prune_epochs=4)
    assert schedule.targets == {0: 12.5, 1: 25, 2: 37.5, 3: 50} and schedule.pruning_epochs == [0, 1, 2, 3]


def test_agp_sparsity_by_hand():
    # s_f + (s_i - s_f)(1 - k/4)^3 with s_f = 80: 80 * (1 - 27/64), 80 * (1 - 1/8), 80 * (1 - 1/64), 80
    assert [S.agp_sparsity(e, 80, n_steps=4) for e in range(6)] == [46.25, 70, 78.75, 80, 80, 80]
    # start 2, every 2: steps before epochs 2 and 4; 20 + (10 - 20)(1 - k/2)^3
    assert [S.agp_sparsity(e, 20, 10, start_epoch=2, n_steps=2, prune_every=2) for e in range(6)] == [
        10, 10, 18.75, 18.75, 20, 20]
    assert S.AGPSchedule(20, 10, start_epoch=2, n_steps=2, prune_every=2).targets == {2: 18.75, 4: 20}


def test_schedule_errors():
    with pytest.raises(ValueError, match="q_final=150"):
        S.LinearSchedule(q_final=150)
    with pytest.raises(ValueError, match="prune_epochs=0"):
        S.LinearSchedule(prune_epochs=0)
    with pytest.raises(TypeError, match="prune_epochs=1.5"):
        S.LinearSchedule(prune_epochs=1.5)
    with pytest.raises(ValueError, match="s_initial=50.0 > s_final=20.0"):
        S.AGPSchedule(20, 50)
    with pytest.raises(ValueError, match="n_steps=0"):
        S.AGPSchedule(20, n_steps=0)
    with pytest.raises(ValueError, match="epoch=-1"):
        S.linear_sparsity(-1)


def test_linear_schedule_recovers_until_the_final_step_then_keeps():
    net = tiny_mlp()
    schedule = S.LinearSchedule(q_final=60, prune_epochs=3)
    schedule.on_epoch_start(0, net)  # 20%
    pruned_at_0 = net[0].weight.detach() == 0
    assert pruned_at_0.float().mean() == pytest.approx(0.2, abs=0.01)
    sgd_steps(net, 5, schedule)
    assert torch.all(net[0].weight[pruned_at_0] != 0)  # regrown before epoch 1
    schedule.on_epoch_start(1, net)  # 40%, still not final
    sgd_steps(net, 5, schedule)
    assert torch.count_nonzero(net[0].weight) == net[0].weight.numel()
    schedule.on_epoch_start(2, net)  # 60%, final: masks kept from here on
    final_zeros = {name: layer.weight.detach() == 0 for name, layer in P.prunable_layers(net)}
    sgd_steps(net, 20, schedule)
    schedule.on_epoch_start(3, net)
    sgd_steps(net, 20, schedule, seed=1)
    for name, layer in P.prunable_layers(net):
        assert torch.equal(layer.weight.detach() == 0, final_zeros[name])
    assert P.sparsity_report(net)["0"] == pytest.approx(0.6, abs=0.01)


def test_linear_schedule_through_fit():
    net = tiny_convnet()
    config = TrainConfig(epochs=3, batch_size=8, augment=False, lr=0.05)
    fit(net, tiny_dataset(), config, callbacks=[S.LinearSchedule(q_final=50, prune_epochs=2)],
        device="cpu", progress=False)
    # 50th percentile of 36 and of 432 weights: index 17.5 and 215.5, so exactly half of each is zero
    assert P.sparsity_report(net) == {"0": 0.5, "3": 0.5, "total": 0.5}


def test_agp_keeps_masks_between_steps_and_global_option():
    net = tiny_mlp()
    schedule = S.AGPSchedule(80, n_steps=2, global_=True)
    schedule.on_epoch_start(0, net)  # 80 * (1 - 1/8) = 70% over all weights together
    pruned_at_0 = [layer.weight.detach() == 0 for _, layer in P.prunable_layers(net)]
    assert P.sparsity_report(net)["total"] == pytest.approx(0.7, abs=0.01)
    sgd_steps(net, 10, schedule)
    for (_, layer), zeros in zip(P.prunable_layers(net), pruned_at_0, strict=True):
        assert torch.all(layer.weight[zeros] == 0)
    schedule.on_epoch_start(1, net)
    sgd_steps(net, 10, schedule)
    assert P.sparsity_report(net)["total"] == pytest.approx(0.8, abs=0.01)
    for (_, layer), zeros in zip(P.prunable_layers(net), pruned_at_0, strict=True):
        assert torch.all(layer.weight[zeros] == 0)


@pytest.mark.parametrize("global_", [False, True])
def test_schedules_run_the_given_functions_and_record_each_step(global_):
    calls = []

    def prune_layer(layer, q):  # the handout's functions return nothing
        calls.append(("layer", q))
        P.prune_by_percentage(layer, q)

    def prune_net(net, q):
        calls.append(("net", q))
        P.global_prune_by_percentage(net, q)

    reference, net = tiny_mlp(), tiny_mlp()
    ref_schedule = S.LinearSchedule(60, prune_epochs=2, global_=global_)
    schedule = S.LinearSchedule(60, prune_epochs=2, global_=global_, prune_layer=prune_layer,
                                prune_net=prune_net, make_masks=handout_masks, keep_masks=handout_keep)
    for epoch in range(4):
        for s, model in ((ref_schedule, reference), (schedule, net)):
            s.on_epoch_start(epoch, model)
            sgd_steps(model, 5, s, seed=epoch)
    assert params_equal(net, reference)  # the handout's versions make the same run as labkit's
    per_layer = [("layer", 30.0)] * 2 + [("layer", 60.0)] * 2  # tiny_mlp has two prunable layers
    assert calls == ([("net", 30.0), ("net", 60.0)] if global_ else per_layer)
    assert [(step["epoch"], step["q"]) for step in schedule.steps] == [(0, 30.0), (1, 60.0)]
    assert all(step["by_magnitude"] for step in schedule.steps)
    assert schedule.steps[-1]["sparsity"] == pytest.approx(0.6, abs=0.01)


def test_a_per_layer_prune_net_is_not_by_magnitude_over_all_layers():
    def per_layer(net, q):  # a plausible wrong global_prune_by_percentage
        for _, layer in P.prunable_layers(net):
            P.prune_by_percentage(layer, q)

    net = two_layers([[1, 2], [3, 4]], [[10, 20], [30, 40]])
    schedule = S.LinearSchedule(50, prune_epochs=1, global_=True, prune_net=per_layer)
    schedule.on_epoch_start(0, net)
    assert schedule.steps == [{"epoch": 0, "q": 50.0, "sparsity": 0.5, "by_magnitude": False}]
    with pytest.raises(TypeError, match="prune_layer=3"):
        S.LinearSchedule(prune_layer=3)


# --- sensitivity scan ------------------------------------------------------------------------------


def test_sensitivity_scan_prunes_one_layer_at_a_time_and_restores():
    net = two_layers([[1, 2], [3, 4]], [[5, 6], [7, 8]]).train()
    before = copy.deepcopy(net)

    def total_sparsity(model):
        model.eval()
        return P.sparsity_report(model)["total"]

    result = P.sensitivity_scan(net, total_sparsity, [0, 50, 100])
    assert result == {"0": [0.125, 0.25, 0.5], "1": [0.125, 0.25, 0.5]}
    assert params_equal(net, before) and net.training
    assert P.sensitivity_scan(net, total_sparsity, [50], layers=["1"]) == {"1": [0.25]}


def test_sensitivity_scan_restores_on_error_and_checks_arguments():
    net = two_layers([[1, 2], [3, 4]], [[5, 6], [7, 8]])
    before = copy.deepcopy(net)

    def failing(model):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        P.sensitivity_scan(net, failing, [50])
    assert params_equal(net, before)
    with pytest.raises(ValueError, match=r"layers=\['fc'\]"):
        P.sensitivity_scan(net, failing, [50], layers=["fc"])
    with pytest.raises(ValueError, match=r"sparsities\[1\]=120"):
        P.sensitivity_scan(net, failing, [50, 120])
    with pytest.raises(TypeError, match="prune_layer='q'"):
        P.sensitivity_scan(net, failing, [50], prune_layer="q")


def test_sensitivity_scan_prunes_with_the_given_function_and_restores_when_it_raises():
    net = two_layers([[1, 2], [3, 4]], [[5, 6], [7, 8]])
    before = copy.deepcopy(net)

    def prune_smallest_one(layer, q):  # not a percentile: zeros one weight whatever q is
        with torch.no_grad():
            layer.weight[0, 0] = 0.0

    def total_sparsity(model):
        return P.sparsity_report(model)["total"]

    assert P.sensitivity_scan(net, total_sparsity, [50, 90], prune_layer=prune_smallest_one) == {
        "0": [0.125, 0.125], "1": [0.125, 0.125]}
    assert params_equal(net, before)

    def blank(layer, q):
        with torch.no_grad():
            layer.weight.zero_()
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        P.sensitivity_scan(net, total_sparsity, [50], prune_layer=blank)
    assert params_equal(net, before)


# --- torch.nn.utils.prune interop ------------------------------------------------------------------


def test_to_torch_prune_registers_orig_and_mask():
    net = tiny_mlp()
    reference = copy.deepcopy(net)
    masks = P.global_prune_by_percentage(reference, 50)
    P.to_torch_prune(net, masks)
    assert torch_prune.is_pruned(net)
    assert torch.equal(net[0].weight_mask, masks["0"].float()) and hasattr(net[2], "weight_orig")
    x = torch.randn(4, 8)
    torch.testing.assert_close(net(x), reference(x))


def test_from_torch_prune_reads_masks_and_makes_permanent():
    net = tiny_mlp()
    torch_prune.l1_unstructured(net[0], "weight", amount=0.25)
    torch_prune.l1_unstructured(net[2], "weight", amount=10)
    expected = {"0": net[0].weight_mask.bool(), "2": net[2].weight_mask.bool()}
    masks = P.from_torch_prune(net)
    assert masks.keys() == expected.keys() and all(torch.equal(masks[k], expected[k]) for k in masks)
    assert not torch_prune.is_pruned(net) and isinstance(net[0].weight, nn.Parameter)
    assert int((net[0].weight == 0).sum()) == 32 and int((net[2].weight == 0).sum()) == 10
    assert "0.weight_orig" not in dict(net.named_parameters())


def test_torch_prune_round_trip_and_error():
    net = tiny_mlp()
    masks = P.global_prune_by_percentage(copy.deepcopy(net), 40)
    P.to_torch_prune(net, masks)
    back = P.from_torch_prune(net)
    assert all(torch.equal(back[k], masks[k]) for k in masks)
    assert all(torch.equal(layer.weight != 0, masks[name]) for name, layer in P.prunable_layers(net))
    with pytest.raises(ValueError, match="weight_mask"):
        P.from_torch_prune(net)


# --- channel pruning -------------------------------------------------------------------------------


def randomize_batchnorm(net: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so ReLU(BN(0)) != 0 for a zeroed channel."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g))
    return net


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("make, x_shape", [(lenet5, (2, 1, 28, 28)), (resnet20, (2, 3, 16, 16)),
                                           (lenet5_caffe, (2, 1, 28, 28))])
def test_channel_prune_equals_channel_masks(make, x_shape):
    torch.manual_seed(0)
    model = randomize_batchnorm(make()).eval()
    original = copy.deepcopy(model)
    small = CP.channel_prune(model, 0.5)
    masks = CP.channel_masks(model, 0.5)
    masked = copy.deepcopy(model)
    P.apply_masks(masked, masks)
    x = torch.randn(x_shape)
    with torch.no_grad():
        assert not torch.allclose(masked(x), model(x), atol=1e-3)
        torch.testing.assert_close(small(x), masked(x), atol=1e-5, rtol=1e-5)
    assert params_equal(model, original)
    small_layers = dict(P.prunable_layers(small))
    for name, mask in masks.items():
        assert int(mask.sum()) == small_layers[name].weight.numel()


def test_channel_prune_lenet5_shapes_and_param_count():
    model = lenet5()
    small = CP.channel_prune(model, 0.5)
    assert small.conv1.weight.shape == (3, 1, 5, 5) and small.conv1.out_channels == 3
    assert small.conv2.weight.shape == (8, 3, 5, 5) and small.conv2.in_channels == 3
    assert small.fc1.weight.shape == (120, 200) and small.fc1.in_features == 200
    # conv1 3*25+3, conv2 8*3*25+8, fc1 120*200+120, fc2 120*84+84, fc3 84*10+10
    assert n_params(model) == 61706 and n_params(small) == 78 + 608 + 24120 + 10164 + 850


def test_channel_prune_resnet20_keeps_residual_width():
    model = resnet20()
    small = CP.channel_prune(model, 0.5)
    block = small.body_op[3]  # first block of stage 2: 16 -> 32 wide
    assert block.conv1.weight.shape == (16, 16, 3, 3) and block.bn1.num_features == 16
    assert block.bn1.running_mean.shape == (16,)
    assert block.conv2.weight.shape == (32, 16, 3, 3) and block.bn2.num_features == 32
    assert block.id_mapping[0].weight.shape == (32, 16, 1, 1)
    # removed per block: conv1 (C/2)*cin*9 + bn1 2*(C/2) + conv2 C*(C/2)*9
    stage1 = 3 * (8 * 16 * 9 + 16 + 16 * 8 * 9)
    stage2 = (16 * 16 * 9 + 32 + 32 * 16 * 9) + 2 * (16 * 32 * 9 + 32 + 32 * 16 * 9)
    stage3 = (32 * 32 * 9 + 64 + 64 * 32 * 9) + 2 * (32 * 64 * 9 + 64 + 64 * 32 * 9)
    assert n_params(model) - n_params(small) == stage1 + stage2 + stage3


def test_channel_prune_keeps_largest_l2_channels():
    model = lenet5()
    with torch.no_grad():
        for c, value in enumerate([6, -5, 4, -3, 10, -1]):  # L2 norms 5 * |value|
            model.conv1.weight[c] = value
        for c in range(16):
            model.conv2.weight[c] *= (c + 1) / model.conv2.weight[c].norm()  # norms 1..16
    small = CP.channel_prune(model, 0.5)  # keep conv1 channels 0, 1, 4 (in order) and conv2's 8..15
    assert type(small) is LeNet5
    torch.testing.assert_close(small.conv1.weight, model.conv1.weight[[0, 1, 4]])
    torch.testing.assert_close(small.conv1.bias, model.conv1.bias[[0, 1, 4]])
    torch.testing.assert_close(small.conv2.weight, model.conv2.weight[8:][:, [0, 1, 4]])
    torch.testing.assert_close(small.fc1.weight, model.fc1.weight[:, 8 * 25:])
    tiny = CP.channel_prune(model, 0.99)  # round(0.06) = 0 -> at least one channel
    assert tiny.conv1.out_channels == 1 and tiny.conv2.out_channels == 1 and tiny.fc1.in_features == 25
    same = CP.channel_prune(model, 0)
    assert params_equal(same, model)


def test_channel_prune_errors():
    for ratio in (-0.1, 1, 1.5):
        with pytest.raises(ValueError, match=f"ratio={ratio}"):
            CP.channel_prune(lenet5(), ratio)
    with pytest.raises(TypeError, match="ratio='0.5'"):
        CP.channel_masks(lenet5(), "0.5")
    with pytest.raises(ValueError, match="model=Sequential declares no channel_groups"):
        CP.channel_prune(nn.Sequential(nn.Conv2d(1, 2, 3)), 0.5)
    with pytest.raises(ValueError, match="model=LeNet300100 declares no channel_groups"):
        CP.channel_masks(lenet_300_100(), 0.5)
    model = lenet5()
    model.conv2 = nn.Identity()
    with pytest.raises(ValueError, match="conv2 is a Identity"):
        CP.channel_masks(model, 0.5)


# --- channel pruning by a given choice of channels (notebook 05's channels_to_keep) ----------------------


def _largest_norms(weight, ratio):  # notebook 05's solution of channels_to_keep
    norms = weight.detach().flatten(1).norm(dim=1)
    keep = torch.zeros(len(norms), dtype=torch.bool)
    keep[norms.argsort(descending=True, stable=True)[:max(1, round((1 - ratio) * len(norms)))]] = True
    return keep


def _smallest_norms(weight, ratio):
    norms = weight.detach().flatten(1).norm(dim=1)
    keep = torch.zeros(len(norms), dtype=torch.bool)
    keep[norms.argsort(stable=True)[:max(1, round((1 - ratio) * len(norms)))]] = True
    return keep


@pytest.mark.parametrize("make", [lenet5, resnet20])
def test_channel_prune_keep_fn_the_largest_norms_is_channel_prune(make):
    torch.manual_seed(0)
    model = make().eval()
    ours, theirs = CP.channel_prune(model, 0.3), CP.channel_prune(model, 0.3, keep_fn=_largest_norms)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(),
                                                  strict=True))
    masks, by = CP.channel_masks(model, 0.3), CP.channel_masks(model, 0.3, keep_fn=_largest_norms)
    assert masks.keys() == by.keys() and all(torch.equal(masks[k], by[k]) for k in masks)


def test_channel_prune_keep_fn_another_choice_cuts_those_channels():
    torch.manual_seed(0)
    model = lenet5().eval()
    small = CP.channel_prune(model, 0.5, keep_fn=_smallest_norms)
    keep = _smallest_norms(model.conv1.weight, 0.5).nonzero().flatten()
    assert torch.equal(small.conv1.weight, model.conv1.weight[keep])
    masked = copy.deepcopy(model)
    P.apply_masks(masked, CP.channel_masks(model, 0.5, keep_fn=_smallest_norms))
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(small(x), masked(x))
    assert not CP.keeps_largest_channels(model.conv1.weight, _smallest_norms(model.conv1.weight, 0.5), 0.5)
    assert CP.keeps_largest_channels(model.conv1.weight, _largest_norms(model.conv1.weight, 0.5), 0.5)
    assert CP.keeps_largest_channels(model.conv1.weight, _largest_norms(model.conv1.weight, 0.0), 0.0)
    assert not CP.keeps_largest_channels(model.conv1.weight, torch.ones(6), 0.0)  # not a bool mask


def test_channel_prune_keep_fn_refuses_a_bad_choice():
    model = lenet5()
    with pytest.raises(ValueError, match="bool tensor of shape"):
        CP.channel_prune(model, 0.5, keep_fn=lambda w, r: torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="keeps no output channel"):
        CP.channel_masks(model, 0.5, keep_fn=lambda w, r: torch.zeros(w.shape[0], dtype=torch.bool))
    with pytest.raises(ValueError, match="ratio"):
        CP.channel_prune(model, 1.0, keep_fn=_largest_norms)
