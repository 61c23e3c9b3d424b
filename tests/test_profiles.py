from dataclasses import replace

import pytest
import torch

from labkit import profiles


def test_quick_profile_uses_the_embedded_balanced_subset():
    p = profiles.get_profile("quick")
    ds = profiles.lab_data(p, "resnet20")
    assert ds.name == "fashion-mnist-mini"
    assert (len(ds.train_y), len(ds.test_y)) == p.subsets["resnet20"] == (1000, 500)
    assert torch.bincount(ds.train_y).tolist() == [100] * 10
    assert torch.bincount(ds.test_y).tolist() == [50] * 10


def test_quick_profile_gives_lenet5_half_the_mini_set_and_all_its_test_images():
    ds = profiles.lab_data(profiles.QUICK, "lenet5")
    assert (len(ds.train_y), len(ds.test_y)) == (5_000, 2_000)
    assert torch.bincount(ds.train_y).tolist() == [500] * 10


def test_full_profile_follows_the_handouts():
    p = profiles.get_profile("full")
    assert (p.finetune_epochs, p.prune_epochs, p.batch_size) == (20, 10, 256)
    assert profiles.dataset_name(p, "resnet20") == "cifar10" and profiles.dataset_name(p, "lenet5") == "mnist"
    assert profiles.dataset_name(p, "resnet20", "fashion-mnist") == "fashion-mnist"


def test_bad_profile_and_dataset():
    with pytest.raises(ValueError, match="PROFILE='fast'"):
        profiles.get_profile("fast")
    with pytest.raises(ValueError, match="DATASET='svhn'"):
        profiles.dataset_name(profiles.QUICK, "lenet5", "svhn")


def test_pretraining_on_an_online_data_set_uses_the_profile_and_checks_provenance(tmp_path, monkeypatch):
    import standins

    from labkit import checkpoints, pretrain

    standins.mnist(tmp_path / "data", n_train=1200, n_test=600)
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    monkeypatch.setattr(checkpoints, "CACHE_DIR", tmp_path / "checkpoints" / "cache")
    trained = []
    real_pretrain = pretrain.pretrain
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **kw: trained.append(kw) or real_pretrain(*a, **kw))

    model, meta = profiles.lab_model(profiles.TINY, "lenet5", "mnist")
    path = tmp_path / "checkpoints" / "cache" / "lenet5-mnist-tiny.pt"  # the name says how it was made
    assert path.is_file() and len(trained) == 1
    assert meta["subset"] == [1000, 500] and meta["recipe"]["epochs"] == profiles.TINY.pretrain_epochs
    profiles.lab_model(profiles.TINY, "lenet5", "mnist")
    assert len(trained) == 1  # same provenance: reused

    _, meta = profiles.lab_model(replace(profiles.TINY, pretrain_epochs=2), "lenet5", "mnist")
    assert len(trained) == 2 and meta["recipe"]["epochs"] == 2  # a different recipe: trained again

    path = tmp_path / "checkpoints" / "cache" / "lenet5-mnist-tiny.pt"
    path.write_bytes(path.read_bytes()[:5000])  # a truncated cache file: trained again, not an error
    profiles.lab_model(profiles.TINY, "lenet5", "mnist")
    assert len(trained) == 3


def test_provenance_mismatch_names_the_differences():
    from labkit import pretrain

    config = pretrain.recipe("lenet5", epochs=3)
    meta = {"recipe": {**config.to_dict(), "warmup_epochs": 0.0}, "subset": [None, None]}
    assert pretrain.provenance_mismatch(meta, config) is None  # a field TrainConfig dropped is ignored
    assert pretrain.provenance_mismatch(meta, config, (1000, 500)) == "subset=[None, None], not [1000, 500]"
    assert "epochs=3, not 4" in pretrain.provenance_mismatch(meta, pretrain.recipe("lenet5", epochs=4))
