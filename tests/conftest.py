import pytest
import torch

from labkit.data import Dataset


@pytest.fixture
def tiny_data() -> Dataset:
    """A 10-class, 1-channel, 28x28 dataset of random uint8 images whose label is readable from the
    image (class c brightens row 2c + 4), so a small model can learn it in a few steps."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        y = torch.arange(n) % 10
        x = torch.randint(0, 60, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
        x[torch.arange(n), 0, 2 * y + 4, 4:24] = 255
        return x, y

    train_x, train_y = make(200)
    test_x, test_y = make(50)
    return Dataset("fashion-mnist-mini", train_x, train_y, test_x, test_y, (0.2,), (0.3,), hflip=True)
