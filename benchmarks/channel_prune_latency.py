"""Does channel pruning make ResNet-20 faster? Physical vs masked 50% channel pruning on the CPU.

    .venv/bin/python benchmarks/channel_prune_latency.py [--ratio 0.5] [--batch 256] [--repeats 20]
                                                          [--warmup 2] [--threads N]

Three models in one process: the dense ResNet-20, the same with ``channel_pruning.channel_masks(net, ratio)``
applied (the removed inner channels of every block are zeros: same shapes), and
``channel_pruning.channel_prune(net, ratio)`` (the inner channels are gone: smaller tensors). Their latency is
``measure.latencies``: the median of ``repeats`` forward passes on one random 3x32x32 batch after
``warmup`` passes, in eval mode, the models taking turns so that load on the machine hits all alike.
Printed: each median, the speedups over dense (target: physical >= 1.5x, masked about 1.0x), the
MACs per image (``measure.count_macs``) and their ratio to dense, and that the masked and physical
models compute the same outputs. On a machine that other jobs share, ``--threads 1`` is steadier: with
all cores asked for, every forward pass waits for the slowest, busiest core.
"""

from __future__ import annotations

import argparse
import copy

import torch

from labkit import channel_pruning, measure, prune
from labkit.models import resnet20

INPUT = (3, 32, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    args = parser.parse_args()

    torch.manual_seed(0)
    dense = resnet20().eval()
    masked = copy.deepcopy(dense)
    prune.apply_masks(masked, channel_pruning.channel_masks(dense, args.ratio))
    physical = channel_pruning.channel_prune(dense, args.ratio)
    models = {"dense": dense, f"masked {args.ratio}": masked, f"physical {args.ratio}": physical}

    x = torch.randn(8, *INPUT)
    with torch.no_grad():
        gap = (masked(x) - physical(x)).abs().max().item()
    times = measure.latencies(models, INPUT, args.batch, args.repeats, args.warmup, args.threads)
    macs = {name: measure.count_macs(model, INPUT) for name, model in models.items()}

    setting = next(iter(times.values()))
    print(f"ResNet-20, inner block channels pruned at ratio {args.ratio}; batch {args.batch}, "
          f"{setting['threads']} threads, {setting['device']}, median of {args.repeats} runs after "
          f"{args.warmup} warm-up runs")
    print(f"{'model':<16} {'median ms':>10} {'p10-p90 ms':>15} {'speedup':>8} {'MACs/image':>12} "
          f"{'MAC ratio':>9}")
    for name, t in times.items():
        print(f"{name:<16} {1000 * t['median_s']:10.1f} {1000 * t['p10_s']:7.1f}-{1000 * t['p90_s']:<7.1f} "
              f"{times['dense']['median_s'] / t['median_s']:7.2f}x {macs[name]:12,d} "
              f"{macs[name] / macs['dense']:9.3f}")
    print(f"max |masked - physical| output difference: {gap:.2g}")


if __name__ == "__main__":
    main()
