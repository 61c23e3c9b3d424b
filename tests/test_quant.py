import json
import math

import pytest
import torch
from torch import nn

from labkit.answers import decode
from labkit.grading import REFERENCES_DIR
from labkit.measure import count_host_syncs
from labkit.models import lenet5, resnet20
from labkit.quant import (
    STE,
    LSQConv2d,
    LSQLinear,
    LSQQuantizer,
    QConv2d,
    QLinear,
    check_bit,
    fixed_point_report,
    is_fixed_point,
    is_lsq_quantized,
    lsq_quantize_model,
    lsq_report,
    quantization_levels,
    quantize,
    zeros_of,
)

# One weight vector for the hand-computed tables: a pruned zero, a range that is not symmetric.
W = torch.tensor([-0.5, 0.0, 0.4, 0.85, 1.5])

# Asymmetric: beta = -0.5, alpha = 2, w_s = (w + 0.5)/2 = [0, (0.25), 0.45, 0.675, 1];
# R = round(w_s (2^b - 1)) / (2^b - 1); w_q = 2 R - 0.5; the zero stays zero.
ASYMMETRIC = {
    1: [-0.5, 0.0, -0.5, 1.5, 1.5],        # round(w_s) = 0, 0, 1, 1
    2: [-0.5, 0.0, 1 / 6, 5 / 6, 1.5],     # round(3 w_s) = 0, 1, 2, 3
    3: [-0.5, 0.0, 5 / 14, 13 / 14, 1.5],  # round(7 w_s) = 0, 3, 5, 7
    4: [-0.5, 0.0, 13 / 30, 5 / 6, 1.5],   # round(15 w_s) = 0, 7, 10, 15
}
# Symmetric: max|w| = 1.5, w_s = w/1.5 = [-1/3, 0, 0.267, 0.567, 1];
# R = round(w_s (2^(b-1) - 1)) / (2^(b-1) - 1); w_q = 1.5 R.
SYMMETRIC = {
    2: [0.0, 0.0, 0.0, 1.5, 1.5],          # round(w_s) = 0, 0, 0, 1, 1
    3: [-0.5, 0.0, 0.5, 1.0, 1.5],         # round(3 w_s) = -1, 0, 1, 2, 3
    4: [-3 / 7, 0.0, 3 / 7, 6 / 7, 1.5],   # round(7 w_s) = -2, 0, 2, 4, 7
}


@pytest.mark.parametrize("symmetric, table", [(False, ASYMMETRIC), (True, SYMMETRIC)])
def test_ste_forward_matches_hand_computed_levels(symmetric, table):
    for bit, expected in table.items():
        wq = STE.apply(W, bit, symmetric)
        torch.testing.assert_close(wq, torch.tensor(expected), rtol=0, atol=1e-6, msg=f"bit={bit}")
        assert wq[1] == 0
        assert torch.equal(quantize(W, bit, symmetric), wq)


def test_quantization_levels_by_hand():
    torch.testing.assert_close(quantization_levels(W, 2), torch.tensor([-0.5, 1 / 6, 5 / 6, 1.5]))
    torch.testing.assert_close(quantization_levels(W, 3, symmetric=True),
                               torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]))


