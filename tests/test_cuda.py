"""What only a CUDA GPU can show; every test skips without one (benchmarks/gpu_check.py runs them)."""

import warnings

import pytest
import torch

from labkit import checkpoints, data, models, train
from labkit import device as policy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_fit_and_evaluate_stay_on_the_gpu(tiny_data, monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "cuda")
    net = models.lenet5()
    config = train.TrainConfig(epochs=2, batch_size=50, augment=True)
    history = train.fit(net, tiny_data, config, progress=False, restore_best=True)
    assert next(net.parameters()).is_cuda and all(v.is_cuda for v in history.best_state.values())
    assert train.evaluate(net, tiny_data)[1] == pytest.approx(history.best_acc)
    assert not tiny_data.train_x.is_cuda  # the caller's data set is not moved


def test_no_synchronizing_call_per_training_step(tiny_data):
    dev = torch.device("cuda")
    ds = tiny_data.to(dev)

    def syncs(steps):
        config = train.TrainConfig(epochs=1, batch_size=10, max_batches=steps, augment=True)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train.fit(models.lenet5(), ds, config, device=dev, progress=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchronizing" in str(w.message) for w in caught)

    syncs(2)  # warm-up
    if policy.autocast_dtype(dev) == torch.float16:
        pytest.skip("fp16 training: the grad scaler reads its inf check once per step by design")
    assert syncs(2) == syncs(12)


def test_batches_are_the_same_on_cpu_and_gpu(tiny_data):
    def first(ds):
        generator = torch.Generator().manual_seed(0)
        return next(ds.batches("train", 64, shuffle=True, augment=True, generator=generator))

    (x_cpu, y_cpu), (x_gpu, y_gpu) = first(tiny_data), first(tiny_data.to("cuda"))
    assert torch.equal(y_cpu, y_gpu.cpu()) and torch.allclose(x_cpu, x_gpu.cpu())


def test_committed_checkpoints_agree_on_cpu_and_gpu_in_fp32():
    ds = data.load("fashion-mnist-mini")
    for arch in ("lenet5", "resnet20"):
        path = checkpoints.pretrained_path(arch, "fashion-mnist-mini")
        cpu = train.evaluate(checkpoints.load_model(path, device="cpu")[0], ds)[1]
        gpu = train.evaluate(checkpoints.load_model(path, device="cuda")[0], ds)[1]
        assert abs(cpu - gpu) <= 2 / len(ds.test_y)  # fp32 both: at most a borderline image or two


def test_grad_scaler_only_for_fp16():
    dev = torch.device("cuda")
    assert policy.grad_scaler(dev, torch.float16).is_enabled()
    assert not policy.grad_scaler(dev, torch.bfloat16).is_enabled()
    assert policy.autocast_dtype(dev, "auto") == (torch.bfloat16 if policy.native(torch.bfloat16, dev)
                                                  else torch.float16)
