import copy
import struct
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from labkit import codec, compress, measure, profiles, prune, sharing, train
from labkit.models import lenet5, lenet5_caffe, lenet_300_100, resnet20
from labkit.train import TrainConfig


def pruned_shared(make=lenet5, q: float = 80.0, bits=4) -> nn.Module:
    """``make()`` (seeded) pruned to q% with one global threshold and shared at ``bits``."""
    torch.manual_seed(0)
    model = make().eval()
    prune.global_prune_by_percentage(model, q)
    sharing.share_weights(model, bits)
    return model


def same_bits(a: nn.Module, b: nn.Module) -> bool:
    """Bit-for-bit equal state_dicts (float32 compared as raw integers, so -0.0 != +0.0)."""
    def raw(model):
        state = model.state_dict()
        return {k: t.view(torch.int32) if t.dtype == torch.float32 else t for k, t in state.items()}

    ra, rb = raw(a), raw(b)
    return ra.keys() == rb.keys() and all(torch.equal(ra[k], rb[k]) for k in ra)


def distinct_nonzeros(weight: torch.Tensor) -> int:
    return len(torch.unique(weight[weight != 0]))


# --- relative indices ------------------------------------------------------------------------------


def test_relative_indices_fillers_as_in_the_paper():
    gaps, filler = codec.relative_indices([20], 3)  # 20 zeros first: two fillers after 7 zeros each
    assert gaps.tolist() == [7, 7, 4] and filler.tolist() == [True, True, False]
    assert codec.absolute_positions(gaps).tolist() == [7, 15, 20]
    gaps, filler = codec.relative_indices([8, 9], 3)  # a gap of exactly 2^3 needs one filler
    assert gaps.tolist() == [7, 0, 0] and filler.tolist() == [True, False, False]
    gaps, filler = codec.relative_indices([0, 1, 7], 3)
    assert gaps.tolist() == [0, 0, 5] and not filler.any()
    gaps, filler = codec.relative_indices([], 4)
    assert gaps.size == 0 and filler.size == 0


@pytest.mark.parametrize("index_bits", [1, 2, 3, 5, 8])
def test_relative_indices_round_trip(index_bits):
    positions = np.flatnonzero(np.random.default_rng(index_bits).random(3000) < 0.03)
    gaps, filler = codec.relative_indices(positions, index_bits)
    assert gaps.max() <= 2**index_bits - 1
    assert np.array_equal(codec.absolute_positions(gaps)[~filler], positions)
    assert filler.any() == (np.diff(positions, prepend=-1).max() > 2**index_bits)


def test_relative_indices_errors():
    with pytest.raises(ValueError, match="increasing"):
        codec.relative_indices([3, 3], 4)
    with pytest.raises(ValueError, match="index_bits=0"):
        codec.relative_indices([1], 0)
    with pytest.raises(TypeError, match="index_bits=True"):
        codec.relative_indices([1], True)


# --- weight sharing --------------------------------------------------------------------------------


def test_kmeans_linear_init_finds_the_clusters():
    values = torch.tensor([-1.0, -1.1, 2.0, 2.1, 2.2])
    centroids, labels = sharing.kmeans_1d(values, 2)
    assert torch.allclose(centroids, torch.tensor([-1.05, 2.1]))
    assert labels.tolist() == [0, 0, 1, 1, 1]
    centroids, labels = sharing.kmeans_1d(values, 16)  # more clusters than values: one per value, the rest go
    assert torch.equal(centroids, values.sort().values)
    assert torch.equal(centroids[labels], values)
    assert sharing.kmeans_1d(torch.zeros(0), 4)[0].numel() == 0
    assert sharing.kmeans_1d(torch.full((7,), 0.5), 4)[0].tolist() == [0.5]


