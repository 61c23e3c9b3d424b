"""Channel pruning (the LeNet-5 report's structured pruning): remove whole output channels of the conv
layers a model declares in ``channel_groups`` (producer conv, its BatchNorm, the consumer that reads them),
by the L1 norm of their filters or a given choice (``keep_fn``, the student's in notebook 05), either as
masks (``channel_masks``: the dense shapes stay) or physically (``channel_prune``: a smaller model).
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass

import torch
from torch import nn

from labkit.prune import submodule


@dataclass(frozen=True)
class _ChannelCut:
    """Output channels ``keep`` of conv ``producer`` survive; the BatchNorm ``norm`` after it (if
    any) keeps the same entries and ``consumer`` the matching inputs (``block`` per channel)."""

    producer: str
    norm: str | None
    consumer: str
    keep: torch.Tensor
    block: int

    def input_index(self) -> torch.Tensor:
        offsets = torch.arange(self.block, device=self.keep.device)
        return (self.keep[:, None] * self.block + offsets).flatten()


def _channel_groups(model: nn.Module) -> list[tuple[str, str | None, str]]:
    """The model's declared ``channel_groups``: (producer conv, its BatchNorm or None, consumer)."""
    groups = list(getattr(model, "channel_groups", ()))
    if not groups:
        raise ValueError(f"model={type(model).__name__} declares no channel_groups: allowed are models with "
                         "conv layers that declare them (labkit.models' LeNet5, LeNet5Caffe, ResNetCIFAR)")
    return groups


def _channel_cuts(model: nn.Module, ratio: float) -> list[_ChannelCut]:
    """Which output channels survive, chosen on ``model``'s current weights: the
    max(1, round((1 - ratio) * C)) of largest L2 norm (ties: lower index first), in channel order."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise TypeError(f"ratio={ratio!r}: allowed is a number in [0, 1)")
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio={ratio!r}: allowed is a fraction in [0, 1) of output channels to remove")
    cuts = []
    for producer_name, norm_name, consumer_name in _channel_groups(model):
        producer = submodule(model, producer_name, (nn.Conv2d,))
        if norm_name is not None:
            submodule(model, norm_name, (nn.BatchNorm2d,))
        consumer = submodule(model, consumer_name, (nn.Conv2d, nn.Linear))
        channels = producer.weight.shape[0]
        n_keep = max(1, round((1 - ratio) * channels))
        norms = producer.weight.detach().flatten(1).norm(dim=1)
        keep = norms.argsort(descending=True, stable=True)[:n_keep].sort().values
        cuts.append(_ChannelCut(producer_name, norm_name, consumer_name, keep,
                                consumer.weight.shape[1] // channels))
    return cuts


def channel_masks(model: nn.Module, ratio: float, keep_fn=None) -> dict[str, torch.Tensor]:
    """Masks equivalent to ``channel_prune(model, ratio, keep_fn)``: the removed output channels of each
    producer conv AND the matching input channels / features of the consumer are masked. Masking the
    consumer's inputs is what makes it exact: a zeroed channel still leaves ReLU(BN(0)) or ReLU(bias)
    != 0, which the consumer now ignores, so BatchNorm and biases need no change. After
    ``apply_masks(copy, masks)`` the copy computes what the physical model computes (train or eval
    mode) and its nonzero weights in these layers are the physical model's weights."""
    masks: dict[str, torch.Tensor] = {}
    for cut in _cuts(model, ratio, keep_fn):
        producer, consumer = model.get_submodule(cut.producer), model.get_submodule(cut.consumer)
        rows = torch.zeros_like(producer.weight, dtype=torch.bool)
        rows[cut.keep] = True
        cols = torch.zeros_like(consumer.weight, dtype=torch.bool)
        cols[:, cut.input_index()] = True
        masks[cut.producer] = masks.get(cut.producer, True) & rows
        masks[cut.consumer] = masks.get(cut.consumer, True) & cols
    return masks


