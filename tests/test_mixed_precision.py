import pytest
import torch

from labkit import mixed_precision as M
from labkit.models import lenet5


def distinct_nonzeros(weight: torch.Tensor) -> int:
    return len(torch.unique(weight[weight != 0]))


def test_allocate_bits_picks_the_best_combination_within_the_budget():
    sensitivity = {"a": {2: 0.5, 4: 0.9}, "b": {2: 0.1, 4: 0.9}}
    sizes = {"a": 100, "b": 10}
    assert M.allocate_bits(sensitivity, sizes, 240) == {"a": 2, "b": 4}
    assert M.allocate_bits(sensitivity, sizes, 440) == {"a": 4, "b": 4}
    with pytest.raises(ValueError, match="budget=100"):
        M.allocate_bits(sensitivity, sizes, 100)


def test_bit_sensitivity_leaves_the_model_unchanged():
    model = lenet5()
    before = [t.clone() for t in model.state_dict().values()]
    result = M.bit_sensitivity(model, lambda m: distinct_nonzeros(m.fc1.weight), choices=(1, 3))
    assert list(result) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert result["fc1"] == {1: 2.0, 3: 8.0}
    assert result["conv1"][1] == distinct_nonzeros(model.fc1.weight) > 40000  # fc1 float while conv1 shares
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values(), strict=True))


def test_quantize_layers_copies_and_quantizes_the_named_layers():
    torch.manual_seed(0)
    model = lenet5()
    shared = M.quantize_layers(model, {"fc1": 2, "conv2": 3})
    fixed = M.quantize_layers(model, {"fc1": 2}, M.fixed_point_layer)
    assert distinct_nonzeros(shared.fc1.weight) <= 4 and distinct_nonzeros(shared.conv2.weight) <= 8
    assert distinct_nonzeros(fixed.fc1.weight) <= 4 and torch.equal(fixed.conv2.weight, model.conv2.weight)
    assert distinct_nonzeros(model.fc1.weight) > 40000  # the original is untouched
    with pytest.raises(ValueError, match="fc9"):
        M.quantize_layers(model, {"fc9": 2})
