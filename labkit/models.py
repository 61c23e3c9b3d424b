"""The networks of the labs: the handout's CIFAR ResNet-20 and the classic LeNet-5, plus the two
networks of Deep Compression's Table 1 (Han, Mao & Dally 2016), LeNet-300-100 and Caffe's LeNet-5.

Module names follow the handout so per-layer reports read like it: ``head_conv``,
``body_op.N.conv1`` / ``conv2``, ``body_op.N.id_mapping`` (shortcut projections, never pruned) and
``final_fc`` for ResNet-20; ``conv1``, ``conv2``, ``fc1``, ``fc2``, ``fc3`` for LeNet-5 (the paper's
networks: ``fc1``... and ``conv1``, ``conv2``, ``fc1``, ``fc2``).

Every model states what the pruner may touch (``labkit.prune`` reads it, as open_lth's models do):
``prunable_layer_names``, the Conv2d / Linear layers whose weights are pruned, in module order, and
``channel_groups``, one ``(producer conv, its BatchNorm or None, consumer layer)`` per set of output
channels that channel pruning may remove together.

``nbits`` / ``symmetric`` turn the quantizable layers into fake-quantized ones (``labkit.quant``):
ResNet-20 quantizes its residual blocks and keeps the head conv and the final FC in float (the
handout's hint, ``float_layers``); the LeNets quantize every layer. ``quantizer`` is the STE forward
pass those layers use (None: labkit's; Lab 3 passes the student's ``ste_forward``). The state_dict
keys do not change, so a float checkpoint loads into a quantized model as it is.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from labkit.quant import QConv2d, QLinear, check_bit, check_quantizer


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

    @property
    def prunable_layer_names(self) -> list[str]:
        """Every conv of the blocks, the head conv and the final FC; not the shortcut projections."""
        blocks = [f"body_op.{i}.conv{j}" for i in range(len(self.body_op)) for j in (1, 2)]
        return ["head_conv", *blocks, "final_fc"]

    @property
    def channel_groups(self) -> list[tuple[str, str | None, str]]:
        """The inner channels of each block (conv1, bn1 -> conv2); the residual width stays."""
        return [(f"body_op.{i}.conv1", f"body_op.{i}.bn1", f"body_op.{i}.conv2")
                for i in range(len(self.body_op))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.head_bn(self.head_conv(x)))
        x = self.body_op(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.final_fc(x)


def _layer_types(model: nn.Module, nbits, symmetric: bool, quantizer) -> tuple:
    """(conv, linear) constructors of a LeNet: float, or fake-quantized at ``nbits`` (checked)."""
    check_bit(nbits)
    check_quantizer(quantizer)
    model.nbits, model.symmetric = nbits, symmetric
    if nbits is None:
        return nn.Conv2d, nn.Linear
    q = {"nbits": nbits, "symmetric": symmetric, "quantizer": quantizer}
    return functools.partial(QConv2d, **q), functools.partial(QLinear, **q)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling: conv 6, conv 16, FC 120-84-classes.

    ``conv1`` pads by 2 so that 28x28 and 32x32 inputs both work (the feature map before fc1 is 5x5
    at 28x28; at 32x32 an adaptive pool brings it to 5x5).
    """

    prunable_layer_names = ("conv1", "conv2", "fc1", "fc2", "fc3")
    channel_groups = (("conv1", None, "conv2"), ("conv2", None, "fc1"))

    def __init__(self, num_classes: int = 10, in_channels: int = 1, nbits=None, symmetric: bool = False,
                 quantizer=None):
        super().__init__()
        conv, linear = _layer_types(self, nbits, symmetric, quantizer)
        self.conv1 = conv(in_channels, 6, 5, padding=2)
        self.conv2 = conv(6, 16, 5)
        self.fc1 = linear(16 * 5 * 5, 120)
        self.fc2 = linear(120, 84)
        self.fc3 = linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.adaptive_max_pool2d(x, 5).flatten(1)  # the identity at 28x28; no branch, so torch.fx traces it
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet300100(nn.Module):
    """LeNet-300-100 (LeCun et al. 1998), the first network of Deep Compression's Table 1: fully
    connected 784-300-100-classes with ReLU, 266,610 parameters on 28x28 images. ``in_channels``
    is stored: the first layer sees the flattened image."""

    prunable_layer_names = ("fc1", "fc2", "fc3")
    channel_groups = ()  # no conv layer

    def __init__(self, num_classes: int = 10, in_channels: int = 1, nbits=None, symmetric: bool = False,
                 quantizer=None):
        super().__init__()
        _, linear = _layer_types(self, nbits, symmetric, quantizer)
        self.in_channels = in_channels
        self.fc1 = linear(in_channels * 28 * 28, 300)
        self.fc2 = linear(300, 100)
        self.fc3 = linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    """Caffe's LeNet-5 (``examples/mnist/lenet.prototxt``), the second network of Deep Compression's
    Table 1: conv 20 5x5, max pool, conv 50 5x5, max pool, FC 500 with ReLU, FC classes (431,080
    parameters; as in Caffe, no ReLU after the convs). 28x28 images; at 32x32 an adaptive pool brings
    the last feature map to 4x4."""

    prunable_layer_names = ("conv1", "conv2", "fc1", "fc2")
    channel_groups = (("conv1", None, "conv2"), ("conv2", None, "fc1"))

    def __init__(self, num_classes: int = 10, in_channels: int = 1, nbits=None, symmetric: bool = False,
                 quantizer=None):
        super().__init__()
        conv, linear = _layer_types(self, nbits, symmetric, quantizer)
        self.conv1 = conv(in_channels, 20, 5)
        self.conv2 = conv(20, 50, 5)
        self.fc1 = linear(50 * 4 * 4, 500)
        self.fc2 = linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        if x.shape[-1] != 4:
            x = F.adaptive_max_pool2d(x, 4)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def resnet20(num_classes: int = 10, in_channels: int = 3, nbits=None, symmetric: bool = False,
             quantizer=None) -> ResNetCIFAR:
    """The handout's ResNet-20 (about 0.27M parameters, 20 prunable layers)."""
    return ResNetCIFAR(20, num_classes, in_channels, nbits, symmetric, quantizer)


