"""Deep Compression (Han, Mao & Dally, ICLR 2016): prune, share weights, Huffman-code, in one file.

The pipeline on a trained model (``table_1`` runs it on the networks of the paper's Table 1):

1. ``prune_globally``: iterative pruning (``labkit.prune.AGPSchedule``, one global threshold, or each
   layer to its own rate) and fine-tuning; most weights become exact zeros;
2. ``share_weights``: per prunable layer, 1-D k-means on the NONZERO weights with k = 2^bits clusters,
   centroids initialised linearly between their min and max (the paper's choice), run to convergence
   with empty clusters re-seeded; each weight becomes its centroid, the pruned zeros stay exactly zero
   and belong to no cluster;
3. ``finetune_centroids``: trained quantization, the centroids learn from the summed gradients of
   their weights (``KeepShared``), the pruned zeros and the sharing stay as they are;
4. ``save_compressed``: the nonzeros of each layer as a sparse list with *relative* indices (the gap
   to the previous entry in ``index_bits`` bits; a filler zero when a gap is too long), the weights
   as codes into the layer's codebook, and both codes and gaps Huffman-coded (``labkit.huffman``:
   canonical, so only the code lengths are stored). Biases, BatchNorm and the shortcut convolutions stay dense
   float32. ``load_compressed`` builds the model back, bit for bit.

Everything here is written out by hand because no library ships Deep Compression end to end:
scikit-learn's KMeans has neither the linear initialisation nor a way to keep the codebook trainable,
and zlib cannot Huffman-code a given symbol stream (``labkit.huffman`` does). ``zlib.crc32`` checks
the file.

File format (little-endian, version 1)::

    magic b"LKDC" | version u8 | file length u32 | arch: u8 length + ASCII | num_classes u16
    | in_channels u16 | meta: u32 length + JSON | entries u16 | one record per state_dict entry, in
    order | crc32 u32
    record: kind u8 (0: float32 dense, 1: int64 dense, 2: shared sparse layer) | count u32 | ...
      dense: count values
      shared: bits u8 | index_bits u8 | clusters u16 | codebook clusters * f32 | sparse entries u32
              | Huffman block of the codes | Huffman block of the gaps
    Huffman block: alphabet u16 | code length per symbol u8 | payload bits u32 | payload bytes

The length and the crc32 (of everything before it) make a truncated or corrupted file refused
(``CompressedFileError``), never read as a silently different model.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import numbers
import struct
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from labkit import models, profiles, prune, train
from labkit.atomic import atomic_open
from labkit.blanks import student_writes
from labkit.checks import check_int, check_integers
from labkit.huffman import HuffmanError, huffman_decode, huffman_encode, huffman_size
from labkit.prune import prunable_layers

MAGIC = b"LKDC"
VERSION = 1
PAPER_BITS = {"conv": 8, "fc": 5}  # weight bits per layer type, the paper's (AlexNet, LeNet)
PAPER_INDEX_BITS = {"conv": 8, "fc": 5}  # relative-index bits, the paper's section 2
MAX_BITS = 12  # up to 4096 clusters: alphabets (clusters + filler, gaps) fit the u16 fields
_DENSE_F32, _DENSE_I64, _SHARED = 0, 1, 2


class CompressedFileError(ValueError):
    """A compressed file is truncated, corrupted, of another format or version, or does not fit the
    architecture it names."""


# ---------------------------------------------------------------------------------------------------
# Checks


def _check_bits(value, name: str) -> int:
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
        return {n: _check_bits(bits[t], f"{name}[{t!r}]")
                for n, m in layers for t in ["conv" if isinstance(m, nn.Conv2d) else "fc"]}
    if isinstance(bits, Mapping):
        if set(bits) != set(names):
            raise ValueError(f"{name} has keys {sorted(bits)}: allowed are 'conv' and 'fc', or exactly the "
                             f"prunable layers {names}")
        return {n: _check_bits(bits[n], f"{name}[{n!r}]") for n in names}
    bits = _check_bits(bits, name)
    return dict.fromkeys(names, bits)


# ---------------------------------------------------------------------------------------------------
# Relative indices


@student_writes("06_deep_compression")
def relative_indices(positions, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse positions (increasing ints >= 0) as gaps of at most 2^index_bits - 1 zeros:
    ``(gaps, filler)`` per stored entry, where gap = zeros skipped since the previous entry (the
    first counts from position 0). A longer gap stores filler zeros (``filler`` True), each after
    the longest gap, as in the paper's figure 2."""
    index_bits = _check_bits(index_bits, "index_bits")
    positions = check_integers("positions", positions)
    gap = np.diff(positions, prepend=-1) - 1
    if gap.size and gap.min() < 0:
        raise ValueError("positions: allowed are strictly increasing ints >= 0")
    span = 2**index_bits
    entries = gap // span + 1  # fillers, then the entry itself
    last = np.cumsum(entries) - 1
    gaps = np.full(int(entries.sum()), span - 1, dtype=np.int64)
    gaps[last] = gap % span
    filler = np.ones(gaps.size, dtype=bool)
    filler[last] = False
    return gaps, filler


