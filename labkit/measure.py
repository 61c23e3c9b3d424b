"""What a model costs: parameters, nonzeros, MACs, bytes (per storage format, and on disk), latency.

Shapes: ``input_size`` is the shape of ONE example without the batch dimension, e.g. ``(3, 32, 32)``.

Storage formats of ``model_bytes``. "Layer weights" are the weights of Conv2d and Linear layers;
"the rest" is every other parameter (biases, BatchNorm scale/shift, LSQ steps) and every
floating-point buffer (BatchNorm running mean/var), always at 4 bytes an entry. Integer buffers
(``num_batches_tracked``) are training bookkeeping and not counted. Each layer weight's bits are
rounded up to whole bytes.

* ``dense-fp32``: every entry in 4 bytes; pruning and fake quantization save nothing.
* ``bitpacked``: a quantized layer's weights at b bits each plus the fp32 scales that decode them
  (STE: alpha and beta, or max|w| when symmetric; LSQ: its step, already a parameter); float
  layer weights in fp32.
* ``bitmask``: one occupancy bit per layer weight, plus the nonzero weights at their width
  (b bits when quantized, else 32) and the scales as above.
* ``csr``: each layer weight as a matrix (output channels x fan-in) in compressed sparse rows:
  nonzero values at their width, an int32 column index per nonzero, int32 row pointers
  (rows + 1), and the scales as above.

Nonzeros are those of the stored float weights (a weight that quantizes to 0 still counts), so the
sparse sizes are upper bounds.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torchprofile import profile_macs

from labkit.checks import check_int
from labkit.quant import LSQConv2d, LSQLinear, QConv2d, QLinear

FORMATS = ("dense-fp32", "bitpacked", "bitmask", "csr")


def _example_input(model: nn.Module, input_size, batch_size: int) -> torch.Tensor:
    """A random batch of ``batch_size`` examples of shape ``input_size``, where the model lives."""
    if not isinstance(input_size, (tuple, list, torch.Size)) or not input_size:
        raise TypeError(f"input_size={input_size!r}: allowed is a non-empty tuple of ints, one example's "
                        "shape without the batch dimension, e.g. (3, 32, 32)")
    for dim in input_size:
        check_int("input_size entry", dim, 1)
    p = next(model.parameters(), torch.empty(0))
    return torch.randn(batch_size, *input_size, device=p.device, dtype=p.dtype)


def _frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy to run: measuring never changes ``model`` (BatchNorm statistics, training
    flags, an LSQ quantizer's first-use initialisation)."""
    return copy.deepcopy(model).eval()


def count_params(model: nn.Module) -> int:
    """Entries of all parameters: weights, biases, BatchNorm scale/shift, LSQ steps (not buffers)."""
    return sum(p.numel() for p in model.parameters())