@pytest.mark.parametrize("symmetric", [False, True])
def test_quantization_levels_hold_exactly_the_quantized_values(symmetric):
    torch.manual_seed(0)
    w = torch.randn(64, 9) * (torch.rand(64, 9) > 0.3)  # about 30% pruned zeros
    for bit in (2, 3, 4, 6):
        levels = quantization_levels(w, bit, symmetric)
        assert len(levels) == (2**bit - 1 if symmetric else 2**bit)
        assert (levels.diff() > 0).all()
        wq = quantize(w, bit, symmetric)
        assert torch.isin(wq[w != 0], levels).all()  # bit-exact, not approximately
        assert (wq[w == 0] == 0).all()
        if symmetric:
            assert torch.equal(levels, -levels.flip(0)) and levels[len(levels) // 2] == 0
        else:
            assert levels[0] == w.min()
            torch.testing.assert_close(levels[-1], w.max())


def test_quantization_levels_are_read_off_the_quantizer_given():
    torch.manual_seed(1)
    w = torch.randn(32, 5)
    for symmetric in (False, True):
        own = quantization_levels(w, 3, symmetric)
        assert torch.equal(quantization_levels(w, 3, symmetric, quantizer=quantize), own)
    coarse = quantization_levels(w, 3, quantizer=lambda x, bit, sym: quantize(x, bit - 1, sym))  # a wrong one
    assert len(coarse) == 4


def test_quantization_levels_refuse_what_has_no_levels():
    with pytest.raises(ValueError, match="bit=0"):
        quantization_levels(W, 0)
    with pytest.raises(TypeError, match="bit=None"):
        quantization_levels(W, None)
    with pytest.raises(ValueError, match="bit=1 with symmetric=True"):
        quantization_levels(W, 1, symmetric=True)
    with pytest.raises(ValueError, match="NaN/Inf"):
        quantization_levels(torch.tensor([1.0, float("nan")]), 2)


def test_zeros_of_marks_exact_zeros_and_keeps_the_name():
    zeros = zeros_of(quantize)
    assert zeros.__name__ == "quantize"
    assert torch.equal(zeros(W, 2, symmetric=True), torch.tensor([True, True, True, False, False]))
    assert torch.equal(zeros(W, 2), torch.tensor([False, True, False, False, False]))

    def unmasked(w, bit, symmetric):  # forgets to restore the pruned zeros
        return quantize(w + 1e-3, bit, symmetric)

    assert not zeros_of(unmasked)(W, 2)[1]


def test_ste_bit_none_is_identity_and_bit_zero_gives_zeros():
    assert torch.equal(STE.apply(W, None), W)
    assert torch.equal(STE.apply(W, 0, True), torch.zeros(5))


@pytest.mark.parametrize("symmetric", [False, True])
def test_ste_degenerate_tensors(symmetric):
    assert torch.equal(quantize(torch.zeros(4), 3, symmetric), torch.zeros(4))  # not 0/0 = NaN
    for constant in ([0.3, 0.3, 0.3], [-2.0, -2.0, -2.0], [0.3, 0.0, 0.3]):
        w = torch.tensor(constant)
        assert torch.equal(quantize(w, 3, symmetric), w)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_ste_poisons_all_of_w_q_on_nan_or_inf_and_quantize_refuses(symmetric, bad):
    w = torch.tensor([0.5, 0.0, -1.0, bad])
    assert torch.isnan(STE.apply(w, 4, symmetric)).all()
    with pytest.raises(ValueError, match="NaN/Inf"):
        quantize(w, 4, symmetric)


@pytest.mark.parametrize("symmetric", [False, True])
def test_ste_gradient_passes_straight_through(symmetric):
    w = W.clone().requires_grad_()
    upstream = torch.tensor([0.1, -2.0, 3.0, 0.0, 7.5])
    (STE.apply(w, 3, symmetric) * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)


def test_qconv2d_keeps_pruned_zeros_through_sgd_with_a_mask():
    torch.manual_seed(0)
    conv = QConv2d(2, 3, 3, nbits=3, bias=False)
    mask = (torch.rand_like(conv.weight) > 0.5).float()
    with torch.no_grad():
        conv.weight.mul_(mask)
    before = conv.weight.detach().clone()
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    x = torch.randn(4, 2, 6, 6)
    for _ in range(3):
        opt.zero_grad()
        conv(x).square().mean().backward()
        assert conv.weight.grad[mask == 0].abs().sum() > 0  # STE alone would revive pruned weights
        opt.step()
        with torch.no_grad():
            conv.weight.mul_(mask)  # the pruning step callback
    wq = quantize(conv.weight.detach(), 3)
    assert not torch.equal(conv.weight, before)
    assert (wq[mask == 0] == 0).all()
    assert wq[mask == 1].unique().numel() <= 2**3


def test_training_step_through_ste_and_lsq_layers_has_no_host_sync():
    layers = [QConv2d(2, 3, 3, nbits=4), QConv2d(2, 3, 3, nbits=4, symmetric=True),
              LSQConv2d(2, 3, 3, bits=4, act_bits=4)]
    x = torch.randn(2, 2, 5, 5)
    for layer in layers:  # LSQ's first call initialises its steps: that too stays on the device
        assert count_host_syncs(lambda layer=layer: layer(x).sum().backward()) == 0, layer
        assert layer(x).shape == (2, 3, 3, 3)


@pytest.mark.parametrize("build, shape", [(resnet20, (2, 3, 8, 8)), (lenet5, (2, 1, 28, 28))])
def test_float_state_dict_loads_into_quantized_model(build, shape):
    torch.manual_seed(0)
    net, qnet = build().eval(), build(nbits=4).eval()
    assert qnet.state_dict().keys() == net.state_dict().keys()
    qnet.load_state_dict(net.state_dict())
    x = torch.randn(shape)
    out, qout = net(x), qnet(x)
    assert torch.isfinite(qout).all()
    assert not torch.allclose(out, qout)


@pytest.mark.parametrize("bit, error", [(17, ValueError), (-1, ValueError), (True, TypeError),
                                        (2.0, TypeError), ("4", TypeError)])
def test_check_bit_refuses_bad_bits(bit, error):
    with pytest.raises(error, match="bit="):
        check_bit(bit)
    with pytest.raises(error, match="bit="):
        QLinear(3, 2, nbits=bit)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="bit=1 with symmetric=True"):
        STE.apply(W, 1, True)
    with pytest.raises(ValueError, match="bit=1 with symmetric=True"):
        QConv2d(1, 1, 1, nbits=1, symmetric=True)
    with pytest.raises(TypeError, match="symmetric="):
        quantize(W, 4, symmetric="yes")
    with pytest.raises(TypeError, match="w="):
        quantize(torch.tensor([1, 2]), 4)
    with pytest.raises(ValueError, match="bits=1"):
        LSQQuantizer(1)
    with pytest.raises(TypeError, match="bits="):
        LSQQuantizer(4.0)
    with pytest.raises(ValueError, match="bits=1"):
        lsq_quantize_model(lenet5(), 1)
    with pytest.raises(ValueError, match="fc9"):
        lsq_quantize_model(lenet5(), 4, layers=["fc1", "fc9"])
    with pytest.raises(TypeError, match="layers="):
        lsq_quantize_model(lenet5(), 4, layers="fc1")