def absolute_positions(gaps) -> np.ndarray:
    """Positions of the entries (fillers included) that ``relative_indices`` gave these gaps."""
    return np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1


# ---------------------------------------------------------------------------------------------------
# Weight sharing


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
    _check_finite(w, type(layer).__name__)
    kept = (w != 0).cpu()
    shared = _labelled(kept, *kmeans_1d(w.cpu()[kept], 2 ** _check_bits(bits, "bits"), assign=assign))
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
        _check_finite(w, name)
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


# ---------------------------------------------------------------------------------------------------
# Q1.3: Huffman coding before and after sharing


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


# ---------------------------------------------------------------------------------------------------
# The compressed file


@dataclass(frozen=True)
class CompressionReport:
    """Bytes of a compressed model per stage, as in the paper's tables 1-4. ``rows``: one per
    prunable layer, then ``dense rest`` (biases, BatchNorm, shortcuts: float32 in every stage) and
    ``header``; the stages are ``dense`` (float32), ``pruned`` (float32 values + index_bits
    relative indices, fillers included), ``shared`` (codes of ceil(log2(clusters + filler)) bits +
    float32 codebook + indices) and ``huffman`` (the bytes this layer really takes in the file)."""

    path: Path
    rows: list[dict]

    def total(self, stage: str) -> int:
        return sum(row[stage] for row in self.rows)

    @property
    def file_bytes(self) -> int:
        return self.total("huffman")

    @property
    def ratio(self) -> float:
        """Dense float32 bytes of all parameters and float buffers / bytes of the file."""
        return self.total("dense") / self.file_bytes

    def table(self) -> list[dict]:
        """The rows plus a total row, each with its compression ratio ``x`` (dense / huffman)."""
        counts = ("weights", "nonzeros", "fillers", *STAGES)
        total = {key: self.total(key) if key in counts else "" for key in self.rows[0]}
        rows = [*self.rows, {**total, "layer": "total"}]
        return [{**row, "x": row["dense"] / row["huffman"]} for row in rows]


STAGES = ("dense", "pruned", "shared", "huffman")


def _check_finite(w: torch.Tensor, name: str) -> None:
    if not torch.isfinite(w).all():
        raise ValueError(f"layer {name} holds NaN/Inf weights: allowed are finite weights")


def _huffman_block(symbols: np.ndarray) -> bytes:
    lengths, payload, n_bits = huffman_encode(symbols)
    return struct.pack("<H", len(lengths)) + bytes(lengths) + struct.pack("<I", n_bits) + payload


