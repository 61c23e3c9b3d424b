import pytest
import torch

from labkit import device


def test_defaults_follow_the_hardware(monkeypatch):
    monkeypatch.delenv("LABKIT_DEVICE", raising=False)
    monkeypatch.delenv("LABKIT_PRECISION", raising=False)
    assert device.get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device.precision() == "auto"
    assert device.autocast_dtype(torch.device("cpu")) is None  # auto: fp32 on the CPU


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cpu:1", "tpu"])
def test_bad_device_names(monkeypatch, name):
    monkeypatch.setenv("LABKIT_DEVICE", name)
    with pytest.raises(ValueError, match="LABKIT_DEVICE"):
        device.get_device()


def test_cuda_asked_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LABKIT_DEVICE", "cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        device.get_device()
    monkeypatch.setenv("LABKIT_DEVICE", "auto")
    assert device.get_device() == torch.device("cpu")


def test_bad_precision(monkeypatch):
    monkeypatch.setenv("LABKIT_PRECISION", "int8")
    with pytest.raises(ValueError, match="LABKIT_PRECISION='int8': allowed are auto, fp32, bf16, fp16"):
        device.precision()


@pytest.mark.parametrize("native", [False, True])
def test_cpu_bf16_only_where_native(monkeypatch, native):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert device.autocast_dtype(cpu, "fp32") is None
    if native:
        assert device.autocast_dtype(cpu, "bf16") == torch.bfloat16
    else:
        with pytest.warns(UserWarning, match="not native"):
            assert device.autocast_dtype(cpu, "bf16") is None
    with pytest.warns(UserWarning, match="not native"):
        assert device.autocast_dtype(cpu, "fp16") is None


@pytest.mark.parametrize("capability, auto", [((7, 5), torch.float16), ((8, 0), torch.bfloat16)])
def test_cuda_autocast_follows_compute_capability(monkeypatch, capability, auto):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "a GPU")
    gpu = torch.device("cuda")
    assert device.autocast_dtype(gpu, "auto") == auto
    assert device.autocast_dtype(gpu, "fp16") == torch.float16
    assert device.autocast_dtype(gpu, "fp32") is None
    if auto == torch.float16:  # a T4 / V100: bf16 is emulated there
        with pytest.warns(UserWarning, match="compute capability 7.5"):
            assert device.autocast_dtype(gpu, "bf16") is None


def test_cpu_flags_decide_native_bf16():
    flags = open("/proc/cpuinfo").read().split()
    device.cpu_has_native_bf16.cache_clear()
    expected = torch.backends.mkldnn.is_available() and ("amx_bf16" in flags or "avx512_bf16" in flags)
    assert device.cpu_has_native_bf16() == expected


def test_describe_names_device_and_precision(monkeypatch):
    monkeypatch.setenv("LABKIT_PRECISION", "fp32")
    line = device.describe(torch.device("cpu"))
    assert line.startswith("device this CPU") and "training in fp32" in line
    if device.cpu_has_native_bf16():
        monkeypatch.setenv("LABKIT_PRECISION", "bf16")
        assert "training in bf16 autocast" in device.describe(torch.device("cpu"))


@pytest.mark.parametrize("profile, options, expected", [
    ("quick", [], ("auto", "fp32")), ("full", [], ("auto", "auto")),
    ("quick", ["--device", "cpu", "--precision", "bf16"], ("cpu", "bf16"))])
def test_labkit_run_sets_the_policy_for_its_kernels(tmp_path, profile, options, expected):
    from test_cli_run import _notebook

    from labkit import cli

    body = ("import os\npolicy = os.environ['LABKIT_DEVICE'], os.environ['LABKIT_PRECISION']\n"
            f"assert policy == {expected!r}, policy")
    nb = _notebook(tmp_path / "01_policy.ipynb", body)
    assert cli.main(["run", str(nb), "--profile", profile, "--out", str(tmp_path / "runs"), *options]) == 0


@pytest.mark.parametrize("precision, tf32", [("fp32", False), ("fp16", True)])
def test_configure_allows_tf32_only_outside_fp32(monkeypatch, precision, tf32):
    monkeypatch.setenv("LABKIT_PRECISION", precision)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: (9, 0))
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32  # global switches: restored below
    try:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = False, not tf32, not tf32
        device.configure(torch.device("cuda"))
        assert cudnn.benchmark and cudnn.allow_tf32 == matmul.allow_tf32 == tf32
        device.configure(torch.device("cpu"))  # nothing to switch on the CPU
        assert cudnn.allow_tf32 == tf32
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved
