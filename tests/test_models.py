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
