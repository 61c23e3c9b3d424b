"""The kit on a GPU, in one run: environment, host syncs, training throughput, CPU-vs-GPU agreement, the
quick notebooks with their scores and the CUDA tests; everything goes into one JSON file.

Parts, in order (each records its seconds):

1. ``environment``: torch, CUDA, the GPU and its compute capability, native bf16 on the GPU and the
   CPU, the device policy (``labkit.device.describe``).
2. ``host_syncs``: host reads per training step and per evaluation batch, as the difference between
   runs of different lengths divided by the difference of their steps (``labkit.measure.count_host_syncs``
   everywhere; on CUDA also ``torch.cuda.set_sync_debug_mode``, which sees copies to the host too).
3. ``throughput``: ``train.fit`` images/s for ResNet-20 float, STE 4-bit, LSQ 4-bit and with 70% masks
   (batch 256, CIFAR-10-shaped 3x32x32 random images) and LeNet-5 (1x28x28), under the policy's precision.
4. ``agreement`` (CUDA): the committed quick checkpoints' test accuracies and predictions on the CPU
   (fp32) against the GPU (fp32 and the training precision).
5. ``notebooks`` (CUDA): ``labkit run --profile quick --device cuda`` of every notebook, with the scores.
6. ``cuda_tests``: ``pytest tests/test_cuda.py`` (they skip without a GPU).

On a machine without CUDA it says so, runs parts 1-3 and 6 (small sizes) and exits 0.

    python benchmarks/gpu_check.py [--out runs/gpu_check.json] [--skip notebooks]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from labkit import HOME, checkpoints, data, models, prune, quant, train
from labkit import device as policy
from labkit.measure import count_host_syncs

PARTS = ("environment", "host_syncs", "throughput", "agreement", "notebooks", "cuda_tests")


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.machine())


def environment() -> dict:
    cuda = torch.cuda.is_available()
    info = {"torch": torch.__version__, "python": platform.python_version(), "cuda_available": cuda,
            "cuda": torch.version.cuda, "cpu": _cpu_name(),
            "cpu_native_bf16": policy.cpu_has_native_bf16(), "threads": torch.get_num_threads(),
            "policy": policy.describe()}
    if cuda:
        dev = torch.device("cuda")
        info.update(gpu=torch.cuda.get_device_name(dev),
                    capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
                    gpu_native_bf16=policy.native(torch.bfloat16, dev),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1))
    return info


def _random_data(shape, n_train: int, n_test: int) -> data.Dataset:
    """Random uint8 images of ``shape`` with random labels: for speed and sync counts only."""
    g = torch.Generator().manual_seed(0)

    def images(n):
        return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)

    def labels(n):
        return torch.randint(0, 10, (n,), generator=g)

    return data.Dataset("cifar10", images(n_train), labels(n_train), images(n_test), labels(n_test),
                        (0.5,) * shape[0], (0.25,) * shape[0])


def _cuda_syncs(fn) -> int:
    """Synchronizing CUDA calls ``fn()`` makes, as ``torch.cuda.set_sync_debug_mode("warn")`` reports them."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def host_syncs(dev: torch.device) -> dict:
    ds = _random_data((3, 32, 32), 2048, 1024).to(dev)
    model = models.resnet20().to(dev)

    def fit(steps):
        config = train.TrainConfig(epochs=1, batch_size=64, max_batches=steps)
        return lambda: train.fit(model, ds, config, device=dev, progress=False)

    def evaluate(batches):
        return lambda: train.evaluate(model, ds, batch_size=1024 // batches)

    fit(2)()  # warm-up: cuDNN autotuning, allocator
    result = {}
    for name, make, (a, b) in (("per_training_step", fit, (2, 6)), ("per_eval_batch", evaluate, (1, 8))):
        reads = [count_host_syncs(make(n)) for n in (a, b)]
        result[f"host_reads_{name}"] = (reads[1] - reads[0]) / (b - a)
        if dev.type == "cuda":
            syncs = [_cuda_syncs(make(n)) for n in (a, b)]
            result[f"cuda_syncs_{name}"] = (syncs[1] - syncs[0]) / (b - a)
            result[f"cuda_syncs_{name}_runs"] = {a: syncs[0], b: syncs[1]}
    return result


def _masked_resnet20() -> tuple:
    net = models.resnet20()
    return net, [prune.MaskStep(prune.global_prune_by_percentage(net, 70))]


def _variants() -> dict:
    """name -> (factory of (model, callbacks), one input's shape)."""
    return {
        "resnet20_float": (lambda: (models.resnet20(), []), (3, 32, 32)),
        "resnet20_ste_4bit": (lambda: (models.resnet20(nbits=4), []), (3, 32, 32)),
        "resnet20_lsq_4bit": (lambda: (quant.lsq_quantize_model(models.resnet20(), 4), []), (3, 32, 32)),
        "resnet20_masked_70": (_masked_resnet20, (3, 32, 32)),
        "lenet5": (lambda: (models.lenet5(), []), (1, 28, 28)),
    }


def throughput(dev: torch.device, batches: int) -> dict:
    result = {"batch_size": 256, "batches": batches, "precision": policy.describe(dev)}
    for name, (make, shape) in _variants().items():
        ds = _random_data(shape, 256 * batches, 256).to(dev)
        for n in (2, batches):  # the first fit warms up (cuDNN autotuning, allocator)
            config = train.TrainConfig(epochs=1, batch_size=256, max_batches=n, augment=True)
            model, callbacks = make()
            history = train.fit(model, ds, config, callbacks=callbacks, device=dev, progress=False)
        result[name] = round(history.images_per_s[0])
    return result


def agreement() -> dict:
    """Committed quick checkpoints: accuracy and predictions on the CPU (fp32) and the GPU."""
    result = {}
    for arch in ("resnet20", "lenet5"):
        ds = data.load("fashion-mnist-mini")
        path = checkpoints.pretrained_path(arch, "fashion-mnist-mini")
        row, predictions = {}, {}
        for where, dev, amp in (("cpu_fp32", "cpu", False), ("cuda_fp32", "cuda", False),
                                ("cuda_training_precision", "cuda", True)):
            model = checkpoints.load_model(path, device=dev)[0]
            row[where] = train.evaluate(model, ds, amp=amp)[1]
            dtype = policy.autocast_dtype(dev) if amp else None
            with torch.no_grad(), policy.autocast(torch.device(dev), dtype):
                batches = ds.to(dev, split="test").batches("test", 500)
                predictions[where] = torch.cat([model.eval()(x).argmax(1).cpu() for x, _ in batches])
        row["differing_predictions"] = {k: int((v != predictions["cpu_fp32"]).sum())
                                        for k, v in predictions.items() if k != "cpu_fp32"}
        row["test_images"] = len(ds.test_y)
        result[arch] = row
    return result


def notebooks(out: Path) -> dict:
    folder = out.parent / "gpu_check_notebooks"
    command = [sys.executable, "-m", "labkit.cli", "run", "--profile", "quick", "--device", "cuda", "--out",
               str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=HOME)
    table = done.stdout[done.stdout.rfind("notebook "):]
    rows = {}
    for line in table.splitlines()[1:]:
        match = re.match(r"(\d\d_\w+)\s+(\d+)\s+(\S+)\s+(.*)", line)
        if match:
            rows[match[1]] = {"seconds": int(match[2]), "score": match[3], "failures": match[4]}
    return {"returncode": done.returncode, "notebooks": rows, "table": table,
            "stderr_tail": done.stderr[-2000:]}


def cuda_tests() -> dict:
    command = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-o", "addopts=", "-q", "-rs"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=HOME)
    return {"returncode": done.returncode, "summary": done.stdout.strip().splitlines()[-1:],
            "output_tail": done.stdout[-3000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HOME / "runs" / "gpu_check.json")
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts not to run")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda") if cuda else torch.device("cpu")
    if not cuda:
        print("gpu_check: no CUDA GPU here: running the CPU parts (environment, host syncs, a short "
              "throughput run, the CUDA tests, which skip); agreement and notebooks need a GPU", flush=True)
    report = {"cuda": cuda}
    parts = {"environment": environment, "host_syncs": lambda: host_syncs(dev),
             "throughput": lambda: throughput(dev, 30 if cuda else 3),
             "agreement": agreement if cuda else None,
             "notebooks": (lambda: notebooks(args.out)) if cuda else None,
             "cuda_tests": cuda_tests}
    for name in PARTS:
        if name in args.skip or parts[name] is None:
            report[name] = {"skipped": "--skip" if name in args.skip else "no CUDA GPU"}
            continue
        start = time.perf_counter()
        report[name] = parts[name]()
        report[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"gpu_check: {name}: {json.dumps(report[name], default=str)[:600]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"gpu_check: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
