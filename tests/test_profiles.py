import pytest
import torch

from labkit import profiles


def test_quick_profile_uses_the_embedded_balanced_subset():
    p = profiles.get_profile("quick")
    ds = profiles.lab_data(p, "resnet20")
    assert ds.name == "fashion-mnist-mini"
    assert (len(ds.train_y), len(ds.test_y)) == p.subsets["resnet20"] == (3000, 1000)
    assert torch.bincount(ds.train_y).tolist() == [300] * 10


def test_quick_profile_gives_lenet5_the_whole_mini_set():
    ds = profiles.lab_data(profiles.QUICK, "lenet5")
    assert (len(ds.train_y), len(ds.test_y)) == (10_000, 2_000)


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
