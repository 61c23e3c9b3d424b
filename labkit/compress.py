"""Deep Compression (Han, Mao & Dally, ICLR 2016) end to end: the pipeline and the paper's Table 1.

The pipeline on a trained model (``table_1`` runs it on the networks of the paper's Table 1):

1. ``prune_globally``: iterative pruning (``labkit.schedules.AGPSchedule``, one global threshold, or each
   layer to its own rate) and fine-tuning; most weights become exact zeros;
2. ``labkit.sharing.share_weights``: per prunable layer, 1-D k-means on the nonzero weights;
3. ``labkit.sharing.finetune_centroids``: trained quantization, the centroids learn from the summed
   gradients of their weights;
4. ``labkit.codec.save_compressed``: relative indices, codebook codes, Huffman coding, one file.

``quantize_and_save`` runs stages 2-4, ``tradeoff`` several pipelines on one model.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from labkit import models, profiles, prune, schedules, train
from labkit.codec import CompressionReport, save_compressed
from labkit.prune import prunable_layers
from labkit.sharing import finetune_centroids, layer_bits, share_weights


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
    schedule = schedules.AGPSchedule(pipeline.q_final, n_steps=pipeline.prune_epochs, global_=True,
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
