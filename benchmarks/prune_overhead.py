"""Cost of keeping pruned weights at zero while fine-tuning ResNet-20: a training step with
``MaskStep.after_step`` after the optimizer step (what ``finetune_after_prune`` does) against the
same step without it.

    .venv/bin/python benchmarks/prune_overhead.py [--steps 20] [--warmup 3] [--batch 128] [--device cpu]

One process, two copies of the same 70%-pruned ResNet-20 and the same random batch (3x32x32,
channels_last); forward + backward + SGD step (momentum, weight decay). The two take turns step by
step, in alternating order (``labkit.measure.time_alternating``), so a busy machine slows them
alike. Printed: median ms/step of each, the median of the per-pair ratios (target: overhead <= 5%),
and the median time of ``after_step`` alone.
"""

from __future__ import annotations

import copy
import statistics
from functools import partial

import torch
import torch.nn.functional as F
from _step_args import parse_step_args

from labkit.measure import time_alternating
from labkit.models import resnet20
from labkit.prune import MaskStep, prunable_layers, prune_by_percentage


def main() -> None:
    args, device = parse_step_args(__doc__, steps=20)

    torch.manual_seed(0)
    base = resnet20()
    masks = {name: prune_by_percentage(layer, 70) for name, layer in prunable_layers(base)}
    x = torch.randn(args.batch, 3, 32, 32, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), device=device)
    keep = MaskStep(masks)
    runs = {}
    for name in ("without masks", "with MaskStep"):
        model = copy.deepcopy(base).to(device, memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        runs[name] = (model, opt)

    def step(name: str) -> None:
        model, opt = runs[name]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if name == "with MaskStep":
            keep.after_step(model)

    times = time_alternating({name: partial(step, name) for name in runs} |
                             {"after_step": partial(keep.after_step, runs["with MaskStep"][0])},
                             args.steps, args.warmup, device)
    mask_times = times.pop("after_step")

    kept_layers = prunable_layers(runs["with MaskStep"][0])
    assert all(torch.all(layer.weight[~masks[name].to(device)] == 0) for name, layer in kept_layers)
    print(f"ResNet-20 fine-tuning step, 70% pruned, batch {args.batch}x3x32x32 channels_last, "
          f"device {device}, {torch.get_num_threads()} threads, median of {args.steps} steps after "
          f"{args.warmup} warm-up")
    plain, kept = (statistics.median(times[name]) for name in runs)
    ratio = statistics.median(k / p for p, k in zip(*times.values(), strict=True))  # pairs share the moment
    print(f"  without masks   {1e3 * plain:8.1f} ms/step")
    print(f"  with MaskStep  {1e3 * kept:8.1f} ms/step")
    print(f"  ratio, median over the step pairs: x{ratio:.3f}, overhead {100 * (ratio - 1):+.1f}% "
          "(target <= 5%)")
    print(f"  MaskStep.after_step alone {1e3 * statistics.median(mask_times):.3f} ms "
          f"({100 * statistics.median(mask_times) / plain:.2f}% of a step)")


if __name__ == "__main__":
    main()
