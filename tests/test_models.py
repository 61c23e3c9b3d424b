import pytest
import torch
from torch import nn
from torchprofile import profile_macs

from labkit import models


def _prunable(net):
    return [n for n, m in net.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and "id_mapping" not in n]


def test_resnet20_shape_names_params_and_macs():
    net = models.resnet20()
    names = _prunable(net)
    assert len(names) == 20
    assert names[0] == "head_conv" and names[1] == "body_op.0.conv1" and names[-1] == "final_fc"
    assert abs(sum(p.numel() for p in net.parameters()) - 270_000) < 0.02 * 270_000
    macs = profile_macs(net.eval(), torch.zeros(1, 3, 32, 32))
    assert abs(macs - 41e6) < 0.05 * 41e6
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet20_shortcuts_are_projections_where_shape_changes():
    net = models.resnet20(in_channels=1, num_classes=7)
    proj = [n for n, m in net.named_modules() if n.endswith("id_mapping") and not isinstance(m, nn.Identity)]
    assert proj == ["body_op.3.id_mapping", "body_op.6.id_mapping"]
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 7)


def test_lenet5_is_the_classic_network():
    net = models.lenet5()
    assert _prunable(net) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert sum(p.numel() for p in net.parameters()) == 61_706  # 156 + 2416 + 48120 + 10164 + 850
    assert net(torch.zeros(2, 1, 28, 28)).shape == net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_lenet_300_100_is_table_1s_network():
    net = models.build("lenet-300-100")
    assert _prunable(net) == ["fc1", "fc2", "fc3"]
    weights = {name: m.weight.numel() for name, m in net.named_modules() if name in net.prunable_layer_names}
    assert weights == {"fc1": 235_200, "fc2": 30_000, "fc3": 1_000}  # the paper's 235K, 30K, 1K
    assert sum(p.numel() for p in net.parameters()) == 266_610  # the paper's 267K
    assert profile_macs(net.eval(), torch.zeros(1, 1, 28, 28)) == 266_200
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert models.constructor_args(models.build("lenet-300-100", num_classes=7, in_channels=3)) == (7, 3)


def test_lenet5_caffe_is_table_1s_network():
    net = models.build("lenet5-caffe")
    assert _prunable(net) == ["conv1", "conv2", "fc1", "fc2"]
    weights = {name: m.weight.numel() for name, m in net.named_modules() if name in net.prunable_layer_names}
    assert weights == {"conv1": 500, "conv2": 25_000, "fc1": 400_000, "fc2": 5_000}  # 0.5K, 25K, 400K, 5K
    assert sum(p.numel() for p in net.parameters()) == 431_080  # the paper's 431K
    # conv1 24x24 outputs x 500, conv2 8x8 x 25,000, then the FC weights once
    assert profile_macs(net.eval(), torch.zeros(1, 1, 28, 28)) == 24 * 24 * 500 + 8 * 8 * 25_000 + 405_000
    assert net(torch.zeros(2, 1, 28, 28)).shape == net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_models_declare_their_prunable_layers_and_channel_groups(arch):
    net = models.build(arch)
    assert list(net.prunable_layer_names) == _prunable(net)  # every weight layer but the shortcuts
    for producer, norm, consumer in net.channel_groups:
        channels = net.get_submodule(producer).out_channels  # a Conv2d's
        assert norm is None or net.get_submodule(norm).num_features == channels
        assert isinstance(net.get_submodule(consumer), (nn.Conv2d, nn.Linear))


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_quantized_variant_loads_float_weights(arch):
    float_net = models.build(arch)
    q_net = models.build(arch, nbits=4)
    q_net.load_state_dict(float_net.state_dict())  # same keys: the handout's Nbits loading
    assert q_net.state_dict().keys() == float_net.state_dict().keys()


def test_resnet20_quantizes_blocks_but_not_head_and_fc():
    from labkit.quant import QConv2d

    net = models.resnet20(nbits=3)
    assert type(net.head_conv) is nn.Conv2d and type(net.final_fc) is nn.Linear
    assert all(isinstance(m, QConv2d) for n, m in net.named_modules() if n.startswith("body_op")
               and isinstance(m, nn.Conv2d))


def test_bad_arguments():
    with pytest.raises(ValueError, match="arch='vgg'"):
        models.build("vgg")
    with pytest.raises(ValueError, match="num_layers=21"):
        models.ResNetCIFAR(21)
    with pytest.raises(ValueError, match="bit=17"):
        models.resnet20(nbits=17)
