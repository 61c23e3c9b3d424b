"""Fake-quantization overhead per training step on ResNet-20: float vs STE 4-bit (asymmetric and
symmetric, ``resnet20(nbits=4)``) vs LSQ 4-bit weights (``lsq_quantize_model``).

    .venv/bin/python benchmarks/quant_overhead.py [--steps 10] [--warmup 3] [--batch 128] [--device cpu]

One process, one random batch in channels_last, forward + backward + SGD step. The models take
turns step by step, so a busy machine slows them alike; printed: median ms/step and the ratio to
float, and the time of the weight quantizers alone (forward + backward over all quantized
weights), which a busy machine blurs less. Then it counts host syncs
(``labkit.measure.count_host_syncs``) in one training step of each model, and on CUDA runs one
more step under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import statistics
from functools import partial

import torch
import torch.nn.functional as F
from _step_args import parse_step_args

from labkit.measure import count_host_syncs, time_alternating
from labkit.models import resnet20
from labkit.quant import STE, LSQConv2d, QConv2d, lsq_quantize_model


def quantize_weights(model) -> None:
    """The fake-quantization work of one training step alone: every quantized weight, forward and
    backward (what the full step adds on top of the float model)."""
    total = torch.zeros(())
    for m in model.modules():
        if isinstance(m, QConv2d):
            total = total + STE.apply(m.weight, m.nbits, m.symmetric).sum()
        elif isinstance(m, LSQConv2d):
            total = total + m.weight_quantizer(m.weight).sum()
    if total.requires_grad:
        total.backward()


def main() -> None:
    args, device = parse_step_args(__doc__, steps=10)

    torch.manual_seed(0)
    models = {
        "float": resnet20(),
        "STE 4-bit asymmetric": resnet20(nbits=4),
        "STE 4-bit symmetric": resnet20(nbits=4, symmetric=True),
        "LSQ 4-bit weights": lsq_quantize_model(resnet20(), 4),
    }
    x = torch.randn(args.batch, 3, 32, 32, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), device=device)
    steps = {}
    for name, model in models.items():
        model.to(device, memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        steps[name] = step

    quantizers = {f"{name} quantizers": partial(quantize_weights, model) for name, model in models.items()}
    times = time_alternating(steps | quantizers, args.steps, args.warmup, device)

    print(f"ResNet-20 training step, batch {args.batch}x3x32x32 channels_last, device {device}, "
          f"{torch.get_num_threads()} threads, median of {args.steps} steps after {args.warmup} warm-up")
    base = statistics.median(times["float"])
    for name in steps:
        median, quant = statistics.median(times[name]), statistics.median(times[f"{name} quantizers"])
        print(f"  {name:22s} {1e3 * median:8.1f} ms/step   x{median / base:.2f}   "
              f"weight quantizers alone {1e3 * quant:6.2f} ms")

    print("host syncs in one training step:")
    for name, step in steps.items():
        print(f"  {name:22s} {count_host_syncs(step)}")
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        for step in steps.values():
            step()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode(0)
        print("  one step each under torch.cuda.set_sync_debug_mode('error'): no sync raised")


if __name__ == "__main__":
    main()