def test_lsq_step_initialisation():
    w = torch.tensor([[0.5, -1.0], [0.25, 2.0]])
    q = LSQQuantizer(3)  # Q_N = 4, Q_P = 3
    assert (q.q_n, q.q_p) == (4, 3)
    q(w)
    assert q.step.item() == pytest.approx(2 * 0.9375 / math.sqrt(3))  # mean|w| = 3.75/4


def test_lsq_weight_gradients_follow_the_paper():
    q = LSQQuantizer(3)  # Q_N = 4, Q_P = 3
    q.load_state_dict({"step": torch.tensor(0.5)})  # a loaded step is not re-initialised
    w = torch.tensor([-2.6, -1.1, 0.2, 0.74, 1.6, 3.0], requires_grad=True)
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    wq = q(w)
    # w/s = [-5.2, -2.2, 0.4, 1.48, 3.2, 6.0] -> clamp to [-4, 3] -> round -> times s
    torch.testing.assert_close(wq, torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.5, 1.5]))
    (wq * upstream).sum().backward()
    assert q.step.item() == 0.5
    assert torch.equal(w.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 0.0, 0.0]))  # only -4 < w/s < 3
    # d w_q/ds: -Q_N below, -w/s + round(w/s) inside, Q_P above; times g = 1/sqrt(N Q_P), N = 6
    ds = -4 * 1 + (2.2 - 2) * 2 + (-0.4 + 0) * 3 + (-1.48 + 1) * 4 + 3 * 5 + 3 * 6
    assert q.step.grad.item() == pytest.approx(ds / math.sqrt(6 * 3), rel=1e-5)


