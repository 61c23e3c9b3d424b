"""The command line shared by the per-training-step benchmarks (prune_overhead, quant_overhead)."""

from __future__ import annotations

import argparse

import torch


def parse_step_args(doc: str, steps: int) -> tuple[argparse.Namespace, torch.device]:
    """``(args, device)`` from ``--steps`` (default ``steps``), ``--warmup``, ``--batch`` and ``--device``
    (default: CUDA if available); the script's docstring ``doc`` gives the description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    return args, torch.device(args.device)
