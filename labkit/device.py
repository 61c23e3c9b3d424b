"""The device policy: where models train and evaluate, and in which precision.

``LABKIT_DEVICE``: ``auto`` (default: ``cuda`` when available, else ``cpu``), ``cpu``, ``cuda`` or
``cuda:N``. ``LABKIT_PRECISION`` picks the autocast dtype of training (evaluation is fp32 unless a
caller asks otherwise):

* ``fp32``: no autocast, and no TF32 either on CUDA, so results agree with the CPU's.
* ``auto`` (default): on CUDA, bf16 where the GPU computes it natively (compute capability >= 8.0),
  else fp16 with a gradient scaler; on the CPU fp32.
* ``bf16``: bf16 autocast where it is native (CUDA >= 8.0; a CPU with AMX-BF16 or AVX512-BF16),
  else fp32 with a warning.
* ``fp16``: fp16 autocast with a gradient scaler on CUDA; fp32 with a warning on the CPU.

``labkit run`` / ``labkit grade`` set both variables for the kernels (``--device``, ``--precision``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def get_device() -> torch.device:
    """The device ``LABKIT_DEVICE`` names (``auto``: cuda when available, else cpu)."""
    name = os.environ.get("LABKIT_DEVICE", "auto").strip() or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index is not None):
        raise ValueError(f"LABKIT_DEVICE={name!r}: allowed are auto, cpu, cuda, cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"LABKIT_DEVICE={name!r}: this machine has no CUDA GPU (allowed here: auto, cpu)")
    return dev


def precision() -> str:
    """The value of ``LABKIT_PRECISION`` (one of ``PRECISIONS``; default ``auto``)."""
    name = os.environ.get("LABKIT_PRECISION", "auto").strip() or "auto"
    if name not in PRECISIONS:
        raise ValueError(f"LABKIT_PRECISION={name!r}: allowed are {', '.join(PRECISIONS)}")
    return name


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16) and oneDNN can use it."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return torch.backends.mkldnn.is_available() and bool({"amx_bf16", "avx512_bf16"} & set(flags))


def native(dtype: torch.dtype, dev: torch.device) -> bool:
    """Whether ``dev`` runs autocast in ``dtype`` (bf16 or fp16) natively."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        major = torch.cuda.get_device_capability(dev)[0]
        return dtype == torch.float16 or (dtype == torch.bfloat16 and major >= 8)
    return dtype == torch.bfloat16 and cpu_has_native_bf16()


def autocast_dtype(dev: torch.device, name: str | None = None) -> torch.dtype | None:
    """The autocast dtype of training on ``dev`` under precision ``name`` (default: the policy's);
    None means fp32."""
    name = precision() if name is None else name
    if name not in PRECISIONS:
        raise ValueError(f"precision={name!r}: allowed are {', '.join(PRECISIONS)}")
    dev = torch.device(dev)
    if name == "fp32" or (name == "auto" and dev.type != "cuda"):
        return None
    if name == "auto":
        return torch.bfloat16 if native(torch.bfloat16, dev) else torch.float16
    if native(_DTYPES[name], dev):
        return _DTYPES[name]
    warnings.warn(f"LABKIT_PRECISION={name}: not native on {_describe_hardware(dev)}; using fp32",
                  stacklevel=2)
    return None


def autocast(dev: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` in ``dtype`` on ``dev``, or a no-op context for fp32 (None)."""
    dev = torch.device(dev)
    return torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def grad_scaler(dev: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 autocast (bf16 and fp32 need none)."""
    dev = torch.device(dev)
    return torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)


def configure(dev: torch.device) -> None:
    """Global switches for ``dev``: on CUDA cuDNN autotuning on, and TF32 only where the policy's
    precision is not fp32 (``LABKIT_PRECISION=fp32`` means fp32, evaluation included, so that results
    agree with the CPU's)."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        tf32 = autocast_dtype(dev) is not None
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32


def _describe_hardware(dev: torch.device) -> str:
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        return f"{dev} ({torch.cuda.get_device_name(dev)}, compute capability {major}.{minor})"
    return "this CPU" + ("" if cpu_has_native_bf16() else " (no AMX-BF16 / AVX512-BF16)")


def describe(dev: torch.device | None = None) -> str:
    """One line for a notebook to print: the device, its hardware and the training precision."""
    dev = get_device() if dev is None else torch.device(dev)
    dtype = autocast_dtype(dev)
    train = {None: "fp32", torch.bfloat16: "bf16 autocast",
             torch.float16: "fp16 autocast with a gradient scaler"}[dtype]
    return f"device {_describe_hardware(dev)}: training in {train}, evaluation in fp32"
