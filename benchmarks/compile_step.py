"""ResNet-20 on the CPU: eager against ``torch.compile`` (inductor), training step and evaluation, in one
process (issue 25: adopt what is faster on both AVX2 and AVX-512 machines, record what is not).

Same model, same random 28x28 one-channel batches, channels_last as ``labkit.train.fit`` uses, fp32, SGD.
Each variant: warm-up (compilation included, timed apart), then the best of ``--repeats`` timings of
``--steps`` steps; images/s and the ratio compiled / eager. The machine's CPU flags are printed, since the
answer may differ between an AVX2 and an AVX-512 machine.

    python benchmarks/compile_step.py [--steps 5] [--repeats 3] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from labkit import device as policy
from labkit import models


def vector_flags() -> list[str]:
    """The CPU's AVX / AMX flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        line = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted({f for f in line.split()[2:] if f.startswith(("avx", "amx"))})


def step_rate(net, opt, x, y, steps: int, repeats: int, train: bool) -> float:
    """Best images/s over ``repeats`` timings of ``steps`` training steps (or forward passes)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            if train:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()
            else:
                with torch.no_grad():
                    net(x)
        best = max(best, steps * len(y) / (time.perf_counter() - start))
    return best


def variant(compiled: bool, train: bool, x, y, steps: int, repeats: int) -> tuple[float, float]:
    """(images/s, warm-up seconds) of eager or compiled ResNet-20, training or evaluating."""
    torch.manual_seed(0)
    net = models.resnet20(in_channels=1).to(memory_format=torch.channels_last)
    net.train(train)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    model = torch.compile(net) if compiled else net
    start = time.perf_counter()
    step_rate(model, opt, x, y, 2, 1, train)  # warm-up: compilation happens here
    warm = time.perf_counter() - start
    return step_rate(model, opt, x, y, steps, repeats, train), warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{policy.describe(torch.device('cpu'))}; vector flags: {' '.join(vector_flags()) or '(not read)'}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 1, 28, 28, generator=g).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    for train in (True, False):
        eager, _ = variant(False, train, x, y, args.steps, args.repeats)
        compiled, warm = variant(True, train, x, y, args.steps, args.repeats)
        what = "training step" if train else "evaluation"
        print(f"{what:13s}  eager {eager:7.0f} img/s   compiled {compiled:7.0f} img/s   "
              f"compiled / eager {compiled / eager:.2f}x   (compilation and warm-up {warm:.0f} s)")


if __name__ == "__main__":
    main()