def test_lsq_activation_quantizer_is_unsigned_and_scales_by_features_per_example():
    q = LSQQuantizer(2, activation=True)  # Q_N = 0, Q_P = 3
    q.load_state_dict({"step": torch.tensor(1.0)})
    x = torch.tensor([[0.4, 1.2, 5.0], [-1.0, 2.6, 0.0]], requires_grad=True)
    xq = q(x)
    assert torch.equal(xq, torch.tensor([[0.0, 1.0, 3.0], [0.0, 3.0, 0.0]]))
    xq.sum().backward()
    assert torch.equal(x.grad, torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
    ds = (-0.4 + 0) + (-1.2 + 1) + 3 + 0 + (-2.6 + 3) + 0
    assert q.step.grad.item() == pytest.approx(ds / math.sqrt(3 * 3), rel=1e-5)  # N = 3 features


def test_lsq_quantize_model_converts_lenet5_from_float_weights():
    torch.manual_seed(0)
    net = lenet5()
    qnet = lsq_quantize_model(net, 4, quantize_activations=True)
    assert type(net.conv1) is nn.Conv2d  # the float model is left alone
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert [type(getattr(qnet, n)) for n in names] == [LSQConv2d] * 2 + [LSQLinear] * 3
    assert torch.equal(qnet.fc1.weight, net.fc1.weight)
    assert qnet.fc1.weight_quantizer.step.item() == pytest.approx(
        2 * net.fc1.weight.abs().mean().item() / math.sqrt(7))
    assert isinstance(qnet.conv1.input_quantizer, nn.Identity)  # the image is signed
    expected_keys = set(net.state_dict()) | {f"{n}.weight_quantizer.step" for n in names} | {
        f"{n}.input_quantizer.step" for n in names[1:]}
    assert set(qnet.state_dict()) == expected_keys
    out = qnet(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_lsq_quantize_model_keeps_resnet20_head_and_final_fc_float():
    qnet = lsq_quantize_model(resnet20(), 4)
    assert type(qnet.head_conv) is nn.Conv2d and type(qnet.final_fc) is nn.Linear
    lsq = [m for m in qnet.modules() if isinstance(m, LSQConv2d)]
    assert len(lsq) == 20  # 18 block convs + 2 shortcut projections, as resnet20(nbits=...)
    assert len([m for m in resnet20(nbits=4).modules() if isinstance(m, QConv2d)]) == 20



def _lsq_forward(x, step, bits):  # notebook 04's solution of lsq_quantize
    q_n, q_p = 2 ** (bits - 1), 2 ** (bits - 1) - 1
    return torch.round(torch.clamp(x / step, -q_n, q_p)) * step


def test_lsq_quantizer_with_a_right_forward_trains_exactly_as_labkits():
    torch.manual_seed(0)
    net = lenet5()
    ours, theirs = lsq_quantize_model(net, 3), lsq_quantize_model(net, 3, quantizer=_lsq_forward)
    assert "quantizer=_lsq_forward" in repr(theirs.conv1)
    x = torch.randn(4, 1, 28, 28)
    out_ours, out_theirs = ours(x), theirs(x)
    assert torch.equal(out_ours, out_theirs)
    out_ours.square().sum().backward()
    out_theirs.square().sum().backward()
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert torch.equal(a.grad, b.grad), name  # the weights' and the steps' gradients are LSQ's
    assert is_lsq_quantized(theirs)
    assert all(r["on_grid"] and r["levels"] <= 8 for r in lsq_report(theirs).values())


def test_lsq_quantizer_uses_the_given_forward_value_and_keeps_lsqs_gradients():
    q = LSQQuantizer(3, quantizer=lambda x, step, bits: torch.round(x / step))  # forgets clamp and step
    q.load_state_dict({"step": torch.tensor(0.5)})
    w = torch.tensor([-2.6, -1.1, 0.2, 0.74, 1.6, 3.0], requires_grad=True)
    wq = q(w)
    assert torch.equal(wq, torch.tensor([-5.0, -2.0, 0.0, 1.0, 3.0, 6.0]))  # the given forward's value
    (wq * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])).sum().backward()
    assert torch.equal(w.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 0.0, 0.0]))  # LSQ's, as without it
    ds = -4 * 1 + (2.2 - 2) * 2 + (-0.4 + 0) * 3 + (-1.48 + 1) * 4 + 3 * 5 + 3 * 6
    assert q.step.grad.item() == pytest.approx(ds / math.sqrt(6 * 3), rel=1e-5)