def count_nonzeros(model: nn.Module) -> int:
    """Entries != 0 among the parameters ``count_params`` counts (a pruned weight is a zero)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def count_macs(model: nn.Module, input_size) -> int:
    """Multiply-accumulates of one forward pass on one example, by torchprofile on an eval-mode copy.

    Counted: conv / linear / matmul MACs, plus torchprofile's one per output element of affine
    normalization (BatchNorm) and average pooling. Not counted: elementwise products, so a fake
    quantizer's weight arithmetic (which a deployed integer model does not do) adds nothing;
    ReLU, max-pooling and additions are free. Zero weights are counted: masking saves no MAC.
    """
    x = _example_input(model, input_size, 1)
    run = _frozen_copy(model)
    with torch.no_grad():
        run(x)  # a first call may initialise LSQ steps: trace a later one
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No handlers found")
        per_op = profile_macs(run, x, reduction=None)
    return sum(macs for node, macs in per_op.items() if node.operator not in ("aten::mul", "aten::mul_"))


def _weight_code(layer: nn.Module) -> tuple[int, int]:
    """(bits per weight, fp32 scales to store that are not parameters) of a Conv2d/Linear weight."""
    if isinstance(layer, (QConv2d, QLinear)) and layer.nbits is not None:
        return layer.nbits, 0 if layer.nbits == 0 else 1 if layer.symmetric else 2
    if isinstance(layer, (LSQConv2d, LSQLinear)):
        return layer.weight_quantizer.bits, 0
    return 32, 0


def _weight_bytes(layer: nn.Module, format: str) -> int:
    w = layer.weight
    bits, scales = _weight_code(layer)
    nnz = int(torch.count_nonzero(w))
    if format == "bitpacked":
        total = bits * w.numel()
    elif format == "bitmask":
        total = w.numel() + bits * nnz
    else:  # csr
        total = (bits + 32) * nnz + 32 * (w.shape[0] + 1)
    return math.ceil(total / 8) + 4 * scales


def model_bytes(model: nn.Module, format: str = "dense-fp32") -> int:
    """Bytes to store ``model`` in ``format`` (one of ``FORMATS``; see the module docstring)."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: allowed are {', '.join(FORMATS)}")
    total = 0
    for m in model.modules():
        own = [*m.parameters(recurse=False), *(b for b in m.buffers(recurse=False) if b.is_floating_point())]
        if format != "dense-fp32" and isinstance(m, (nn.Conv2d, nn.Linear)):
            own = [t for t in own if t is not m.weight]
            total += _weight_bytes(m, format)
        total += 4 * sum(t.numel() for t in own)
    return total


def compressed_bytes(model: nn.Module) -> tuple[int, str]:
    """``(bytes, format)``: the smallest ``model_bytes`` over ``FORMATS`` (dense-fp32 wins ties)."""
    sizes = {fmt: model_bytes(model, fmt) for fmt in FORMATS}
    best = min(FORMATS, key=sizes.get)  # min keeps the first of equals
    return sizes[best], best


