import pytest
import torch

from labkit import profiles


def test_quick_profile_uses_the_embedded_balanced_subset():
    p = profiles.get_profile("quick")
    ds = profiles.lab_data(p, "resnet20")
    assert ds.name == "fashion-mnist-mini"
    assert len(ds.train_y) == p.train_subset and len(ds.test_y) == p.test_subset
    assert torch.bincount(ds.train_y).min() == p.train_subset // 10


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
