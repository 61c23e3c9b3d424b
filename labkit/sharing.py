"""Deep Compression's weight sharing and trained quantization (Han, Mao & Dally, ICLR 2016, section 3).

Per prunable layer, 1-D k-means on the NONZERO weights with k = 2^bits clusters (``kmeans_1d``: centroids
initialised linearly between min and max, the paper's choice, run to convergence with empty clusters
re-seeded); each weight becomes its centroid, the pruned zeros stay exactly zero and belong to no cluster
(``share_weights``). Trained quantization (``KeepShared``, ``finetune_centroids``) then moves each centroid
by the summed gradient of its weights. ``layer_bits`` reads the bits per layer (the paper's 8 conv / 5 FC
by default); ``huffman_of_sharing`` is notebook 00's Q1.3 experiment.

Written by hand because scikit-learn's KMeans has neither the linear initialisation nor a way to keep the
codebook trainable.
"""

from __future__ import annotations

import functools
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from labkit import train
from labkit.blanks import student_writes
from labkit.checks import check_int
from labkit.huffman import huffman_size
from labkit.prune import prunable_layers

PAPER_BITS = {"conv": 8, "fc": 5}  # weight bits per layer type, the paper's (AlexNet, LeNet)
MAX_BITS = 12  # up to 4096 clusters: alphabets (clusters + filler, gaps) fit the compressed file's u16 fields


def check_bits(value, name: str) -> int:
    """``value`` as a bit width: an int in 1..MAX_BITS, else a ValueError/TypeError naming ``name``."""
    return check_int(name, value, 1, MAX_BITS)


def layer_bits(model: nn.Module, bits, name: str = "bits", paper: Mapping[str, int] = PAPER_BITS
               ) -> dict[str, int]:
    """Bits per prunable layer from ``bits``: None -> the paper's per layer type (``paper``); an int
    -> every layer; ``{"conv": c, "fc": f}`` -> c for Conv2d, f for Linear layers; any other dict
    -> {layer name: int}, naming every prunable layer."""
    layers = prunable_layers(model)
    names = [n for n, _ in layers]
    if bits is None:
        bits = paper
    if isinstance(bits, Mapping) and set(bits) == {"conv", "fc"}:
        return {n: check_bits(bits[t], f"{name}[{t!r}]")
                for n, m in layers for t in ["conv" if isinstance(m, nn.Conv2d) else "fc"]}
    if isinstance(bits, Mapping):
        if set(bits) != set(names):
            raise ValueError(f"{name} has keys {sorted(bits)}: allowed are 'conv' and 'fc', or exactly the "
                             f"prunable layers {names}")
        return {n: check_bits(bits[n], f"{name}[{n!r}]") for n in names}
    bits = check_bits(bits, name)
    return dict.fromkeys(names, bits)


def check_finite(w: torch.Tensor, name: str) -> None:
    """A ValueError naming layer ``name`` if ``w`` holds NaN or Inf."""
    if not torch.isfinite(w).all():
        raise ValueError(f"layer {name} holds NaN/Inf weights: allowed are finite weights")


@dataclass
class SharedWeight:
    """One layer's shared weights: ``codebook`` (float32, one centroid per cluster) and ``labels``
    (int64, shaped like the weight: the cluster of each weight, -1 for a pruned one)."""

    codebook: torch.Tensor
    labels: torch.Tensor

    def weight(self) -> torch.Tensor:
        """codebook[labels], +0.0 where pruned (label -1 picks the 0.0 appended to the codebook)."""
        return torch.cat([self.codebook, self.codebook.new_zeros(1)])[self.labels]

    def to(self, device) -> SharedWeight:
        return SharedWeight(self.codebook.to(device), self.labels.to(device))


@student_writes("06_deep_compression")
def nearest_centroid(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """k-means' assignment step in 1-D: for each of ``values`` the index (int64) of the nearest of the
    ascending ``centroids``; a value exactly halfway between two goes to the lower one. Shaped like
    ``values``."""
    centroids = torch.as_tensor(centroids, dtype=values.dtype)
    if (centroids[1:] < centroids[:-1]).any():
        raise ValueError(f"centroids={centroids.tolist()}: allowed are ascending centroids")
    return torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)


def _labels_from(assign, v: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``assign(v, centroids)`` (a student's assignment step) as int64 labels in 0..k-1, shaped like v."""
    labels = torch.as_tensor(assign(v.clone(), centroids.clone()))
    if labels.shape != v.shape or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"assign={getattr(assign, '__name__', assign)!r} returned {labels.dtype} of shape "
                         f"{tuple(labels.shape)}: allowed is one integer cluster index per value, shape "
                         f"{tuple(v.shape)}")
    labels = labels.to(torch.int64)
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(centroids)):
        raise ValueError(f"assign returned cluster indices in {int(labels.min())}..{int(labels.max())}: "
                         f"allowed are 0..{len(centroids) - 1}")
    return labels