def lloyd(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: Lloyd's iteration in numpy from the linear initialisation, until no centroid moves."""
    centroids = np.linspace(values.min(), values.max(), k)
    while True:
        labels = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)  # ties: the lower one
        counts = np.bincount(labels, minlength=k)
        means = np.bincount(labels, weights=values, minlength=k) / np.maximum(counts, 1)
        means = np.where(counts > 0, means, centroids)
        if np.array_equal(means, centroids):
            return centroids[counts > 0], labels
        centroids = means


@pytest.mark.parametrize("shape, k", [((100, 300), 32), ((500, 784), 32), ((84, 120), 16)])
def test_kmeans_converges_to_the_reference_lloyd_on_dense_layers(shape, k):
    weight = nn.init.kaiming_uniform_(torch.empty(shape), generator=torch.Generator().manual_seed(0))
    values = weight.flatten().double().numpy()
    ref_centroids, ref_labels = lloyd(values, k)
    centroids, labels = sharing.kmeans_1d(weight, k)
    assert len(centroids) == len(ref_centroids) == min(k, values.size)
    assert np.abs(centroids.double().numpy() - ref_centroids).max() < 1e-6
    assert (labels.numpy() != ref_labels).mean() < 1e-3  # float32 centroids may tip a value at a boundary


def test_kmeans_iteration_cap_warns_and_tolerance_stops_early():
    weight = nn.init.kaiming_uniform_(torch.empty(100, 300), generator=torch.Generator().manual_seed(0))
    converged = sharing.kmeans_1d(weight, 32)
    with pytest.warns(RuntimeWarning, match="max_iter=100"):
        capped = sharing.kmeans_1d(weight, 32, max_iter=100)
    loose = sharing.kmeans_1d(weight, 32, tol=1e-2)

    def error(result):
        centroids, labels = result
        return float(((centroids[labels] - weight.flatten()) ** 2).sum())

    assert error(converged) < error(capped) and error(converged) < error(loose)
    for bad in ({"tol": -1e-3}, {"tol": float("nan")}, {"max_iter": 0}):
        with pytest.raises(ValueError, match="allowed is"):
            sharing.kmeans_1d(weight, 4, **bad)


@pytest.mark.parametrize("make, q, bits", [(lenet5, 90, 5), (lenet5, 60, {"conv": 8, "fc": 5}),
                                           (resnet20, 80, {"conv": 6, "fc": 4})])
def test_kmeans_uses_every_cluster_on_pruned_layers(make, q, bits):
    torch.manual_seed(0)
    model = make()
    prune.global_prune_by_percentage(model, q)
    per_layer = sharing.layer_bits(model, bits)
    for name, layer in prune.prunable_layers(model):
        w = layer.weight.detach()
        nonzeros = w[w != 0]
        centroids, labels = sharing.kmeans_1d(nonzeros, 2 ** per_layer[name])  # no warning: converged
        assert len(centroids) == min(2 ** per_layer[name], len(torch.unique(nonzeros))), name
        assert torch.bincount(labels).min() > 0, name
        # each value is at its nearest centroid
        assert torch.equal(sharing.nearest_centroid(nonzeros.double(), centroids.double()), labels), name


@pytest.mark.parametrize("bits", [1, 3, {"conv": 5, "fc": 2}])
def test_share_weights_keeps_pruned_zeros_and_at_most_2_to_the_bits_values(bits):
    torch.manual_seed(0)
    model = lenet5()
    prune.global_prune_by_percentage(model, 90)
    masks = prune.masks_from_zeros(model)
    shared = sharing.share_weights(model, bits)
    per_layer = sharing.layer_bits(model, bits)
    for name, layer in prune.prunable_layers(model):
        assert torch.equal(layer.weight != 0, masks[name])
        assert 1 < distinct_nonzeros(layer.weight) <= 2 ** per_layer[name]
        assert torch.equal(shared[name].weight(), layer.weight)
        assert torch.equal(shared[name].labels >= 0, masks[name])


