"""The two networks of the labs: the handout's CIFAR ResNet-20 and the classic LeNet-5.

Module names follow the handout so per-layer reports read like it: ``head_conv``,
``body_op.N.conv1`` / ``conv2``, ``body_op.N.id_mapping`` (shortcut projections, never pruned) and
``final_fc`` for ResNet-20; ``conv1``, ``conv2``, ``fc1``, ``fc2``, ``fc3`` for LeNet-5.

``nbits`` / ``symmetric`` turn the quantizable layers into fake-quantized ones (``labkit.quant``):
ResNet-20 quantizes its residual blocks and keeps the head conv and the final FC in float (the
handout's hint); LeNet-5 quantizes every layer. ``quantizer`` is the STE forward pass those layers
use (None: labkit's; Lab 3 passes the student's ``ste_forward``). The state_dict keys do not change,
so a float checkpoint loads into a quantized model as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labkit.quant import QConv2d, QLinear, check_bit, check_quantizer

ARCHITECTURES = ("resnet20", "lenet5")


def _conv(cin: int, cout: int, k: int, stride: int, nbits, symmetric: bool, quantizer=None) -> nn.Conv2d:
    if nbits is None:
        return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    return QConv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False, nbits=nbits, symmetric=symmetric,
                   quantizer=quantizer)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: identity, or a 1x1 projection ``id_mapping``."""

    def __init__(self, cin: int, cout: int, stride: int, nbits=None, symmetric: bool = False, quantizer=None):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride, nbits, symmetric, quantizer)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3, 1, nbits, symmetric, quantizer)
        self.bn2 = nn.BatchNorm2d(cout)
        self.id_mapping = nn.Identity()
        if stride != 1 or cin != cout:
            self.id_mapping = nn.Sequential(
                _conv(cin, cout, 1, stride, nbits, symmetric, quantizer), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.id_mapping(x))


class ResNetCIFAR(nn.Module):
    """ResNet-6n+2 for small images (He et al. 2016, section 4.2): 3 stages of n blocks, 16/32/64 wide."""

    float_layers = ("head_conv", "final_fc")  # never quantized (the handout's hint)

    def __init__(self, num_layers: int = 20, num_classes: int = 10, in_channels: int = 3,
                 nbits=None, symmetric: bool = False, quantizer=None):
        super().__init__()
        if (num_layers - 2) % 6 != 0 or num_layers < 8:
            raise ValueError(f"num_layers={num_layers}: allowed are 6n+2 with n >= 1 (8, 14, 20, 32, ...)")
        check_bit(nbits)
        check_quantizer(quantizer)
        n = (num_layers - 2) // 6
        self.nbits, self.symmetric = nbits, symmetric
        self.head_conv = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.head_bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(cin, width, stride, nbits, symmetric, quantizer))
                cin = width
        self.body_op = nn.Sequential(*blocks)
        self.final_fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.head_bn(self.head_conv(x)))
        x = self.body_op(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.final_fc(x)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling: conv 6, conv 16, FC 120-84-classes.

    ``conv1`` pads by 2 so that 28x28 and 32x32 inputs both work (the feature map before fc1 is 5x5
    at 28x28; at 32x32 an adaptive pool brings it to 5x5).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, nbits=None, symmetric: bool = False,
                 quantizer=None):
        super().__init__()
        check_bit(nbits)
        check_quantizer(quantizer)
        self.nbits, self.symmetric = nbits, symmetric
        q = {} if nbits is None else {"nbits": nbits, "symmetric": symmetric, "quantizer": quantizer}
        conv = nn.Conv2d if nbits is None else QConv2d
        linear = nn.Linear if nbits is None else QLinear
        self.conv1 = conv(in_channels, 6, 5, padding=2, **q)
        self.conv2 = conv(6, 16, 5, **q)
        self.fc1 = linear(16 * 5 * 5, 120, **q)
        self.fc2 = linear(120, 84, **q)
        self.fc3 = linear(84, num_classes, **q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        if x.shape[-1] != 5:
            x = F.adaptive_max_pool2d(x, 5)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def resnet20(num_classes: int = 10, in_channels: int = 3, nbits=None, symmetric: bool = False,
             quantizer=None) -> ResNetCIFAR:
    """The handout's ResNet-20 (about 0.27M parameters, 20 prunable layers)."""
    return ResNetCIFAR(20, num_classes, in_channels, nbits, symmetric, quantizer)


def lenet5(num_classes: int = 10, in_channels: int = 1, nbits=None, symmetric: bool = False,
           quantizer=None) -> LeNet5:
    """LeNet-5 (about 62k parameters)."""
    return LeNet5(num_classes, in_channels, nbits, symmetric, quantizer)


def constructor_args(model: nn.Module) -> tuple[int, int]:
    """(num_classes, in_channels) of a model: the last Linear's outputs, the first layer's inputs."""
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features, first.in_channels if isinstance(first, nn.Conv2d) else first.in_features


def build(arch: str, **kwargs) -> nn.Module:
    """Build a model by architecture name (one of ``ARCHITECTURES``)."""
    if arch == "resnet20":
        return resnet20(**kwargs)
    if arch == "lenet5":
        return lenet5(**kwargs)
    raise ValueError(f"arch={arch!r}: allowed are {', '.join(ARCHITECTURES)}")
