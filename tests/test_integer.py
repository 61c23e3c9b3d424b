"""Integer-only inference: the requantization against a float64 reference, the integer layers against their
float models, whole networks against their fake-quantized simulation."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import integer, models, prune


def test_fixed_point_multiplier_is_m0_in_its_range_within_2_to_the_minus_31():
    rng = random.Random(0)
    for M in [0.5, 1.0, 0.999999999999, 1e-9, 3.0, 2**29.5] + [10 ** rng.uniform(-8, 8) for _ in range(500)]:
        m0, shift = integer.fixed_point_multiplier(M)
        assert isinstance(m0, int) and isinstance(shift, int) and 2**30 <= m0 < 2**31, M
        assert abs(m0 * 2.0 ** -(31 + shift) - M) <= M * 2**-31, M
    assert integer.fixed_point_multiplier(0.5) == (2**30, 0) and integer.fixed_point_multiplier(0.75) == \
        (3 * 2**29, 0)


@pytest.mark.parametrize("M", [0, -0.5, 2**30, math.nan, math.inf])
def test_fixed_point_multiplier_refuses_what_it_cannot_hold(M):
    with pytest.raises(ValueError, match="M="):
        integer.fixed_point_multiplier(M)


def test_requantize_is_float64_rounding_half_up_and_saturates():
    g = torch.Generator().manual_seed(0)
    acc = torch.randint(-(2**24), 2**24, (20000,), generator=g, dtype=torch.int32)
    for M, zero_point in ((0.0123, 3), (0.37, 128), (2.5e-5, 0)):
        m0, shift = integer.fixed_point_multiplier(M)
        got = integer.requantize(acc, m0, shift, zero_point, -(2**31), 2**31 - 1)
        exact = acc.double() * (m0 * 2.0 ** -(31 + shift))  # the multiplier m0 stands for, in float64
        reference = torch.floor(exact + 0.5) + zero_point
        near_half = ((exact - torch.floor(exact)) - 0.5).abs() < 1e-6  # float64 cannot tell these apart
        assert got.dtype == torch.int32 and torch.equal(got[~near_half].double(), reference[~near_half])
        assert bool(((got[near_half].double() - reference[near_half]).abs() <= 1).all())
    m0, shift = integer.fixed_point_multiplier(1.0)
    assert integer.requantize(torch.tensor([-300, -1, 0, 5, 300], dtype=torch.int32), m0, shift, 10
                              ).tolist() == [0, 9, 10, 15, 255]  # saturated to 0..255


def test_requantize_takes_one_multiplier_per_output_channel_and_refuses_float_accumulators():
    acc = torch.tensor([[100, 100], [100, 100]], dtype=torch.int32)
    pairs = [integer.fixed_point_multiplier(m) for m in (0.5, 0.25)]
    m0, shift = (torch.tensor(v) for v in zip(*pairs, strict=True))
    assert integer.requantize(acc, m0, shift, 0).tolist() == [[50, 25], [50, 25]]
    with pytest.raises(TypeError, match="integer tensor"):
        integer.requantize(acc.float(), *pairs[0], 0)


def test_integer_linear_and_conv_are_exact_integer_arithmetic():
    g = torch.Generator().manual_seed(1)
    q_x = torch.randint(0, 256, (8, 400), generator=g).to(torch.uint8)
    q_w = torch.randint(-127, 128, (120, 400), generator=g).to(torch.int8)
    bias = torch.randint(-(2**20), 2**20, (120,), generator=g, dtype=torch.int32)
    expected = (q_x.numpy().astype(np.int64) - 17) @ q_w.numpy().astype(np.int64).T + bias.numpy()
    got = integer.integer_linear(q_x, 17, q_w, bias)
    assert got.dtype == torch.int32 and np.array_equal(got.numpy(), expected)

    x = torch.randint(0, 256, (2, 16, 9, 9), generator=g).to(torch.uint8)
    w = torch.randint(-127, 128, (8, 16, 3, 3), generator=g).to(torch.int8)
    b = torch.randint(-1000, 1000, (8,), generator=g, dtype=torch.int32)
    got = integer.integer_conv2d(x, 40, w, b, stride=2, padding=1)
    cols = F.unfold(x.to(torch.int64).double() - 40, 3, padding=1, stride=2).to(torch.int64)  # (2, 144, 25)
    expected = (w.to(torch.int64).flatten(1) @ cols + b.view(1, -1, 1).to(torch.int64)).view(2, 8, 5, 5)
    assert got.dtype == torch.int32 and torch.equal(got.to(torch.int64), expected)


def test_fold_bn_gives_the_conv_that_equals_conv_then_bn():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5)
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 3, 8, 8)
    weight, bias = integer.fold_bn(conv, bn)
    torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1), bn(conv(x)), rtol=1e-5, atol=1e-5)


def _trained_like(model):
    """Random weights with BatchNorm statistics that are not the identity, as after training."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("model, shape", [(models.LeNet5(), (1, 28, 28)),
                                          (models.ResNetCIFAR(8), (3, 32, 32))], ids=["lenet5", "resnet8"])