def lenet5(num_classes: int = 10, in_channels: int = 1, nbits=None, symmetric: bool = False,
           quantizer=None) -> LeNet5:
    """LeNet-5 (about 62k parameters)."""
    return LeNet5(num_classes, in_channels, nbits, symmetric, quantizer)


def lenet_300_100(num_classes: int = 10, in_channels: int = 1, nbits=None, symmetric: bool = False,
                  quantizer=None) -> LeNet300100:
    """LeNet-300-100 (about 267k parameters, Deep Compression's Table 1)."""
    return LeNet300100(num_classes, in_channels, nbits, symmetric, quantizer)


def lenet5_caffe(num_classes: int = 10, in_channels: int = 1, nbits=None, symmetric: bool = False,
                 quantizer=None) -> LeNet5Caffe:
    """Caffe's LeNet-5, 20-50-500 (about 431k parameters, Deep Compression's Table 1)."""
    return LeNet5Caffe(num_classes, in_channels, nbits, symmetric, quantizer)


_BUILDERS = {"resnet20": resnet20, "lenet5": lenet5, "lenet-300-100": lenet_300_100,
             "lenet5-caffe": lenet5_caffe}
ARCHITECTURES = tuple(_BUILDERS)


def constructor_args(model: nn.Module) -> tuple[int, int]:
    """(num_classes, in_channels) of a model: the last Linear's outputs; the ``in_channels`` the model
    stores (one that flattens its input first), else the first layer's inputs."""
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    in_channels = getattr(model, "in_channels", None)
    if in_channels is None:
        in_channels = first.in_channels if isinstance(first, nn.Conv2d) else first.in_features
    return last.out_features, in_channels


def build(arch: str, **kwargs) -> nn.Module:
    """Build a model by architecture name (one of ``ARCHITECTURES``)."""
    if arch not in _BUILDERS:
        raise ValueError(f"arch={arch!r}: allowed are {', '.join(ARCHITECTURES)}")
    return _BUILDERS[arch](**kwargs)