def test_layer_bits_forms():
    model = lenet5()
    assert sharing.layer_bits(model, None) == {"conv1": 8, "conv2": 8, "fc1": 5, "fc2": 5, "fc3": 5}
    assert sharing.layer_bits(model, 3) == dict.fromkeys(["conv1", "conv2", "fc1", "fc2", "fc3"], 3)
    per_layer = {"conv1": 1, "conv2": 2, "fc1": 3, "fc2": 4, "fc3": 5}
    assert sharing.layer_bits(model, per_layer) == per_layer
    with pytest.raises(ValueError, match="prunable layers"):
        sharing.layer_bits(model, {"conv1": 3})
    with pytest.raises(ValueError, match="bits=13"):
        sharing.layer_bits(model, 13)
    with pytest.raises(TypeError, match=r"bits\['fc'\]"):
        sharing.layer_bits(model, {"conv": 3, "fc": "4"})


def test_centroid_update_is_the_summed_gradient():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, 0.0, 0.5, 0.12]]))
    shared = {"": sharing.share_layer(layer, 1)}  # clusters {0.1, 0.12} -> 0.11 and {0.5}; 0.0 is pruned
    model = nn.Sequential()
    model.add_module("0", layer)
    keep = sharing.KeepShared({"0": shared[""]})
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum().backward()  # dL/dw = x
    opt.step()
    keep.after_step(model)
    assert torch.allclose(layer.weight, torch.tensor([[0.11 - 0.5 * 5, 0.0, 0.5 - 0.5 * 3, 0.11 - 0.5 * 5]]))


def test_finetune_centroids_keeps_the_shared_structure(tiny_data):
    model = pruned_shared(lenet5, 85, bits={"conv": 3, "fc": 2})
    before = sharing.shared_from_weights(model)
    config = TrainConfig(epochs=1, lr=1e-3, batch_size=50, augment=False, amp=False)
    sharing.finetune_centroids(model, tiny_data, config, progress=False)
    after = sharing.shared_from_weights(model)
    changed = 0
    for name, layer in prune.prunable_layers(model):
        assert torch.equal(after[name].labels >= 0, before[name].labels >= 0)  # pruned zeros stay zero
        assert distinct_nonzeros(layer.weight) <= len(before[name].codebook)
        kept = before[name].labels >= 0  # same partition: one centroid per old cluster
        pairs = torch.unique(torch.stack([before[name].labels[kept], after[name].labels[kept]]), dim=1)
        assert pairs.shape[1] == len(before[name].codebook)
        changed += not torch.equal(after[name].codebook, before[name].codebook)
    assert changed == 5


# --- the compressed file ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch, make, shape", [("lenet5", lenet5, (2, 1, 28, 28)),
                                               ("resnet20", lambda: resnet20(num_classes=7), (2, 3, 32, 32))])