def test_a_wrong_lsq_forward_leaves_the_grid_and_the_report_says_so():
    def unscaled(x, step, bits):  # the integer codes, not scaled back by the step
        return torch.round(torch.clamp(x / step, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1))

    torch.manual_seed(0)
    qnet = lsq_quantize_model(lenet5(), 4, quantizer=unscaled)
    assert not is_lsq_quantized(qnet)
    assert not any(r["on_grid"] for r in lsq_report(qnet).values())
    assert not is_lsq_quantized(lenet5())  # no LSQ layer at all


def test_lsq_quantizer_argument_errors():
    with pytest.raises(TypeError, match="quantizer="):
        LSQQuantizer(4, quantizer="round")
    with pytest.raises(TypeError, match="quantizer="):
        LSQQuantizer(4, activation=True, quantizer=_lsq_forward)  # signed weights only

def test_notebook_03_grades_the_ste_forward_against_labkits_quantize():
    """The stored answers of Lab 3 (a) are exactly labkit's quantizer on the stored inputs."""
    questions = json.loads((REFERENCES_DIR / "03_quantization_resnet20.quick.json").read_text())["questions"]
    values, zeros = questions["a.ste_forward"]["cases"], questions["a.zero_pattern"]["cases"]
    assert len(values) == len(zeros) >= 10
    assert {tuple(decode(c["args"])[1:]) for c in values} >= {(2, False), (2, True), (3, True)}
    for value_case, zero_case in zip(values, zeros, strict=True):
        w, bit, symmetric = decode(value_case["args"])
        wq = quantize(w, bit, symmetric)
        assert torch.equal(decode(value_case["expected"]), wq), (bit, symmetric)
        assert torch.equal(decode(zero_case["expected"]), wq == 0), (bit, symmetric)


# ---- STE with another forward pass (Lab 3 passes the student's ste_forward) ----------------------


def quant_scaling(w, bit, symmetric):
    """labkit's dynamic scaling (x, alpha, beta, step), to build wrong quantizers from."""
    from labkit.quant import _scaling

    return _scaling(w, bit, symmetric)


def _off_by_one(w, bit, symmetric=False):
    """A plausible student bug: the step is one too large, 2^bit + 1 levels in both modes."""
    step = 2 ** (bit - 1) if symmetric else 2**bit
    x, alpha, beta, _ = quant_scaling(w, bit, symmetric)
    return (torch.round((x - beta) / alpha * step) / step * alpha + beta) * (w != 0)


def _no_mask(w, bit, symmetric=False):
    """A plausible student bug: the pruned zeros are not restored."""
    x, alpha, beta, step = quant_scaling(w, bit, symmetric)
    return torch.round((x - beta) / alpha * step) / step * alpha + beta


@pytest.mark.parametrize("symmetric", [False, True])
def test_ste_runs_the_given_forward_pass_and_passes_the_gradient_straight_through(symmetric):
    calls = []

    def half(w, bit, symmetric=False):
        calls.append((bit, symmetric))
        return w / 2

    w = W.clone().requires_grad_()
    upstream = torch.tensor([0.1, -2.0, 3.0, 0.0, 7.5])
    out = STE.apply(w, 3, symmetric, half)
    assert torch.equal(out, W / 2) and calls == [(3, symmetric)]
    (out * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)  # labkit's backward, whatever the forward pass
    assert torch.equal(STE.apply(W, 3, symmetric, None), quantize(W, 3, symmetric))


@pytest.mark.parametrize("layer, x", [(lambda **q: QConv2d(2, 3, 3, **q), torch.randn(2, 2, 5, 5)),
                                      (lambda **q: QLinear(4, 3, **q), torch.randn(2, 4))])
