"""What calling a student's function through the sandboxed worker costs, against calling it in-process:
Lab 1's gradient (a 3x5 problem: the call is all overhead), Lab 3's STE forward on a 64x64x3x3 weight and
Lab 2's mask step on a whole ResNet-20 (a module sent and its changed state copied back).

    .venv/bin/python benchmarks/student_call_overhead.py [--calls 2000]
                                                         [--out runs/student_call_overhead.json]

Each row: microseconds per call in-process and through the worker on new data each call (median of 5
rounds), their ratio, and through the worker on data it has seen (answered from the trusted side's memory).
Run it alone: both processes compete for the same cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from grading_cost import cpu_name

from labkit import autograde, models, prune, student_code
from labkit.atomic import atomic_open

SOURCE = '''import numpy as np
import torch

def gradient(X, y, W):
    return 2 * X.T @ (X @ W - y)

def ste_forward(w, bit, symmetric=False):
    alpha = (w.max() - w.min()).clamp_min(1e-12)
    return torch.round((w - w.min()) / alpha * (2**bit - 1)) / (2**bit - 1) * alpha + w.min()

def keep_pruned_at_zero(net, weight_mask):
    for name, layer in net.named_modules():
        if name in weight_mask:
            layer.weight.data.mul_(weight_mask[name])
'''
NAMES = ["gradient", "ste_forward", "keep_pruned_at_zero"]


def per_call_us(fn, arg_lists: list, repeat: bool = False) -> float:
    """Median over 5 rounds of the time per call over ``arg_lists`` (each round new data unless
    ``repeat``: calls on data seen before are answered from the trusted side's memory)."""
    rounds = []
    for r in range(5):
        calls = [args if repeat else _fresh(args, r) for args in arg_lists]
        start = time.perf_counter()
        for args in calls:
            fn(*args)
        rounds.append((time.perf_counter() - start) / len(calls) * 1e6)
    return statistics.median(rounds)


def _fresh(args: tuple, r: int) -> tuple:
    """``args`` with its first array or tensor scaled by a factor of round ``r`` (other data, same cost)."""
    first, *rest = args
    return (first * (1 + (r + 1) * 1e-6), *rest) if isinstance(first, (np.ndarray, torch.Tensor)) else args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("runs/student_call_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    local: dict = {}
    exec(SOURCE, local)
    net = models.resnet20()
    masks = {name: (layer.weight != 0).float() for name, layer in prune.prunable_layers(net)}
    n = args.calls
    cases = {"gradient (Lab 1, 3x5)": ("gradient", [(np.full((3, 5), i + 1.0), np.ones(3), np.zeros(5))
                                                    for i in range(n)]),
             "ste_forward (Lab 3, 64x64x3x3)": ("ste_forward", [(torch.randn(64, 64, 3, 3), 4)
                                                                for _ in range(n // 8)]),
             "mask step (Lab 2, ResNet-20)": ("keep_pruned_at_zero", [(net, masks)] * (n // 40))}
    with tempfile.TemporaryDirectory() as tmp:
        folder, channel_dir = Path(tmp) / "worker", Path(tmp) / "channel"
        folder.mkdir()
        channel_dir.mkdir()
        (folder / "cells.json").write_text(json.dumps([{"id": "b", "source": SOURCE, "names": NAMES}]))
        worker = autograde.start_worker(folder, channel_dir / "s.sock", 600, sandbox=True,
                                        memory=6 * 2**30)
        try:
            remote: dict = {}
            student_code.Connection(str(channel_dir / "s.sock")).run_cell(0, remote)
            rows = {}
            for label, (name, arg_lists) in cases.items():
                here = per_call_us(local[name], arg_lists)
                there = per_call_us(remote[name], arg_lists)
                again = per_call_us(remote[name], arg_lists[:50], repeat=True)
                rows[label] = {"in_process_us": round(here, 1), "worker_us": round(there, 1),
                               "ratio": round(there / here, 1), "same_data_again_us": round(again, 1)}
                print(f"{label}: {here:.1f} us in process, {there:.1f} us through the worker "
                      f"({there / here:.1f}x), {again:.1f} us for the same data again", flush=True)
        finally:
            worker.stop()
    result = {"cpu": cpu_name(), "torch": torch.__version__, "calls": rows}
    with atomic_open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