def _relative_indices_by(index_fn, positions: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``index_fn(positions, index_bits)`` (a student's ``relative_indices``) as checked arrays."""
    gaps, filler = index_fn(positions.copy(), index_bits)
    gaps, filler = np.asarray(gaps), np.asarray(filler)
    if (gaps.ndim != 1 or gaps.shape != filler.shape or gaps.dtype.kind not in "iu" or filler.dtype != bool
            or int((~filler).sum()) != positions.size):
        name = getattr(index_fn, "__name__", index_fn)
        raise ValueError(f"index_fn={name!r} returned gaps {gaps.dtype} {gaps.shape} and filler "
                         f"{filler.dtype} {filler.shape}: allowed are equally long 1-D int gaps and bool "
                         f"filler flags with one non-filler per position ({positions.size})")
    if gaps.size and (gaps.min() < 0 or gaps.max() >= 2**index_bits):
        raise ValueError(f"index_fn returned gaps in {int(gaps.min())}..{int(gaps.max())}: allowed are "
                         f"0..{2**index_bits - 1} ({index_bits} bits)")
    return gaps.astype(np.int64), filler


def _shared_record(s: SharedWeight, bits: int, index_bits: int, index_fn=None) -> tuple[bytes, dict]:
    labels = s.labels.flatten().numpy()
    positions = np.flatnonzero(labels >= 0)
    if index_fn is None:
        gaps, filler = relative_indices(positions, index_bits)
    else:
        gaps, filler = _relative_indices_by(index_fn, positions, index_bits)
    clusters = len(s.codebook)
    codes = np.full(gaps.size, clusters, dtype=np.int64)  # the filler zero: one symbol past the codebook
    codes[~filler] = labels[positions]
    record = (struct.pack("<BIBBH", _SHARED, labels.size, bits, index_bits, clusters)
              + s.codebook.numpy().astype("<f4").tobytes() + struct.pack("<I", gaps.size)
              + _huffman_block(codes) + _huffman_block(gaps))
    code_bits = max(1, (clusters + bool(filler.any()) - 1).bit_length())
    row = {"weights": labels.size, "nonzeros": positions.size, "fillers": int(filler.sum()),
           "clusters": clusters, "bits": bits, "index_bits": index_bits, "dense": 4 * labels.size,
           "pruned": math.ceil(gaps.size * (32 + index_bits) / 8),
           "shared": math.ceil(gaps.size * (code_bits + index_bits) / 8) + 4 * clusters,
           "huffman": len(record)}
    return record, row


def _dense_record(key: str, tensor: torch.Tensor) -> bytes:
    kinds = {torch.float32: (_DENSE_F32, "<f4"), torch.int64: (_DENSE_I64, "<i8")}
    if tensor.dtype not in kinds:
        raise ValueError(f"state_dict entry {key} is {tensor.dtype}: allowed are float32 and int64 tensors")
    kind, dtype = kinds[tensor.dtype]
    return struct.pack("<BI", kind, tensor.numel()) + tensor.detach().cpu().numpy().astype(dtype).tobytes()


def _short_text(text: str) -> bytes:
    raw = text.encode("ascii")
    return struct.pack("<B", len(raw)) + raw


def _meta_bytes(meta) -> bytes:
    if meta is None:
        return b""
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise TypeError(f"meta={meta!r:.80}: allowed are None or a dict with str keys (stored as JSON)")
    try:
        return json.dumps(dict(meta), separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta={meta!r:.80}: allowed are JSON values ({exc})") from exc


def save_compressed(model: nn.Module, path: str | Path, *, arch: str, bits=None, index_bits=None,
                    meta: Mapping | None = None, index_fn=None) -> CompressionReport:
    """Write ``model`` (already pruned and shared) to ONE file at ``path``, atomically (temp + rename),
    in the format of the module docstring, and return its ``CompressionReport``.

    Lossless: each prunable layer must hold at most 2^bits distinct nonzero values (``share_weights``
    makes them); ``load_compressed`` gives back exactly these weights (zeros as +0.0). ``bits`` and
    ``index_bits`` as in ``layer_bits`` (default: the paper's 8 / 5 bits for conv / FC, for both).
    ``arch`` names the architecture (``labkit.models.ARCHITECTURES``) whose state_dict ``model``
    has; ``meta``: a JSON-able dict stored with it (e.g. the accuracy). ``index_fn(positions,
    index_bits) -> (gaps, filler)`` encodes the sparse positions (None: ``relative_indices``; notebook
    06 passes the student's); the reader always decodes with ``absolute_positions``, so a wrong
    ``index_fn`` writes a file that does not read back as the model."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: allowed is an nn.Module")
    if arch not in models.ARCHITECTURES:
        raise ValueError(f"arch={arch!r}: allowed are {', '.join(models.ARCHITECTURES)}")
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path={path!r}: allowed is a str or pathlib.Path")
    per_bits = layer_bits(model, bits)
    per_index = layer_bits(model, index_bits, "index_bits", PAPER_INDEX_BITS)
    meta_bytes = _meta_bytes(meta)
    num_classes, in_channels = models.constructor_args(model)
    state = model.state_dict()
    expected = models.build(arch, num_classes=num_classes, in_channels=in_channels).state_dict()
    if [(k, v.shape) for k, v in state.items()] != [(k, v.shape) for k, v in expected.items()]:
        raise ValueError(f"model={type(model).__name__}: its state_dict is not that of arch={arch!r} "
                         f"(num_classes={num_classes}, in_channels={in_channels})")
    shared = shared_from_weights(model)
    for name, s in shared.items():
        if len(s.codebook) > 2 ** per_bits[name]:
            raise ValueError(f"layer {name} has {len(s.codebook)} distinct nonzero weights: allowed are at "
                             f"most 2^{per_bits[name]} (share_weights(model, bits) first)")
    records, rows = [], []
    rest = _row("dense rest")
    for key, tensor in state.items():
        name = key.removesuffix(".weight")
        if key.endswith(".weight") and name in shared:
            record, row = _shared_record(shared[name], per_bits[name], per_index[name], index_fn)
            rows.append(_row(name, **row))
        else:
            record = _dense_record(key, tensor)
            floats = 4 * tensor.numel() if tensor.is_floating_point() else 0
            rest.update({stage: rest[stage] + floats for stage in ("dense", "pruned", "shared")},
                        huffman=rest["huffman"] + len(record))
        records.append(record)
    head = (_short_text(arch) + struct.pack("<HHI", num_classes, in_channels, len(meta_bytes)) + meta_bytes
            + struct.pack("<H", len(records)))
    length = len(MAGIC) + 5 + len(head) + sum(map(len, records)) + 4
    blob = MAGIC + struct.pack("<BI", VERSION, length) + head + b"".join(records)
    blob += struct.pack("<I", zlib.crc32(blob))
    path = Path(path)
    with atomic_open(path, "wb") as f:
        f.write(blob)
    header = _row("header + crc32", huffman=len(MAGIC) + 5 + len(head) + 4)
    return CompressionReport(path, [*rows, rest, header])


def _row(layer: str, **values) -> dict:
    """A report row: the per-layer fields (0 or blank where they do not apply) and the stage bytes."""
    blank = {"weights": 0, "nonzeros": 0, "fillers": 0, "clusters": "", "bits": "", "index_bits": ""}
    return {"layer": layer, **blank, **dict.fromkeys(STAGES, 0), **values}


class _Reader:
    """Reads a compressed file's fields in order; running past the end is a CompressedFileError."""

    def __init__(self, blob: bytes, path: Path):
        self.blob, self.path, self.pos = blob, path, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.blob):
            raise CompressedFileError(f"{self.path}: {what} needs {n} bytes at offset {self.pos}, only "
                                      f"{len(self.blob) - self.pos} are left")
        self.pos += n
        return self.blob[self.pos - n:self.pos]

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def huffman_block(self, count: int, what: str) -> np.ndarray:
        (alphabet,) = self.unpack("<H", f"{what} alphabet")
        lengths = list(self.take(alphabet, f"{what} code lengths"))
        (n_bits,) = self.unpack("<I", f"{what} bit count")
        payload = self.take(math.ceil(n_bits / 8), f"{what} payload")
        try:
            return huffman_decode(lengths, payload, n_bits, count)
        except HuffmanError as error:
            raise CompressedFileError(f"{self.path}: {what}: {error}") from error


def _read_shared(reader: _Reader, count: int, key: str) -> np.ndarray:
    bits, index_bits, clusters = reader.unpack("<BBH", f"{key} header")
    codebook = np.frombuffer(reader.take(4 * clusters, f"{key} codebook"), "<f4")
    (entries,) = reader.unpack("<I", f"{key} entry count")
    codes = reader.huffman_block(entries, f"{key} codes")
    positions = absolute_positions(reader.huffman_block(entries, f"{key} gaps"))
    if clusters > 2**bits or codes.max(initial=0) > clusters or positions.max(initial=-1) >= count:
        raise CompressedFileError(f"{reader.path}: {key} decodes to codes or positions out of range")
    kept = codes < clusters
    flat = np.zeros(count, dtype=np.float32)
    flat[positions[kept]] = codebook[codes[kept]]
    return flat


def _read_record(reader: _Reader, key: str, target: torch.Tensor) -> torch.Tensor:
    kind, count = reader.unpack("<BI", f"{key} record header")
    if count != target.numel():
        raise CompressedFileError(f"{reader.path}: {key} holds {count} values, the architecture "
                                  f"{target.numel()}")
    if kind == _SHARED and target.dtype == torch.float32:
        values = _read_shared(reader, count, key)
    elif kind == _DENSE_F32 and target.dtype == torch.float32:
        values = np.frombuffer(reader.take(4 * count, key), "<f4")
    elif kind == _DENSE_I64 and target.dtype == torch.int64:
        values = np.frombuffer(reader.take(8 * count, key), "<i8")
    else:
        raise CompressedFileError(f"{reader.path}: {key} has record kind {kind}, not one for {target.dtype}")
    return torch.from_numpy(values.copy()).reshape(target.shape)


def load_compressed(path: str | Path) -> tuple[nn.Module, dict]:
    """Read a ``save_compressed`` file: ``(model, meta)``, the model built by
    ``labkit.models.build`` from the architecture in the header and holding exactly the weights
    written; meta is the stored dict plus ``arch``, ``num_classes``, ``in_channels``. A file that is
    truncated, corrupted, of another format or version raises ``CompressedFileError``."""
    path = Path(path)
    blob = path.read_bytes()
    if blob[:4] != MAGIC:
        raise CompressedFileError(f"{path} starts with {blob[:4]!r}, not {MAGIC!r}: not a labkit compressed "
                                  "model file")
    reader = _Reader(blob, path)
    reader.take(4, "magic")
    version, length = reader.unpack("<BI", "version and length")
    if version != VERSION:
        raise CompressedFileError(f"{path} has format version {version}: this labkit reads version {VERSION}")
    if length != len(blob):
        raise CompressedFileError(f"{path} has {len(blob)} bytes, its header says {length}: "
                                  + ("truncated" if len(blob) < length else "trailing bytes"))
    (crc,) = struct.unpack("<I", blob[-4:])
    if zlib.crc32(blob[:-4]) != crc:
        raise CompressedFileError(f"{path} is corrupted: crc32 {zlib.crc32(blob[:-4]):#010x} of the content, "
                                  f"{crc:#010x} stored")
    (n,) = reader.unpack("<B", "architecture name length")
    arch = reader.take(n, "architecture name").decode("ascii", errors="replace")
    num_classes, in_channels, meta_length = reader.unpack("<HHI", "constructor arguments")
    meta = json.loads(reader.take(meta_length, "meta")) if meta_length else {}
    if arch not in models.ARCHITECTURES:
        raise CompressedFileError(f"{path} names arch={arch!r}: this labkit builds {models.ARCHITECTURES}")
    model = models.build(arch, num_classes=num_classes, in_channels=in_channels)
    targets = model.state_dict()
    (entries,) = reader.unpack("<H", "entry count")
    if entries != len(targets):
        raise CompressedFileError(f"{path} holds {entries} tensors, {arch} has {len(targets)}")
    state = {key: _read_record(reader, key, target) for key, target in targets.items()}
    if reader.pos != len(blob) - 4:
        raise CompressedFileError(f"{path}: {len(blob) - 4 - reader.pos} unread bytes before the checksum")
    model.load_state_dict(state)
    return model, {**meta, "arch": arch, "num_classes": num_classes, "in_channels": in_channels}


# ---------------------------------------------------------------------------------------------------
# The pipeline


@dataclass(frozen=True)
class Pipeline:
    """Deep Compression's settings. Pruning: AGP (cubic ramp, masks kept) to ``q_final`` percent with
    ONE global threshold over ``prune_epochs`` epochs, then ``finetune_epochs`` epochs, best epoch
    kept; no augmentation (LeNet-5 is trained without). Trained quantization: ``bits`` (see
    ``layer_bits``), centroids fine-tuned ``centroid_epochs`` epochs at ``centroid_lr`` (the step
    is a SUM over a cluster, hence far below ``lr``). Storage: ``index_bits`` per relative index.
    ``layer_q`` ({layer: percent}, e.g. the paper's per-layer rates) prunes each layer to its own
    percentage on the same ramp instead of one global threshold.

    The defaults are the quick profile's for the course LeNet-5 (``Pipeline.for_profile``). It has 62k
    parameters, 7x fewer than the paper's, so a 256-entry float32 codebook per conv layer is a large
    fixed cost: at 94% pruned, conv / FC bits 5 / 4 fit the model better than the paper's 8 / 5
    (notebook 06 measures both)."""

    q_final: float = 94.0
    prune_epochs: int = 10
    finetune_epochs: int = 10
    lr: float = 0.01
    centroid_epochs: int = 10
    centroid_lr: float = 3e-4
    bits: int | Mapping[str, int] | None = field(default_factory=lambda: {"conv": 5, "fc": 4})
    index_bits: int | Mapping[str, int] | None = field(default_factory=lambda: {"conv": 4, "fc": 6})
    batch_size: int = 128
    layer_q: Mapping[str, float] | None = None

    @classmethod
    def for_profile(cls, profile, **overrides) -> Pipeline:
        """The defaults, with the fine-tuning epochs and batch size of the full ``profile``
        (``labkit.profiles.FULL``); then ``overrides``."""
        if profile.name == "full":
            overrides = {"finetune_epochs": profile.finetune_epochs, "batch_size": profile.batch_size,
                         **overrides}
        return replace(cls(), **overrides)

    @classmethod
    def for_paper(cls, arch: str, profile, **overrides) -> Pipeline:
        """The paper's settings for a network of its Table 1 (``PAPER_TABLE_1``): each layer pruned to
        the paper's rate (92% of the weights in all), 6 bits per weight for LeNet-300-100 and 8 conv /
        5 FC bits for LeNet-5, 5-bit relative indices; the epochs of ``for_profile``, shorter in the
        quick and tiny profiles (Caffe's LeNet-5 costs 7x the course LeNet-5's time per epoch); then
        ``overrides``."""
        if arch not in PAPER_TABLE_1:
            raise ValueError(f"arch={arch!r}: allowed are the networks of the paper's Table 1, "
                             f"{', '.join(PAPER_TABLE_1)}")
        row = PAPER_TABLE_1[arch]
        paper = {"q_final": row["pruned %"], "layer_q": row["layer pruned %"], "bits": row["bits"],
                 "index_bits": 5}
        if profile.name != "full":
            paper.update(prune_epochs=3, finetune_epochs=2, centroid_epochs=2)
        return cls.for_profile(profile, **{**paper, **overrides})

    def prune_config(self) -> train.TrainConfig:
        return train.TrainConfig(epochs=self.prune_epochs + self.finetune_epochs, lr=self.lr,
                                 batch_size=self.batch_size, augment=False, best_after=self.prune_epochs)

    def centroid_config(self) -> train.TrainConfig:
        return train.TrainConfig(epochs=self.centroid_epochs, lr=self.centroid_lr, batch_size=self.batch_size,
                                 augment=False)


def prune_globally(model: nn.Module, data, pipeline: Pipeline, progress: bool = True) -> train.History:
    """Stage 1: ``pipeline``'s iterative pruning of ``model`` in place; it ends in its best state."""
    per_layer = None if pipeline.layer_q is None else functools.partial(_prune_layers, pipeline)
    schedule = prune.AGPSchedule(pipeline.q_final, n_steps=pipeline.prune_epochs, global_=True,
                                 prune_net=per_layer)
    return train.fit(model, data, pipeline.prune_config(), callbacks=[schedule], progress=progress,
                     desc="prune", restore_best=True)


def _prune_layers(pipeline: Pipeline, net: nn.Module, q: float) -> None:
    """One step of the ramp to ``pipeline.q_final``, at q: each layer to its share of ``pipeline.layer_q``."""
    layers = dict(prunable_layers(net))
    if set(pipeline.layer_q) != set(layers):
        raise ValueError(f"layer_q has keys {sorted(pipeline.layer_q)}: allowed are exactly the prunable "
                         f"layers {list(layers)}")
    for name, layer in layers.items():
        prune.prune_by_percentage(layer, pipeline.layer_q[name] * q / pipeline.q_final)


def quantize_and_save(model: nn.Module, data, pipeline: Pipeline, path: str | Path, *, arch: str,
                      progress: bool = True, assign=None, index_fn=None
                      ) -> tuple[CompressionReport, dict[str, float]]:
    """Stages 2-4 on a pruned ``model``, in place: ``share_weights`` (k-means assignment step
    ``assign``), ``finetune_centroids``, ``save_compressed`` (position encoder ``index_fn``); None:
    labkit's. Returns the report and the test accuracy after sharing and after training the
    centroids (the model written)."""
    share_weights(model, pipeline.bits, assign)
    accuracy = {"shared": train.evaluate(model, data)[1]}
    finetune_centroids(model, data, pipeline.centroid_config(), progress=progress, desc="centroids")
    accuracy["trained"] = train.evaluate(model, data)[1]
    report = save_compressed(model, path, arch=arch, bits=pipeline.bits, index_bits=pipeline.index_bits,
                             meta={"accuracy": accuracy["trained"]}, index_fn=index_fn)
    return report, accuracy


def tradeoff(model: nn.Module, data, pipelines: Mapping[str, Pipeline], path: str | Path, *, arch: str,
             assign=None, index_fn=None, progress: bool = True) -> dict[str, tuple[float, float]]:
    """{label: (compression ratio, test accuracy)} of each pipeline run on a copy of the dense ``model``;
    pipelines that prune alike share one pruning run. ``path`` is overwritten by each file. ``assign``
    and ``index_fn`` as in ``quantize_and_save``; ``progress``: a bar over the pipelines."""
    pruned, points = {}, {}
    for label, pipeline in tqdm(pipelines.items(), desc="pipelines", disable=not progress, leave=False):
        key = (pipeline.q_final, pipeline.prune_epochs, pipeline.finetune_epochs, pipeline.lr,
               pipeline.batch_size)
        if key not in pruned:
            pruned[key] = copy.deepcopy(model)
            prune_globally(pruned[key], data, pipeline, progress=False)
        report, accuracy = quantize_and_save(copy.deepcopy(pruned[key]), data, pipeline, path, arch=arch,
                                             progress=False, assign=assign, index_fn=index_fn)
        points[label] = (report.ratio, accuracy["trained"])
    return points


# ---------------------------------------------------------------------------------------------------
# The paper's Table 1

QUICK_TRAIN_IMAGES = 3000  # the training images ``table_1`` uses outside the full profile

# Han, Mao & Dally 2016, Tables 1-3 (MNIST): weights, share pruned, bits per weight (conv / FC),
# bytes after compression, ratio, top-1 accuracy of the reference and of the compressed network
PAPER_TABLE_1 = {
    "lenet-300-100": {"weights": 267_000, "pruned %": 92.0, "bits": {"conv": 8, "fc": 6}, "bytes": 27_000,
                      "ratio": 40.0, "accuracy before": 0.9836, "accuracy after": 0.9842,
                      "layer pruned %": {"fc1": 92.0, "fc2": 91.0, "fc3": 74.0}},
    "lenet5-caffe": {"weights": 431_000, "pruned %": 92.0, "bits": {"conv": 8, "fc": 5}, "bytes": 44_000,
                     "ratio": 39.0, "accuracy before": 0.9920, "accuracy after": 0.9926,
                     "layer pruned %": {"conv1": 34.0, "conv2": 88.0, "fc1": 92.0, "fc2": 81.0}},
}


def _bits_label(model: nn.Module, bits) -> str:
    """Bits per weight as the paper's tables give them: "conv/FC", "-" for a type the model lacks."""
    per_layer = layer_bits(model, bits)
    convs = {n for n, m in prunable_layers(model) if isinstance(m, nn.Conv2d)}
    groups = [sorted({b for n, b in per_layer.items() if (n in convs) == conv}) for conv in (True, False)]
    return "/".join(",".join(map(str, g)) or "-" for g in groups)


def table_1_row(model: nn.Module, data, pipeline: Pipeline, path: str | Path, *, arch: str, assign=None,
                index_fn=None, progress: bool = False) -> dict:
    """Deep Compression of a copy of the dense ``model`` (``prune_globally``, then
    ``quantize_and_save`` to ``path``) as a row of the paper's Table 1: ``network``, ``weights`` (of
    the prunable layers), ``pruned %``, ``bits`` ("conv/FC"), ``bytes`` (the written file), ``ratio``,
    test ``accuracy before`` and ``after``. ``assign`` and ``index_fn`` as in ``quantize_and_save``."""
    compressed = copy.deepcopy(model)
    before = train.evaluate(model, data)[1]
    prune_globally(compressed, data, pipeline, progress=progress)
    pruned = prune.sparsity_report(compressed)["total"]
    report, accuracy = quantize_and_save(compressed, data, pipeline, path, arch=arch, progress=progress,
                                         assign=assign, index_fn=index_fn)
    return {"network": arch, "weights": report.total("weights"), "pruned %": 100 * pruned,
            "bits": _bits_label(model, pipeline.bits), "bytes": report.file_bytes, "ratio": report.ratio,
            "accuracy before": before, "accuracy after": accuracy["trained"]}


def table_1(data, dataset: str, profile, folder: str | Path, *, assign=None, index_fn=None) -> list[dict]:
    """The paper's Table 1 on ``data`` (test accuracy on its test split): for each of the paper's
    networks, pretrained on ``dataset`` as ``profile`` pretrains (``labkit.profiles.lab_model``), its
    ``table_1_row`` with ``Pipeline.for_paper(arch, profile)`` (the file: ``folder/<arch>.dc``), then the
    paper's row (``paper_row``, MNIST); each row starts with its ``data``. Outside the full profile the
    pipeline trains on at most ``QUICK_TRAIN_IMAGES`` of the training images (a class-balanced subset)."""
    train_data = data if profile.name == "full" else data.at_most(QUICK_TRAIN_IMAGES, None)
    rows = []
    for arch in PAPER_TABLE_1:
        dense, _ = profiles.lab_model(profile, arch, dataset)
        row = table_1_row(dense, train_data, Pipeline.for_paper(arch, profile), Path(folder) / f"{arch}.dc",
                          arch=arch, assign=assign, index_fn=index_fn)
        rows += [{"data": dataset, **row}, {"data": "mnist (paper)", **paper_row(arch)}]
    return rows


def paper_row(arch: str) -> dict:
    """The paper's own row for ``arch`` (MNIST), keyed like ``table_1_row``."""
    row = {k: v for k, v in PAPER_TABLE_1[arch].items() if k != "layer pruned %"}
    return {"network": arch, **row, "bits": _bits_label(models.build(arch), row["bits"])}