def test_quantized_layers_use_their_quantizer(layer, x):
    torch.manual_seed(0)
    default, custom = layer(nbits=4), layer(nbits=4, quantizer=lambda w, bit, symmetric: w * 0)
    custom.load_state_dict(default.state_dict())
    assert custom.state_dict().keys() == default.state_dict().keys()
    assert torch.equal(default.quantized_weight(), quantize(default.weight.detach(), 4))
    assert not custom.quantized_weight().any()
    assert not torch.allclose(default(x), custom(x))
    assert "quantizer=<lambda>" in repr(custom) and "quantizer" not in repr(default)
    with pytest.raises(TypeError, match="quantizer="):
        layer(nbits=4, quantizer="ste_forward")


@pytest.mark.parametrize("build, shape, count", [(resnet20, (2, 3, 8, 8), 20), (lenet5, (2, 1, 28, 28), 5)])
def test_models_thread_the_quantizer_to_every_quantized_layer(build, shape, count):
    torch.manual_seed(0)
    calls = []

    def counting(w, bit, symmetric=False):
        calls.append(bit)
        return quantize(w, bit, symmetric)

    net, qnet = build(nbits=3).eval(), build(nbits=3, quantizer=counting).eval()
    qnet.load_state_dict(net.state_dict())
    quantized = [m for m in qnet.modules() if isinstance(m, (QConv2d, QLinear))]
    assert len(quantized) == count and all(m.quantizer is counting for m in quantized)
    x = torch.randn(shape)
    assert torch.equal(qnet(x), net(x)) and calls == [3] * count  # labkit's quantizer, called through it
    with pytest.raises(TypeError, match="quantizer="):
        build(nbits=3, quantizer=1)


def test_checkpoint_loader_passes_the_quantizer_on(tmp_path):
    from labkit import checkpoints

    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    checkpoints.save_checkpoint(resnet20(), path, arch="resnet20", dataset="fashion-mnist-mini")
    model, _ = checkpoints.load_model(path, nbits=2, quantizer=_no_mask)
    assert all(m.quantizer is _no_mask for m in model.modules() if isinstance(m, QConv2d))


def test_fixed_point_report_reads_what_the_forward_pass_uses():
    torch.manual_seed(0)
    net = resnet20(nbits=3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, QConv2d):
                m.weight.mul_(torch.rand_like(m.weight) > 0.5)  # pruned zeros
    report = fixed_point_report(net)
    assert len(report) == 20 and "head_conv" not in report
    assert all(r["allowed"] == 8 and 2 <= r["levels"] <= 8 and r["zeros_kept"] for r in report.values())
    assert all(0.4 < r["sparsity"] < 0.6 for r in report.values())
    assert is_fixed_point(net)
    assert not is_fixed_point(resnet20())  # a float model has no fixed-point layer at all
    assert all(r["allowed"] == 7 for r in fixed_point_report(resnet20(nbits=3, symmetric=True)).values())


@pytest.mark.parametrize("symmetric", [False, True])
def test_is_fixed_point_catches_the_plausible_bugs(symmetric):
    torch.manual_seed(0)
    state = resnet20().state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if key.endswith("conv1.weight"):
                value.mul_(torch.rand_like(value) > 0.5)
    # without the mask, a pruned 0 goes to a level; the symmetric grid's exact 0 keeps it 0 anyway
    for quantizer, ok in ((None, True), (_off_by_one, False), (_no_mask, symmetric)):
        net = resnet20(nbits=2, symmetric=symmetric, quantizer=quantizer)
        net.load_state_dict(state)
        assert is_fixed_point(net) is ok, quantizer
    net = resnet20(nbits=2, symmetric=symmetric, quantizer=_off_by_one)
    net.load_state_dict(state)
    assert max(r["levels"] for r in fixed_point_report(net).values()) == 5  # 2^2 + 1


def test_notebook_03_runs_every_quantized_model_on_the_students_forward_pass():
    """(b) to (e) build their quantized models with quantizer=ste_forward, so a blank or wrong
    ste_forward changes the graded runs, not only the function check of (a)."""
    import re

    import nbformat

    from labkit.runner import NOTEBOOKS

    nb = nbformat.read(NOTEBOOKS / "03_quantization_resnet20.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    builds = [m for src in code for m in re.findall(r"resnet20\([^()]*nbits=[^()]*\)", src)]
    assert len(builds) >= 4, builds  # (b), (c), (d), (e)
    assert all("quantizer=ste_forward" in b for b in builds), builds
