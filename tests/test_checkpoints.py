import pytest
import torch

from labkit import checkpoints, models


def _save(tmp_path, net=None, **kw):
    net = net or models.lenet5()
    args = {"arch": "lenet5", "dataset": "fashion-mnist-mini", "accuracy": 0.875, "recipe": {"epochs": 3},
            **kw}
    return net, checkpoints.save_checkpoint(net, tmp_path / "m.pt", **args)


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    net, path = _save(tmp_path, note="hello")
    model, meta = checkpoints.load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), model.state_dict().values(),
                                                  strict=True))
    assert meta["arch"] == "lenet5" and meta["accuracy"] == 0.875 and meta["recipe"] == {"epochs": 3}
    assert meta["num_classes"] == 10 and meta["in_channels"] == 1 and meta["note"] == "hello"
    assert meta["torch_version"] == str(torch.__version__)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left


def test_load_model_builds_the_quantized_variant(tmp_path):
    _, path = _save(tmp_path, models.resnet20(in_channels=1), arch="resnet20")
    model, _ = checkpoints.load_model(path, nbits=4)
    assert model.nbits == 4 and model.head_conv.in_channels == 1


def test_mismatch_missing_and_corrupt_files(tmp_path):
    _, path = _save(tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="arch='lenet5', but arch='resnet20'"):
        checkpoints.load_checkpoint(path, arch="resnet20")
    with pytest.raises(checkpoints.CheckpointError, match="dataset="):
        checkpoints.load_checkpoint(path, dataset="cifar10")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoints.load_checkpoint(tmp_path / "nope.pt")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(checkpoints.CheckpointError, match="corrupt or truncated"):
        checkpoints.load_checkpoint(truncated)
    foreign = tmp_path / "f.pt"
    torch.save(models.lenet5().state_dict(), foreign)
    with pytest.raises(checkpoints.CheckpointError, match="not a labkit-checkpoint"):
        checkpoints.load_checkpoint(foreign)


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    net, path = _save(tmp_path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, models.lenet5())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_bad_arch_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="arch='vgg'"):
        checkpoints.save_checkpoint(models.lenet5(), tmp_path / "x.pt", arch="vgg", dataset="mnist")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
@pytest.mark.parametrize("dataset", ["fashion-mnist-mini", "fashion-mnist"])
def test_committed_pretrained_checkpoints_load_and_state_their_accuracy(arch, dataset):
    path = checkpoints.CHECKPOINT_DIR / f"{arch}-{dataset}.pt"
    model, meta = checkpoints.load_model(path, arch=arch, dataset=dataset)
    assert 0.8 < meta["accuracy"] <= 1 and meta["recipe"]["epochs"] > 0


def test_pretraining_is_reproducible_and_labkit_train_says_what_it_replaces(tmp_path, capsys):
    from labkit import cli
    from labkit.pretrain import pretrain

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    for out in (a, b):
        pretrain("lenet5", "fashion-mnist-mini", out=out, progress=False, epochs=1, device="cpu")
    state_a, state_b = checkpoints.load_checkpoint(a)[0], checkpoints.load_checkpoint(b)[0]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)  # seeded before the model is built
    assert cli.main(["train", "lenet5", "--dataset", "fashion-mnist-mini", "--epochs", "1", "--device", "cpu",
                     "--out", str(a)]) == 0
    assert f"replacing {a} (test accuracy" in capsys.readouterr().out


def test_every_bit_flip_in_the_weights_is_refused_by_name(tmp_path):
    net, path = _save(tmp_path)
    blob = torch.load(path, weights_only=True)
    weight = blob["state_dict"]["conv1.weight"]
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):  # a flipped bit anywhere in a weight: a different float, refused
        flipped = {k: v.clone() for k, v in blob["state_dict"].items()}
        bits = flipped["conv1.weight"].view(torch.int32)
        i = int(torch.randint(weight.numel(), (1,), generator=rng))
        bit = int(torch.randint(32, (1,), generator=rng))
        bits.view(-1)[i] ^= (1 << bit) if bit < 31 else -(2**31)
        damaged = tmp_path / "damaged.pt"
        torch.save({**blob, "state_dict": flipped}, damaged)
        with pytest.raises(checkpoints.CheckpointError, match="damaged.pt is damaged"):
            checkpoints.load_checkpoint(damaged)
    old = tmp_path / "old.pt"
    torch.save({**blob, "meta": {k: v for k, v in blob["meta"].items() if k != "checksum"}}, old)
    with pytest.raises(checkpoints.CheckpointError, match="has no checksum"):
        checkpoints.load_checkpoint(old)


def test_the_committed_checkpoints_carry_their_checksum():
    committed = sorted(checkpoints.CHECKPOINT_DIR.glob("*.pt"))
    assert committed
    for path in committed:
        checkpoints.load_checkpoint(path)  # raises unless the weights match the checksum saved with them