def test_compressed_file_round_trip_is_bit_exact(tmp_path, arch, make, shape):
    model = pruned_shared(make, 90, bits=5)
    if arch == "resnet20":
        for m in model.modules():  # non-trivial BatchNorm statistics and an int64 buffer
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.num_batches_tracked.fill_(17)
    report = codec.save_compressed(model, tmp_path / "m.dc", arch=arch, bits=5, index_bits=3,
                               meta={"accuracy": 0.9})
    loaded, meta = codec.load_compressed(tmp_path / "m.dc")
    assert same_bits(loaded, model)
    x = torch.randn(shape)
    assert torch.equal(loaded.eval()(x), model.eval()(x))
    assert meta == {"accuracy": 0.9, "arch": arch, "num_classes": 10 if arch == "lenet5" else 7,
                    "in_channels": shape[1]}
    assert report.file_bytes == (tmp_path / "m.dc").stat().st_size
    assert report.total("dense") == measure.model_bytes(model)
    assert report.ratio == report.total("dense") / report.file_bytes > 3
    assert report.total("dense") > report.total("pruned") > report.total("shared") > report.file_bytes
    rows = {row["layer"]: row for row in report.table()}
    assert rows["total"]["nonzeros"] == sum(int((layer.weight != 0).sum())
                                            for _, layer in prune.prunable_layers(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.dc"]  # no temp file left


def test_an_unpruned_unshared_layer_is_refused_and_a_dense_shared_one_round_trips(tmp_path):
    model = lenet5()
    with pytest.raises(ValueError, match="share_weights"):
        codec.save_compressed(model, tmp_path / "m.dc", arch="lenet5")
    sharing.share_weights(model, 3)  # no pruning at all: every weight is an entry, no fillers
    report = codec.save_compressed(model, tmp_path / "m.dc", arch="lenet5", bits=3)
    assert same_bits(codec.load_compressed(tmp_path / "m.dc")[0], model)
    assert all(row["fillers"] == 0 for row in report.rows)


def test_a_fully_pruned_layer_round_trips(tmp_path):
    model = lenet5()
    with torch.no_grad():
        model.fc3.weight.zero_()
    shared = sharing.share_weights(model, 2)
    assert shared["fc3"].codebook.numel() == 0 and not model.fc3.weight.any()
    report = codec.save_compressed(model, tmp_path / "m.dc", arch="lenet5", bits=2)
    assert report.table()[4]["nonzeros"] == 0
    assert same_bits(codec.load_compressed(tmp_path / "m.dc")[0], model)


@pytest.fixture
def lenet_file(tmp_path):
    path = tmp_path / "lenet.dc"
    codec.save_compressed(pruned_shared(lenet5, 90), path, arch="lenet5", bits=4)
    return path


def test_truncated_file_is_refused(lenet_file):
    blob = lenet_file.read_bytes()
    for cut in (3, 9, len(blob) // 2, len(blob) - 1):
        lenet_file.write_bytes(blob[:cut])
        with pytest.raises(codec.CompressedFileError, match="truncated|not a labkit|needs"):
            codec.load_compressed(lenet_file)


def test_corrupted_file_is_refused(lenet_file):
    blob = bytearray(lenet_file.read_bytes())
    for offset in (20, len(blob) // 2, len(blob) - 6):
        corrupt = blob.copy()
        corrupt[offset] ^= 0x10
        lenet_file.write_bytes(corrupt)
        with pytest.raises(codec.CompressedFileError, match="corrupted"):
            codec.load_compressed(lenet_file)
    lenet_file.write_bytes(blob + b"\x00")
    with pytest.raises(codec.CompressedFileError, match="trailing"):
        codec.load_compressed(lenet_file)


def test_wrong_magic_version_or_architecture_is_refused(lenet_file, tmp_path):
    blob = lenet_file.read_bytes()
    lenet_file.write_bytes(b"PK\x03\x04" + blob[4:])
    with pytest.raises(codec.CompressedFileError, match="not a labkit"):
        codec.load_compressed(lenet_file)
    lenet_file.write_bytes(b"")
    with pytest.raises(codec.CompressedFileError, match="not a labkit"):
        codec.load_compressed(lenet_file)

    def resealed(body: bytes) -> bytes:  # a consistent file (length, crc32) holding ``body``
        return body + struct.pack("<I", __import__("zlib").crc32(body))

    body = blob[:-4]
    lenet_file.write_bytes(resealed(body[:4] + b"\x02" + body[5:]))
    with pytest.raises(codec.CompressedFileError, match="version 2"):
        codec.load_compressed(lenet_file)
    lenet_file.write_bytes(resealed(body[:10] + b"lenet9" + body[16:]))
    with pytest.raises(codec.CompressedFileError, match="lenet9"):
        codec.load_compressed(lenet_file)
    with pytest.raises(FileNotFoundError):
        codec.load_compressed(tmp_path / "missing.dc")


def test_save_compressed_bad_arguments(tmp_path):
    model = pruned_shared(lenet5, 90, bits=4)
    path = tmp_path / "m.dc"
    with pytest.raises(ValueError, match="arch='lenet7'"):
        codec.save_compressed(model, path, arch="lenet7")
    with pytest.raises(ValueError, match="not that of arch='resnet20'"):
        codec.save_compressed(model, path, arch="resnet20")
    with pytest.raises(ValueError, match="at most 2\\^2"):
        codec.save_compressed(model, path, arch="lenet5", bits=2)
    with pytest.raises(ValueError, match="index_bits=0"):
        codec.save_compressed(model, path, arch="lenet5", index_bits=0)
    with pytest.raises(TypeError, match="bits=4.0"):
        codec.save_compressed(model, path, arch="lenet5", bits=4.0)
    with pytest.raises(TypeError, match="meta"):
        codec.save_compressed(model, path, arch="lenet5", meta={"f": object()})
    with pytest.raises(TypeError, match="meta"):
        codec.save_compressed(model, path, arch="lenet5", meta=[1])
    with pytest.raises(TypeError, match="model=str"):
        codec.save_compressed("lenet5", path, arch="lenet5")
    with pytest.raises(TypeError, match="path=3"):
        codec.save_compressed(model, 3, arch="lenet5")
    with torch.no_grad():
        model.fc3.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        codec.save_compressed(model, path, arch="lenet5")
    assert not path.exists()


# --- Q1.3 and the pipeline -----------------------------------------------------------------------


def test_huffman_of_sharing_compares_floats_and_codes():
    model = pruned_shared(make=lenet5, q=90, bits=4)
    torch.manual_seed(0)
    before = lenet5()  # the same seeded weights, before pruning and sharing
    sizes = sharing.huffman_of_sharing(before.fc1.weight, sharing.shared_from_weights(model)["fc1"])
    kept = int((model.fc1.weight != 0).sum())
    assert sizes["float32 values"]["values"] == sizes["codes"]["values"] == kept
    assert sizes["float32 values"]["distinct"] == kept and sizes["codes"]["distinct"] == 16
    assert sizes["float32 values"]["total"] > 4 * kept > 4 * sizes["codes"]["total"]
    with pytest.raises(ValueError, match="shape"):
        sharing.huffman_of_sharing(before.fc2.weight, sharing.shared_from_weights(model)["fc1"])


def test_tradeoff_runs_each_pipeline(tiny_data, tmp_path):
    pipeline = compress.Pipeline(q_final=80, prune_epochs=1, finetune_epochs=1, centroid_epochs=1,
                                 batch_size=50, bits=2)
    points = compress.tradeoff(lenet5(), tiny_data, {"2 bits": pipeline, "3 bits": replace(pipeline, bits=3)},
                        tmp_path / "m.dc", arch="lenet5")
    assert list(points) == ["2 bits", "3 bits"]
    assert points["2 bits"][0] > points["3 bits"][0] > 5
    assert all(0 <= accuracy <= 1 for _, accuracy in points.values())


# --- the student's building blocks drive the pipeline (notebook 06) ------------------------------------


def argmin_assign(values, centroids):  # notebook 06's solution of nearest_centroid
    return (values.unsqueeze(-1) - centroids.to(values.dtype)).abs().argmin(dim=-1)


def loop_relative_indices(positions, index_bits):  # notebook 06's solution of relative_indices
    span, gaps, filler, previous = 2**index_bits, [], [], -1
    for p in np.asarray(positions, dtype=np.int64).tolist():
        gap = p - previous - 1
        while gap >= span:
            gaps.append(span - 1)
            filler.append(True)
            gap -= span
        gaps.append(gap)
        filler.append(False)
        previous = p
    return np.array(gaps, dtype=np.int64), np.array(filler, dtype=bool)


def test_nearest_centroid_ties_go_to_the_lower_centroid_like_argmin():
    centroids = torch.tensor([0.0, 1.0, 2.0, 3.0])
    values = torch.tensor([[0.5, 1.5], [2.5, -7.0]])
    assert sharing.nearest_centroid(values, centroids).tolist() == [[0, 1], [2, 0]]
    v = torch.randn(500, dtype=torch.float64)
    c = torch.sort(torch.randn(7, dtype=torch.float64)).values
    assert torch.equal(sharing.nearest_centroid(v, c), argmin_assign(v, c))


def test_kmeans_with_a_given_assignment_step():
    values = torch.randn(400, generator=torch.Generator().manual_seed(3))
    ours, theirs = sharing.kmeans_1d(values, 8), sharing.kmeans_1d(values, 8, assign=argmin_assign)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    # a wrong step (the signed difference) sends every value to one cluster: re-seeding cannot help
    collapsed, _ = sharing.kmeans_1d(values, 8, assign=lambda v, c: (v.unsqueeze(-1) - c).argmin(dim=-1))
    assert len(collapsed) == 1
    with pytest.raises(ValueError, match="cluster indices"):
        sharing.kmeans_1d(values, 4, assign=lambda v, c: torch.full(v.shape, 9))
    with pytest.raises(ValueError, match="shape"):
        sharing.kmeans_1d(values, 4, assign=lambda v, c: torch.zeros(3, dtype=torch.int64))


def test_share_weights_with_a_given_assignment_step_changes_the_model():
    torch.manual_seed(0)
    model = lenet5()
    prune.global_prune_by_percentage(model, 90)
    ours, theirs, wrong = (copy.deepcopy(model) for _ in range(3))
    sharing.share_weights(ours, 3)
    sharing.share_weights(theirs, 3, assign=argmin_assign)
    assert same_bits(ours, theirs)
    sharing.share_weights(wrong, 3, assign=lambda v, c: torch.zeros(v.shape, dtype=torch.int64))
    assert all(distinct_nonzeros(layer.weight) == 1 for _, layer in prune.prunable_layers(wrong))


def test_save_compressed_with_a_given_index_encoder(tmp_path):
    model = pruned_shared(q=95, bits=3)
    ours = codec.save_compressed(model, tmp_path / "a.dc", arch="lenet5", bits=3, index_bits=3)
    theirs = codec.save_compressed(model, tmp_path / "b.dc", arch="lenet5", bits=3, index_bits=3,
                               index_fn=loop_relative_indices)
    assert (tmp_path / "a.dc").read_bytes() == (tmp_path / "b.dc").read_bytes()
    assert ours.rows == theirs.rows
    assert same_bits(codec.load_compressed(tmp_path / "b.dc")[0], model)

    def off_by_one(positions, index_bits):  # the distance to the previous position, not the zeros between
        gaps, filler = loop_relative_indices(positions, index_bits)
        return np.where(filler, gaps, np.minimum(gaps + 1, 2**index_bits - 1)), filler

    codec.save_compressed(model, tmp_path / "c.dc", arch="lenet5", bits=3, index_bits=3, index_fn=off_by_one)
    try:
        loaded, _ = codec.load_compressed(tmp_path / "c.dc")
    except codec.CompressedFileError:
        pass  # positions past the end of a layer
    else:
        assert not same_bits(loaded, model)
    with pytest.raises(ValueError, match="one non-filler per position"):
        codec.save_compressed(model, tmp_path / "d.dc", arch="lenet5", bits=3, index_bits=3,
                          index_fn=lambda p, b: (np.zeros(1, np.int64), np.zeros(1, bool)))
    with pytest.raises(ValueError, match="allowed are 0..7"):
        codec.save_compressed(model, tmp_path / "d.dc", arch="lenet5", bits=3, index_bits=3,
                          index_fn=lambda p, b: (np.full(len(p), 9), np.zeros(len(p), bool)))


def test_quantize_and_save_passes_the_building_blocks_on(tiny_data, tmp_path):
    calls = {"assign": 0, "index": 0}

    def assign(v, c):
        calls["assign"] += 1
        return argmin_assign(v, c)

    def index(p, b):
        calls["index"] += 1
        return loop_relative_indices(p, b)

    pipeline = compress.Pipeline(q_final=80, prune_epochs=1, finetune_epochs=1, centroid_epochs=1,
                                 batch_size=50, bits=2)
    model = lenet5()
    prune.global_prune_by_percentage(model, 80)
    report, _ = compress.quantize_and_save(model, tiny_data, pipeline, tmp_path / "m.dc", arch="lenet5",
                                    progress=False, assign=assign, index_fn=index)
    assert calls["assign"] >= 5 and calls["index"] == 5  # k-means iterations of 5 layers; 5 layers written
    assert same_bits(codec.load_compressed(report.path)[0], model)


# --- the paper's Table 1 ---------------------------------------------------------------------------


def test_pipeline_for_paper_has_the_papers_settings():
    quick, full = profiles.get_profile("quick"), profiles.get_profile("full")
    pipeline = compress.Pipeline.for_paper("lenet5-caffe", full)
    assert (pipeline.q_final, pipeline.bits, pipeline.index_bits) == (92.0, {"conv": 8, "fc": 5}, 5)
    assert pipeline.layer_q == {"conv1": 34.0, "conv2": 88.0, "fc1": 92.0, "fc2": 81.0}
    assert pipeline.finetune_epochs == full.finetune_epochs
    assert compress.Pipeline.for_paper("lenet-300-100", quick, centroid_epochs=7).centroid_epochs == 7
    with pytest.raises(ValueError, match="arch='lenet5'"):
        compress.Pipeline.for_paper("lenet5", quick)


def test_layer_q_prunes_each_layer_to_its_own_rate(tiny_data):
    torch.manual_seed(0)
    model = lenet_300_100()
    pipeline = compress.Pipeline(q_final=90, prune_epochs=2, finetune_epochs=1, batch_size=50,
                      layer_q={"fc1": 95.0, "fc2": 80.0, "fc3": 50.0})
    compress.prune_globally(model, tiny_data, pipeline, progress=False)
    sparsity = prune.sparsity_report(model)
    assert sparsity["fc1"] == pytest.approx(0.95, abs=0.002)
    assert sparsity["fc2"] == pytest.approx(0.80, abs=0.002)
    assert sparsity["fc3"] == pytest.approx(0.50, abs=0.01)
    with pytest.raises(ValueError, match="layer_q has keys"):
        compress.prune_globally(model, tiny_data, replace(pipeline, layer_q={"fc1": 90.0}), progress=False)


def test_table_1_row_compresses_a_copy_and_reports_the_file(tiny_data, tmp_path):
    torch.manual_seed(0)
    model = lenet5_caffe()
    before = copy.deepcopy(model)
    pipeline = compress.Pipeline.for_paper("lenet5-caffe", profiles.get_profile("tiny"), prune_epochs=1,
                                finetune_epochs=1, centroid_epochs=1, batch_size=50)
    row = compress.table_1_row(model, tiny_data, pipeline, tmp_path / "caffe.dc", arch="lenet5-caffe")
    assert same_bits(model, before)  # the dense model is left as it was
    assert row["bytes"] == (tmp_path / "caffe.dc").stat().st_size
    assert row["ratio"] == pytest.approx(4 * sum(p.numel() for p in model.parameters()) / row["bytes"])
    assert row["weights"] == 430_500 and row["pruned %"] == pytest.approx(91.6, abs=0.1)
    assert row["bits"] == "8/5" and compress.paper_row("lenet-300-100")["bits"] == "-/6"
    assert list(compress.paper_row("lenet5-caffe")) == list(row)
    loaded, _ = codec.load_compressed(tmp_path / "caffe.dc")
    assert abs(train.evaluate(loaded, tiny_data)[1] - row["accuracy after"]) < 1e-9