def kmeans_1d(values: torch.Tensor, k: int, max_iter: int = 1000, assign=None, tol: float = 1e-6
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on a 1-D tensor with k centroids initialised linearly between min and max (the
    paper's choice): ``(centroids, labels)``, centroids ascending as float32, labels int64 into them.
    Computed in float64 on the CPU, so the result is deterministic.

    Each iteration assigns every value to a centroid with ``assign(values, centroids) -> labels``
    (None: ``nearest_centroid``; notebook 06 passes the student's), re-seeds each cluster left empty
    at a value of largest error |value - its centroid| (as scikit-learn does), then moves every
    centroid to its cluster's mean. It stops when no centroid moved by more than ``tol`` times the
    value range (0: until none moves), or after ``max_iter`` iterations with a RuntimeWarning. Only
    with fewer distinct values than k do clusters stay empty; they are dropped (at most k returned)."""
    k = check_int("k", k, 1)
    max_iter = check_int("max_iter", max_iter, 1)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
        raise ValueError(f"tol={tol!r}: allowed is a number >= 0 (a fraction of the value range)")
    v = values.detach().flatten().to("cpu", torch.float64)
    if not torch.isfinite(v).all():
        raise ValueError(f"values hold {int((~torch.isfinite(v)).sum())} NaN/Inf: allowed are finite values")
    if v.numel() == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    centroids = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    step = nearest_centroid if assign is None else functools.partial(_labels_from, assign)
    reseed = True  # until a re-seeding fills no cluster (too few distinct values, or a wrong ``assign``)
    for _ in range(max_iter):
        labels = step(v, centroids)
        counts = torch.bincount(labels, minlength=k)
        reseeded = False
        if reseed and not counts.all():
            seeded, is_seed = _reseeded(v, centroids, labels, counts)
            if is_seed.any():
                seeded_labels = step(v, seeded)
                seeded_counts = torch.bincount(seeded_labels, minlength=k)
                reseeded = bool(seeded_counts[is_seed].all())  # each seed holds at least itself
            if reseeded:
                centroids, labels, counts = seeded, seeded_labels, seeded_counts
            reseed = reseeded
        means = torch.bincount(labels, weights=v, minlength=k) / counts.clamp_min(1)
        updated = torch.where(counts > 0, means, centroids)  # 1-D: the order is kept
        moved = float((updated - centroids).abs().max())
        centroids = updated
        if not reseeded and moved <= tol * float(v.max() - v.min()):
            break
    else:
        warnings.warn(f"kmeans_1d: {k} clusters of {v.numel()} values did not converge in "
                      f"max_iter={max_iter} iterations (tol={tol}): raise max_iter or tol", RuntimeWarning,
                      stacklevel=2)
    used = counts > 0
    return centroids[used].float(), (torch.cumsum(used, 0) - 1)[labels]


def _reseeded(v: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The centroids with those of the empty clusters (``counts`` 0) moved to the values of largest
    error, distinct and not yet centroids, sorted again; and which of them are such seeds (none if no
    value is left to move one to)."""
    error = (v - centroids[labels]).abs()
    order = error.argsort(descending=True, stable=True)
    empty = (counts == 0).nonzero().flatten()
    taken, seeds = set(centroids.tolist()), []
    for value, e in zip(v[order].tolist(), error[order].tolist(), strict=True):
        if len(seeds) == len(empty) or e == 0:
            break
        if value not in taken:
            taken.add(value)
            seeds.append(value)
    seeded = centroids.clone()
    seeds = torch.tensor(seeds, dtype=centroids.dtype)
    seeded[empty[:len(seeds)]] = seeds
    seeded = seeded.sort().values
    return seeded, torch.isin(seeded, seeds)


def share_layer(layer: nn.Module, bits: int, assign=None) -> SharedWeight:
    """Weight sharing of one layer in place: its nonzero weights become the nearest of at most 2^bits
    k-means centroids (``kmeans_1d``, with ``assign`` as its assignment step); zeros stay +0.0 and
    join no cluster."""
    w = layer.weight.detach()
    check_finite(w, type(layer).__name__)
    kept = (w != 0).cpu()
    shared = _labelled(kept, *kmeans_1d(w.cpu()[kept], 2 ** check_bits(bits, "bits"), assign=assign))
    with torch.no_grad():
        layer.weight.copy_(shared.weight())
    return shared


def share_weights(model: nn.Module, bits=None, assign=None) -> dict[str, SharedWeight]:
    """``share_layer`` on every prunable layer, ``bits`` as in ``layer_bits`` (default: the paper's 8
    for conv, 5 for FC), ``assign`` the k-means assignment step (None: ``nearest_centroid``).
    Returns {layer name: SharedWeight}."""
    per_layer = layer_bits(model, bits)
    return {name: share_layer(layer, per_layer[name], assign) for name, layer in prunable_layers(model)}


def shared_from_weights(model: nn.Module) -> dict[str, SharedWeight]:
    """The sharing a model's weights already have: per prunable layer, its distinct nonzero values
    (ascending) as the codebook; the ``masks_from_zeros`` of weight sharing."""
    shared = {}
    for name, layer in prunable_layers(model):
        w = layer.weight.detach().cpu()
        check_finite(w, name)
        kept = w != 0
        shared[name] = _labelled(kept, *torch.unique(w[kept], return_inverse=True))
    return shared


def _labelled(kept: torch.Tensor, codebook: torch.Tensor, cluster: torch.Tensor) -> SharedWeight:
    """The SharedWeight whose kept weights (in ``kept``'s order) are in clusters ``cluster``."""
    labels = torch.full(kept.shape, -1, dtype=torch.int64)
    labels[kept] = cluster
    return SharedWeight(codebook, labels)


class KeepShared(train.Callback):
    """Trained quantization (the paper's section 3.3) inside ``labkit.train.fit``: after every
    optimizer step each centroid moves by the SUM of its weights' updates and every weight is set
    back to its centroid; pruned weights are set back to +0.0.

    With the weights at their centroids before the step, the summed updates are exactly an SGD step
    (momentum and weight decay included) on the centroids with dL/dc_k = sum of dL/dw over cluster k,
    the paper's gradient. Each layer keeps at most its codebook's number of distinct nonzero values.
    The centroids live in ``self.shared`` (moved to the model's device); the model's weights are the
    result."""

    def __init__(self, shared: Mapping[str, SharedWeight]):
        self.shared = dict(shared)
        self._stored = None  # [(weight, SharedWeight on its device)]

    def _store(self, model: nn.Module) -> None:
        layers = dict(prunable_layers(model))
        unknown = [n for n in self.shared if n not in layers]
        if unknown:
            raise ValueError(f"shared has layers {unknown}: allowed are the prunable layers {list(layers)}")
        self.shared = {n: s.to(layers[n].weight.device) for n, s in self.shared.items()}
        self._stored = [(layers[n].weight, s) for n, s in self.shared.items()]

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        self._store(model)  # again each epoch: fit may have moved the model
        with torch.no_grad():
            for weight, s in self._stored:
                weight.copy_(s.weight())

    def after_step(self, model: nn.Module) -> None:
        if self._stored is None:  # a hand-written loop, without on_epoch_start
            self._store(model)
        with torch.no_grad():
            for weight, s in self._stored:
                kept = s.labels >= 0
                update = (weight - s.weight()) * kept  # no boolean indexing: no GPU sync
                s.codebook.index_add_(0, s.labels.clamp_min(0).flatten(), update.flatten())
                weight.copy_(s.weight())


def finetune_centroids(model: nn.Module, data, config, shared: Mapping[str, SharedWeight] | None = None,
                       **fit_kwargs) -> train.History:
    """Fine-tune the centroids of a shared ``model`` with ``labkit.train.fit`` and ``KeepShared``
    (``shared`` defaults to ``shared_from_weights(model)``). The centroid step is the summed gradient,
    so it is as many times larger as a cluster has weights: use a smaller lr than for the weights.
    Extra keyword arguments go to ``fit``. Returns fit's ``History``; the model ends in its last state."""
    shared = shared_from_weights(model) if shared is None else shared
    callbacks = (KeepShared(shared), *fit_kwargs.pop("callbacks", ()))
    return train.fit(model, data, config, callbacks=callbacks, **fit_kwargs)


def huffman_of_sharing(weight: torch.Tensor, shared: SharedWeight) -> dict[str, dict[str, int]]:
    """Q1.3's experiment on one layer: ``huffman_size`` of its kept weights (``shared.labels >= 0``)
    as the float values of ``weight`` (the layer before sharing) and as their cluster codes:
    ``{"float32 values": sizes, "codes": sizes}``."""
    kept = shared.labels >= 0
    if weight.shape != kept.shape:
        raise ValueError(f"weight has shape {tuple(weight.shape)}: allowed is the shape of shared.labels, "
                         f"{tuple(kept.shape)}")
    return {"float32 values": huffman_size(weight.detach().cpu()[kept]),
            "codes": huffman_size(shared.labels[kept])}
