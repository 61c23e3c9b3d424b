"""ResNet-20's training and evaluation step on one-channel 28x28 images at batch 64, 128 and 256, in
channels_last (what ``labkit.train`` uses) against the default contiguous layout, in one process.

    .venv/bin/python benchmarks/step_layout.py [--steps 12]

Images/s per batch size and layout, and the channels_last / contiguous ratio. The quick profile's batch
(64) gives its fine-tuning runs twice the optimizer steps of batch 128; what that costs per image is what
this measures (docs/RESULTS.md, session 11). Run it alone.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from labkit import models


def images_per_s(batch: int, channels_last: bool, steps: int) -> tuple[float, float]:
    """(training, evaluation) images/s of ResNet-20 over ``steps`` steps after 2 warm-up steps."""
    torch.manual_seed(0)
    net = models.resnet20(in_channels=1)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    train = batch * steps / (time.perf_counter() - start)
    net.eval()
    with torch.no_grad():
        for i in range(steps + 2):
            if i == 2:
                start = time.perf_counter()
            net(x)
    return train, batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for batch in (64, 128, 256):
        plain = images_per_s(batch, False, args.steps)
        last = images_per_s(batch, True, args.steps)
        print(f"batch {batch:3d}: training {plain[0]:6.0f} -> {last[0]:6.0f} img/s "
              f"({last[0] / plain[0]:.2f}x), evaluation {plain[1]:6.0f} -> {last[1]:6.0f} img/s "
              f"({last[1] / plain[1]:.2f}x) (contiguous -> channels_last)")


if __name__ == "__main__":
    main()