def _index_(module: nn.Module, name: str, dim: int, index: torch.Tensor) -> None:
    """Keep only ``index`` along ``dim`` of the parameter or buffer ``module.<name>`` (None: skip)."""
    old = getattr(module, name)
    if old is None:
        return
    new = old.detach().index_select(dim, index)
    setattr(module, name, nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new)


def channel_prune(model: nn.Module, ratio: float, keep_fn=None) -> nn.Module:
    """A physically smaller deep copy of ``model`` (which is left unchanged): in each producer conv
    keep the max(1, round((1 - ratio) * C)) output channels of largest L2 norm, together with the
    following BatchNorm's entries and the next layer's matching inputs, for each of the model's
    ``channel_groups``. LeNet-5: conv1 (-> conv2) and
    conv2 (-> fc1, whose input features come in 5x5 blocks per channel). ResNet-20: the inner
    channels of each basic block (conv1 outputs, bn1, conv2 inputs); the residual width is intact.
    Layer classes (quantized ones included) are kept; their size attributes are updated. ``keep_fn``
    (see ``_cuts``) chooses the kept channels instead, e.g. a student's ``channels_to_keep``."""
    cuts = _cuts(model, ratio, keep_fn)
    small = copy.deepcopy(model)
    for cut in cuts:
        producer = small.get_submodule(cut.producer)
        for name in ("weight", "bias"):
            _index_(producer, name, 0, cut.keep)
        producer.out_channels = len(cut.keep)
        if cut.norm is not None:
            norm = small.get_submodule(cut.norm)
            for name in ("weight", "bias", "running_mean", "running_var"):
                _index_(norm, name, 0, cut.keep)
            norm.num_features = len(cut.keep)
        consumer = small.get_submodule(cut.consumer)
        _index_(consumer, "weight", 1, cut.input_index())
        size = "in_channels" if isinstance(consumer, nn.Conv2d) else "in_features"
        setattr(consumer, size, consumer.weight.shape[1])
    return small


def _cuts(model: nn.Module, ratio: float, keep_fn=None) -> list[_ChannelCut]:
    """``_channel_cuts``, or with each producer's kept channels chosen by ``keep_fn(weight, ratio)``, a
    bool tensor of length C_out (True = kept)."""
    if keep_fn is None:
        return _channel_cuts(model, ratio)
    cuts = []
    for cut in _channel_cuts(model, ratio):  # checks the ratio and the architecture
        weight = model.get_submodule(cut.producer).weight.detach()
        keep = torch.as_tensor(keep_fn(weight.clone(), ratio))
        if keep.dtype != torch.bool or tuple(keep.shape) != (weight.shape[0],):
            name = getattr(keep_fn, "__name__", keep_fn)
            raise ValueError(f"keep_fn={name!r} returned {keep.dtype} of shape "
                             f"{tuple(keep.shape)} for {cut.producer}: allowed is a bool tensor of shape "
                             f"({weight.shape[0]},), True for each output channel kept")
        index = keep.nonzero().flatten().to(cut.keep.device)
        if not len(index):
            raise ValueError(f"keep_fn keeps no output channel of {cut.producer}: allowed is at least one")
        cuts.append(_ChannelCut(cut.producer, cut.norm, cut.consumer, index, cut.block))
    return cuts


def keeps_largest_channels(weight: torch.Tensor, keep, ratio: float) -> bool:
    """Whether ``keep`` (bool per output channel of a conv ``weight``) is channel pruning's choice at
    ``ratio``: exactly max(1, round((1 - ratio) C_out)) channels, none with a smaller L2 norm than a
    removed one (ties may go either way)."""
    keep = torch.as_tensor(keep)
    norms = weight.detach().flatten(1).norm(dim=1)
    if keep.dtype != torch.bool or keep.shape != norms.shape:
        return False
    n_keep = max(1, round((1 - ratio) * len(norms)))
    if int(keep.sum()) != n_keep:
        return False
    return n_keep == len(norms) or bool(norms[keep].min() >= norms[~keep].max())