def test_a_network_in_integers_predicts_as_its_fake_quantized_simulation(model, shape):
    model = _trained_like(model)
    g = torch.Generator().manual_seed(2)
    net = integer.convert(model, torch.randn(256, *shape, generator=g))
    x = torch.randn(400, *shape, generator=g)
    with torch.no_grad():
        float_logits = model(x)
    torch.testing.assert_close(net.float(x), float_logits, rtol=1e-4, atol=1e-4)  # BN folded: the same net
    simulated, integral = net.simulate(x), net.integer(x)
    assert (integral.argmax(1) == simulated.argmax(1)).float().mean() >= 0.995
    on_grid = ((integral - simulated).abs() / net.output.scale).round()
    # float32 sums in the simulation land a few values on the other side of a rounding boundary, and
    # a step of difference travels on through the later layers
    assert (on_grid == 0).float().mean() >= 0.95 and on_grid.max() <= 4


def test_one_integer_layer_is_bit_exact_to_its_float_model_where_rounding_allows():
    g = torch.Generator().manual_seed(3)
    layer = nn.Linear(64, 32)
    affine = integer.Affine(layer.weight, layer.bias, relu=True)
    x = torch.randn(500, 64, generator=g)
    affine.float(x)
    qin = integer.activation_qparams(float(x.min()), float(x.max()))
    affine.freeze(qin, integer.Kernels())
    q_x = integer.quantize_activation(x, qin)
    real_x = integer.dequantize(q_x, qin)
    got = affine.integer(q_x, integer.Kernels())
    simulated = torch.round(affine.simulate(real_x) / affine.qout.scale) + affine.qout.zero_point
    assert got.dtype == torch.uint8 and (got.float() == simulated).float().mean() >= 0.999
    assert (got.float() - simulated).abs().max() <= 1


def test_the_students_kernels_are_the_ones_that_run():
    model = _trained_like(models.LeNet5())
    g = torch.Generator().manual_seed(4)
    calibration, x = torch.randn(128, 1, 28, 28, generator=g), torch.randn(64, 1, 28, 28, generator=g)

    def truncating(acc, m0, shift, zero_point, lo=0, hi=255):  # a student who forgot to round
        n = 31 + torch.as_tensor(shift, dtype=torch.int64)
        return ((acc.to(torch.int64) * torch.as_tensor(m0) >> n) + zero_point).clamp(lo, hi).to(torch.int32)

    def coarse(M):  # a multiplier with 8 significant bits instead of 31
        m0, shift = integer.fixed_point_multiplier(M)
        return m0 >> 23 << 23, shift

    right = integer.convert(model, calibration).integer(x)
    for wrong in (integer.Kernels(requantize=truncating), integer.Kernels(fixed_point_multiplier=coarse)):
        assert not torch.equal(integer.convert(model, calibration, wrong).integer(x), right)


def test_pruned_weights_stay_exactly_zero_in_int8():
    model = _trained_like(models.LeNet5())
    prune.prune_by_percentage(model.fc1, 80.0)
    net = integer.convert(model, torch.randn(64, 1, 28, 28))
    pruned = model.fc1.weight == 0
    assert pruned.float().mean() >= 0.8 and bool((net.layers["fc1"].q_w[pruned] == 0).all())


def test_convert_refuses_what_it_cannot_run():
    with pytest.raises(TypeError, match="allowed are LeNet5 and ResNetCIFAR"):
        integer.convert(models.LeNet300100().eval(), torch.randn(4, 1, 28, 28))
    with pytest.raises(ValueError, match="fake-quantized"):
        integer.convert(models.LeNet5(nbits=8).eval(), torch.randn(4, 1, 28, 28))
    with pytest.raises(ValueError, match="28x28"):
        integer.convert(models.LeNet5(in_channels=3).eval(), torch.randn(4, 3, 32, 32))
