import numpy as np
import pytest
import torch
import torchvision.transforms as T

from labkit import data


def test_mini_set_is_real_balanced_and_uint8():
    ds = data.load("fashion-mnist-mini")
    assert ds.train_x.shape == (10_000, 1, 28, 28) and ds.test_x.shape == (2_000, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert torch.bincount(ds.train_y).tolist() == [1000] * 10
    assert torch.bincount(ds.test_y).tolist() == [200] * 10
    assert 0.25 < ds.mean[0] < 0.32 and 0.3 < ds.std[0] < 0.4  # Fashion-MNIST's known statistics


def test_batches_are_normalized_channels_last_and_cover_the_split(tiny_data):
    xs, ys = zip(*tiny_data.batches("test", 16), strict=True)
    assert [len(y) for y in ys] == [16, 16, 16, 2]
    assert torch.equal(torch.cat(ys), tiny_data.test_y)
    x0 = xs[0]
    assert x0.dtype == torch.float32 and x0.is_contiguous(memory_format=torch.channels_last)
    expected = (tiny_data.test_x[:16].float() / 255 - 0.2) / 0.3
    torch.testing.assert_close(x0, expected)


def test_shuffle_is_a_seeded_permutation(tiny_data):
    def labels(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.cat([y for _, y in tiny_data.batches("train", 64, shuffle=True, generator=g)])

    a, b, c = labels(1), labels(1), labels(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a.sort().values, tiny_data.train_y.sort().values)


def test_random_crop_matches_torchvision_semantics():
    x = torch.randint(1, 256, (64, 1, 8, 8), dtype=torch.uint8)
    out = data.random_crop(x, 4, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):  # each crop is some 8x8 window of the zero-padded image
        windows = padded[i, 0].unfold(0, 8, 1).unfold(1, 8, 1).reshape(-1, 8, 8)
        assert (windows == out[i, 0]).all((1, 2)).any()
    # torchvision pads with 0 before Normalize and draws offsets in 0..2*padding: so do we
    tv = T.RandomCrop(8, padding=4)(x[0])
    assert tv.shape == out[0].shape
    zero_rows = [(o[0] == 0).all(1).any().item() for o in out]
    assert any(zero_rows) and not all(zero_rows)


def test_hflip_flips_about_half_and_only_left_right():
    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(200, 1, 1, 1)
    out = data.random_hflip(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).all((1, 2, 3))
    same = (out == x).all((1, 2, 3))
    assert torch.all(flipped ^ same)
    assert 70 < flipped.sum() < 130


def test_flip_only_where_the_dataset_allows_it(tiny_data, monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(data, "crop", lambda x, padding, dy, dx: x)  # isolate the flip
    for hflip in (False, True):
        ds = replace(tiny_data, hflip=hflip)
        x, _ = next(ds.batches("train", 200, augment=True, generator=torch.Generator().manual_seed(0)))
        changed = (x != ds.normalize(ds.train_x)).any((1, 2, 3))
        assert changed.any() == hflip


def test_subset_is_class_balanced_and_validated(tiny_data):
    sub = tiny_data.subset(50, 20, seed=3)
    assert torch.bincount(sub.train_y).tolist() == [5] * 10
    assert torch.bincount(sub.test_y).tolist() == [2] * 10
    assert sub.mean == tiny_data.mean
    with pytest.raises(ValueError, match="n_train"):
        tiny_data.subset(5)


def test_save_and_load_npz_round_trip(tmp_path, tiny_data):
    path = tmp_path / "mini.npz"
    data.save_npz(tiny_data, path)
    back = data.load_npz(path, "fashion-mnist-mini")
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(back, key), getattr(tiny_data, key))
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_unknown_dataset_and_bad_batch_size(tiny_data):
    with pytest.raises(ValueError, match="allowed are cifar10, mnist"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="batch_size"):
        next(tiny_data.batches("train", 0))
    with pytest.raises(ValueError, match="split"):
        tiny_data.split("val")


def test_missing_dataset_offline_names_paths_and_remedy(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def no_network(*args, **kwargs):
        if kwargs.get("download"):
            raise OSError("network is unreachable")
        raise RuntimeError("Dataset not found.")

    monkeypatch.setattr(tvd, "CIFAR10", no_network)
    with pytest.raises(data.DatasetNotFound) as err:
        data.load("cifar10", root=tmp_path)
    msg = str(err.value)
    assert "cifar10" in msg and str(tmp_path) in msg and "LABKIT_DATA" in msg and "fashion-mnist-mini" in msg


def test_offline_fashion_mnist_from_debian_and_a_damaged_copy_made_again(tmp_path, monkeypatch, capsys):
    import gzip

    src = tmp_path / "debian"
    src.mkdir()
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    for prefix, n in (("train", 20), ("t10k", 20)):
        with gzip.open(src / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(np.array([0x803, n, 28, 28], ">i4").tobytes() + images[:n].tobytes())
        with gzip.open(src / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(np.array([0x801, n], ">i4").tobytes() + labels[:n].tobytes())
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", src)
    ds = data.load("fashion-mnist", root=tmp_path / "cache", download=False)
    assert ds.train_x.shape == (20, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0].numpy(), images) and ds.train_y.tolist() == labels.tolist()
    extracted = tmp_path / "cache" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    extracted.write_bytes(extracted.read_bytes()[:1000])  # a copy cut short (a full disk, a kill)
    again = data.load("fashion-mnist", root=tmp_path / "cache", download=False)
    assert np.array_equal(again.train_x[:, 0].numpy(), images)  # decompressed again, not an error
    assert "is damaged" in capsys.readouterr().err
    flipped = bytearray(extracted.read_bytes())
    flipped[500] ^= 4  # one pixel, same size: the CRC-32 in the gzip's trailer tells
    extracted.write_bytes(flipped)
    again = data.load("fashion-mnist", root=tmp_path / "cache", download=False)
    assert np.array_equal(again.train_x[:, 0].numpy(), images) and "is damaged" in capsys.readouterr().err


def test_a_bit_flip_in_the_embedded_mini_set_is_refused_by_name_never_read_as_other_images(tmp_path):
    import random

    blob = data.MINI_PATH.read_bytes()
    whole = data.load_npz(data.MINI_PATH, "fashion-mnist-mini")
    rng = random.Random(0)
    refused = 0
    for _ in range(20):
        flipped = bytearray(blob)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        (tmp_path / "mini.npz").write_bytes(flipped)
        try:
            ds = data.load_npz(tmp_path / "mini.npz", "fashion-mnist-mini")
        except data.DamagedDataError as exc:
            assert "mini.npz is damaged" in str(exc)
            refused += 1
            continue
        # a flip in a field numpy does not read (a zip timestamp): the same arrays
        assert all(torch.equal(getattr(ds, k), getattr(whole, k)) for k in ("train_x", "train_y", "test_x"))
    assert refused >= 18
