"""ResNet-20 training throughput: labkit's loop against a handout-style loop, in one process.

Same model, same real images (the Fashion-MNIST mini set, 28x28), batch 256, SGD, a fixed slice of an
epoch. The baseline is the handout's pipeline: a torchvision-style Dataset returning PIL images,
per-sample RandomCrop(padding=4) + RandomHorizontalFlip + ToTensor + Normalize, and a DataLoader.
The machine's limit is measured too: sgemm GFLOP/s divided by the FLOPs of one training image
(3 x forward: forward, input gradient, weight gradient; 2 FLOPs per MAC). labkit's loop runs in fp32 and,
where the device computes bf16 natively (``labkit.device.native``), under bf16 autocast
(``LABKIT_PRECISION=bf16``); its evaluation speed is measured in both too, and in fp32 at its default
batch for the device (``train.EVAL_BATCH``) against batches of 1000 (the default before).

    python benchmarks/train_throughput.py [--batches 12] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torchprofile import profile_macs

from labkit import data, models, train
from labkit import device as policy


class HandoutDataset(torch.utils.data.Dataset):
    """What torchvision's FashionMNIST / CIFAR10 do per sample: a PIL image through the transforms."""

    def __init__(self, ds: data.Dataset):
        self.x, self.y = ds.train_x[:, 0].numpy(), ds.train_y
        self.transform = T.Compose([T.RandomCrop(28, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(ds.mean, ds.std)])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.x[i], mode="L")), self.y[i]


def handout_loop(ds, device, batches: int, batch_size: int) -> float:
    """Images/s of the handout's training loop over ``batches`` batches (after 2 warm-up batches)."""
    net = models.resnet20(in_channels=1).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(HandoutDataset(ds), batch_size=batch_size, shuffle=True)
    net.train()
    seen, start = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 2:
            _sync(device)
            start, seen = time.perf_counter(), 0
        if i == batches + 2:
            break
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - start)


def labkit_loop(ds, device, batches: int, batch_size: int, precision: str) -> tuple[float, float]:
    """Images/s of ``labkit.train.fit``'s training batches (its own timer) and of ``train.evaluate`` on
    the test split, both under ``LABKIT_PRECISION=precision``."""
    os.environ["LABKIT_PRECISION"] = precision
    config = train.TrainConfig(epochs=1, batch_size=batch_size, max_batches=2)
    train.fit(models.resnet20(in_channels=1), ds, config, device=device, progress=False)  # warm-up
    config = train.TrainConfig(epochs=1, batch_size=batch_size, max_batches=batches)
    net = models.resnet20(in_channels=1)
    history = train.fit(net, ds, config, device=device, progress=False)
    test = ds.to(device, split="test")
    train.evaluate(net, test, amp=True)  # warm-up
    _sync(device)
    start = time.perf_counter()
    train.evaluate(net, test, amp=True)
    _sync(device)
    return history.images_per_s[0], len(test.test_y) / (time.perf_counter() - start)


def eval_batch_rates(ds, device) -> dict[int, float]:
    """Images/s of ``train.evaluate`` (fp32) on the test split at the device's default batch and at 1000,
    each the best of 3 passes of a pretrained-shape ResNet-20 in channels_last (as ``fit`` leaves it)."""
    net = models.resnet20(in_channels=1).to(device, memory_format=torch.channels_last)
    test = ds.to(device, split="test")
    rates = {}
    for batch in (train.EVAL_BATCH.get(torch.device(device).type, train.EVAL_BATCH_OTHER), 1000):
        best = 0.0
        for _ in range(3):
            _sync(device)
            start = time.perf_counter()
            train.evaluate(net, test, batch_size=batch)
            _sync(device)
            best = max(best, len(test.test_y) / (time.perf_counter() - start))
        rates[batch] = best
    return rates


def sgemm_gflops(device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=str(policy.get_device()))
    args = parser.parse_args()
    ds = data.load("fashion-mnist-mini")
    print(f"{policy.describe(torch.device(args.device))}; torch threads {torch.get_num_threads()}, batch "
          f"{args.batch_size}, {args.batches} batches per loop, ResNet-20 on 1x28x28")
    base = handout_loop(ds, args.device, args.batches, args.batch_size)
    ours, evaluation = labkit_loop(ds, args.device, args.batches, args.batch_size, "fp32")
    macs = profile_macs(models.resnet20(in_channels=1).eval(), torch.zeros(1, 1, 28, 28))
    gflops = sgemm_gflops(args.device)
    limit = gflops * 1e9 / (6 * macs)
    print(f"handout loop (DataLoader + PIL transforms): {base:8.0f} img/s")
    print(f"labkit loop (tensors, batched augmentation): {ours:8.0f} img/s")
    print(f"ratio labkit / handout: {ours / base:.2f}x")
    print(f"labkit evaluation (fp32): {evaluation:8.0f} img/s")
    default, *_ = rates = eval_batch_rates(ds, args.device)
    print(f"evaluation batch {default} (the default here): {rates[default]:8.0f} img/s; batch 1000: "
          f"{rates[1000]:8.0f} img/s ({rates[default] / rates[1000]:.2f}x)")
    if policy.native(torch.bfloat16, args.device):
        bf16, bf16_evaluation = labkit_loop(ds, args.device, args.batches, args.batch_size, "bf16")
        print(f"labkit loop, bf16 autocast: {bf16:8.0f} img/s ({bf16 / ours:.2f}x fp32); evaluation "
              f"{bf16_evaluation:8.0f} img/s ({bf16_evaluation / evaluation:.2f}x fp32)")
    else:
        print(f"bf16: not native on {args.device} here (no AMX-BF16 / AVX512-BF16, or a GPU below compute "
              "capability 8.0): skipped")
    print(f"limit: sgemm {gflops:.0f} GFLOP/s / (6 x {macs / 1e6:.1f} MMAC per image) = {limit:.0f} img/s; "
          f"labkit reaches {100 * ours / limit:.0f}% of it")


if __name__ == "__main__":
    main()