def size_on_disk(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` written to a temporary file (float weights as
    stored, integer buffers, pickle overhead): what a checkpoint really takes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "state_dict.pt")
        torch.save(model.state_dict(), path)
        return os.path.getsize(path)


def time_alternating(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 0,
                     device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Wall times in seconds of each callable of ``{name: fn}``, ``repeats`` timed rounds after
    ``warmup`` untimed ones. Each round calls every fn once, in reversed order every other round, so
    neither always goes first and a change of machine load hits them alike; on a CUDA ``device`` the
    GPU is synchronised around each call."""
    check_int("repeats", repeats, 1)
    check_int("warmup", warmup, 0)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + repeats):
        for name in names[:: -1 if i % 2 else 1]:
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def latencies(models: Mapping[str, nn.Module], input_size, batch_size: int = 1, repeats: int = 50,
              warmup: int = 5, threads: int | None = None) -> dict[str, dict]:
    """``latency`` of several models ``{name: model}``, measured in alternation: each round runs
    every model once, so a change in machine load during the measurement hits all of them alike.
    Returns ``{name: latency dict}``, all on the same random batch (float32, or the first model's
    dtype and device)."""
    check_int("batch_size", batch_size, 1)  # repeats and warmup: time_alternating checks them
    if threads is not None:
        check_int("threads", threads, 1)
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models={type(models).__name__}: allowed is a non-empty dict {{name: nn.Module}}")
    x = _example_input(next(iter(models.values())), input_size, batch_size)
    runs = {name: _frozen_copy(model) for name, model in models.items()}
    old_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or old_threads)
        used_threads = torch.get_num_threads()
        with torch.inference_mode():
            times = time_alternating({name: partial(run, x) for name, run in runs.items()}, repeats, warmup,
                                     x.device)
    finally:
        torch.set_num_threads(old_threads)
    result = {}
    for name, t in times.items():
        p10, median, p90 = np.percentile(t, [10, 50, 90])
        result[name] = {"median_s": float(median), "p10_s": float(p10), "p90_s": float(p90),
                        "batch_size": batch_size, "threads": used_threads, "device": str(x.device)}
    return result


def latency(model: nn.Module, input_size, batch_size: int = 1, repeats: int = 50, warmup: int = 5,
            threads: int | None = None) -> dict:
    """Wall time of one forward pass on a random batch, in eval mode under ``torch.inference_mode``.

    Returns ``{"median_s", "p10_s", "p90_s", "batch_size", "threads", "device"}``: the median and
    10th / 90th percentiles over ``repeats`` timed runs after ``warmup`` untimed ones (CUDA is
    synchronised around each run). ``threads`` sets torch's CPU thread count for the measurement
    (None: leave it) and is restored afterwards. It runs on an eval-mode copy: ``model`` is unchanged.
    """
    return latencies({"model": model}, input_size, batch_size, repeats, warmup, threads)["model"]


def _check_accuracy(accuracy) -> None:
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, numbers.Real)):
        raise TypeError(f"accuracy={accuracy!r}: allowed are None or a number")


def _static_row(model: nn.Module, input_size) -> dict:
    """``summary_row`` without latency and accuracy: the counts and sizes, all deterministic."""
    compressed, best = compressed_bytes(model)
    return {
        "params": count_params(model),
        "nonzeros": count_nonzeros(model),
        "macs": count_macs(model, input_size),
        "bytes_dense": model_bytes(model),
        "bytes_compressed": compressed,
        "compressed_format": best,
        "bytes_on_disk": size_on_disk(model),
    }


def summary_row(model: nn.Module, input_size, accuracy=None, *, batch_size: int = 1, repeats: int = 50,
                threads: int | None = None) -> dict:
    """One row of the notebooks' comparison table.

    Keys: ``params``, ``nonzeros``, ``macs`` (per example), ``bytes_dense`` (dense-fp32),
    ``bytes_compressed`` and ``compressed_format`` (the smallest of ``FORMATS``, dense on ties),
    ``bytes_on_disk`` (``size_on_disk``), ``latency_s`` (median, see ``latency``) and ``accuracy``
    (passed through as given).
    """
    _check_accuracy(accuracy)
    return {**_static_row(model, input_size),
            "latency_s": latency(model, input_size, batch_size, repeats, threads=threads)["median_s"],
            "accuracy": accuracy}


def summary_table(models: Mapping[str, nn.Module], input_size, accuracies: Mapping | None = None, *,
                  batch_size: int = 1, repeats: int = 50, threads: int | None = None) -> list[dict]:
    """``summary_row`` of each model in ``{name: model}``, as rows that start with ``"model": name``;
    the latencies are measured in alternation (``latencies``), so they compare fairly.
    ``accuracies`` ({name: accuracy}) may leave models out (accuracy None)."""
    accuracies = accuracies or {}
    for accuracy in accuracies.values():
        _check_accuracy(accuracy)
    times = latencies(models, input_size, batch_size, repeats, threads=threads)
    return [{"model": name, **_static_row(model, input_size), "latency_s": times[name]["median_s"],
             "accuracy": accuracies.get(name)} for name, model in models.items()]


_HOST_READS = (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
               torch.ops.aten.masked_select.default)


class _HostReadCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        bool_index = func is torch.ops.aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1])
        self.count += func in _HOST_READS or bool_index
        return func(*args, **(kwargs or {}))


def count_host_syncs(fn, *args, **kwargs) -> int:
    """How many times ``fn(*args, **kwargs)`` reads tensor values on the host, each a GPU stall:
    ``.item()``, ``bool(t)`` / ``if t:``, ``int(t)``, ``nonzero``, boolean-mask indexing. Copies to
    the CPU are not seen; on CUDA, ``torch.cuda.set_sync_debug_mode`` catches those too."""
    with _HostReadCounter() as counter:
        fn(*args, **kwargs)
    return counter.count
