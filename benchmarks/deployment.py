"""Compression you can time (notebook 07): int8 against fp32 on the CPU, CSR against dense by density.

    .venv/bin/python benchmarks/deployment.py [--repeats 30] [--threads N]

In one process, on the committed fashion-mnist-mini checkpoints (untrained weights would time the same):
- ResNet-20 and LeNet-5 in fp32 and on torch's int8 kernels (``kernels.torch_int8``, calibrated on 512
  training images) of each CPU engine (x86 = fbgemm, onednn), ``measure.latencies`` in alternation at batch
  1 and 32; accuracy of both on the mini test set. Target (issue 24): the int8 ResNet-20 at least 2x
  faster than fp32, accuracy within 0.5 points.
- LeNet-5's fc1 (120x400) and fc2 (84x120) magnitude-pruned to each density, multiplied by a batch as dense
  and as CSR (``kernels.csr_timings``); the crossover density below which CSR wins and the speedup at 90%
  sparsity.
The machine (``device.describe``) is printed first: numbers from different machines do not compare.
"""

from __future__ import annotations

import argparse

import torch

from labkit import checkpoints, data, kernels, measure, train
from labkit.device import describe

DENSITIES = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01]
ENGINES = [e for e in ("x86", "onednn") if e in torch.backends.quantized.supported_engines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    print(describe(cpu), f"| {torch.get_num_threads()} threads")
    ds = data.load("fashion-mnist-mini")
    shape = (ds.in_channels, ds.image_size, ds.image_size)
    print(f"{'network':<9} {'engine':>7} {'batch':>5} {'fp32 ms':>8} {'int8 ms':>8} {'speedup':>8} "
          f"{'fp32 acc':>9} {'int8 acc':>9}")
    nets = {}
    for arch in ("resnet20", "lenet5"):
        net = checkpoints.load_model(checkpoints.pretrained_path(arch, "fashion-mnist-mini"))[0]
        nets[arch] = net = net.to(cpu).eval()
        for engine in ENGINES:
            q_net = kernels.torch_int8(net, ds.normalize(ds.train_x[:512]), engine)
            acc = (train.evaluate(net, ds, device=cpu)[1], train.evaluate(q_net, ds, device=cpu)[1])
            for batch in (1, 32):
                t = measure.latencies({"fp32": net, "int8": q_net}, shape, batch, args.repeats, warmup=3)
                fp32, int8 = t["fp32"]["median_s"], t["int8"]["median_s"]
                print(f"{arch:<9} {engine:>7} {batch:5d} {1000 * fp32:8.2f} {1000 * int8:8.2f} "
                      f"{fp32 / int8:7.2f}x {100 * acc[0]:8.2f}% {100 * acc[1]:8.2f}%")
    print(f"\n{'layer':<6} {'batch':>5} {'crossover':>10} {'speedup at 90% sparsity':>24}   "
          "speedup by density")
    for name in ("fc1", "fc2"):
        for batch in (1, 64):
            rows = kernels.csr_timings(getattr(nets["lenet5"], name).weight, DENSITIES, batch, args.repeats)
            at_90 = next(r["speedup"] for r in rows if r["density"] == 0.1)
            cross = kernels.crossover(rows)
            cross = "-" if cross is None else f"{cross:.3f}"
            print(f"{name:<6} {batch:5d} {cross:>10} {at_90:23.2f}x   "
                  + " ".join(f"{r['density']:g}:{r['speedup']:.2f}" for r in rows))


if __name__ == "__main__":
    main()
