"""Cost of keeping pruned weights at zero while fine-tuning ResNet-20: a training step with
``KeepMasks.after_step`` after the optimizer step (what ``finetune_after_prune`` does) against the
same step without it.

    .venv/bin/python benchmarks/prune_overhead.py [--steps 20] [--warmup 3] [--batch 128] [--device cpu]

One process, two copies of the same 70%-pruned ResNet-20 and the same random batches (3x32x32,
channels_last); forward + backward + SGD step (momentum, weight decay). The two take turns step by
step, in alternating order, so a busy machine slows them alike. Printed: median ms/step of each,
the median of the per-pair ratios (target: overhead <= 5%), and the median time of ``after_step``
alone.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from labkit.models import resnet20
from labkit.prune import KeepMasks, prunable_layers, prune_by_percentage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    torch.manual_seed(0)
    base = resnet20()
    masks = {name: prune_by_percentage(layer, 70) for name, layer in prunable_layers(base)}
    batches = [(torch.randn(args.batch, 3, 32, 32, device=device).to(memory_format=torch.channels_last),
                torch.randint(0, 10, (args.batch,), device=device)) for _ in range(args.warmup + args.steps)]
    keep = KeepMasks(masks)
    runs = {}
    for name in ("without masks", "with KeepMasks"):
        model = copy.deepcopy(base).to(device, memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        runs[name] = (model, opt)

    def step(name: str, x, y) -> float:
        model, opt = runs[name]
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if name == "with KeepMasks":
            keep.after_step(model)
        sync()
        return time.perf_counter() - start

    def masks_alone() -> float:
        sync()
        start = time.perf_counter()
        keep.after_step(runs["with KeepMasks"][0])
        sync()
        return time.perf_counter() - start

    times = {name: [] for name in runs}
    mask_times = []
    for i, (x, y) in enumerate(batches):
        for name in list(runs)[:: 1 if i % 2 else -1]:  # A B, then B A: neither always goes first
            elapsed = step(name, x, y)
            if i >= args.warmup:
                times[name].append(elapsed)
        if i >= args.warmup:
            mask_times.append(masks_alone())

    kept_layers = prunable_layers(runs["with KeepMasks"][0])
    assert all(torch.all(layer.weight[~masks[name].to(device)] == 0) for name, layer in kept_layers)
    print(f"ResNet-20 fine-tuning step, 70% pruned, batch {args.batch}x3x32x32 channels_last, "
          f"device {device}, {torch.get_num_threads()} threads, median of {args.steps} steps after "
          f"{args.warmup} warm-up")
    plain, kept = (statistics.median(times[name]) for name in runs)
    ratio = statistics.median(k / p for p, k in zip(*times.values(), strict=True))  # pairs share the moment
    print(f"  without masks   {1e3 * plain:8.1f} ms/step")
    print(f"  with KeepMasks  {1e3 * kept:8.1f} ms/step")
    print(f"  ratio, median over the step pairs: x{ratio:.3f}, overhead {100 * (ratio - 1):+.1f}% "
          "(target <= 5%)")
    print(f"  KeepMasks.after_step alone {1e3 * statistics.median(mask_times):.3f} ms "
          f"({100 * statistics.median(mask_times) / plain:.2f}% of a step)")


if __name__ == "__main__":
    main()
