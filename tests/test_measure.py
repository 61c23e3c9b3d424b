import time

import pytest
import torch
from torch import nn

from labkit.measure import (
    FORMATS,
    compressed_bytes,
    count_host_syncs,
    count_macs,
    count_nonzeros,
    count_params,
    latencies,
    latency,
    model_bytes,
    size_on_disk,
    summary_row,
    summary_table,
    time_alternating,
)
from labkit.models import lenet5, resnet20
from labkit.quant import LSQLinear, QLinear, lsq_quantize_model


def pruned_linear(layer_type=nn.Linear, **kwargs) -> nn.Module:
    """Linear(4, 2): weight [[1, 0, 0, 2], [0, 0, 3, 0]] (3 nonzeros of 8), bias [0.5, 0]."""
    layer = layer_type(4, 2, **kwargs)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, 0, 3, 0]]))
        layer.bias.copy_(torch.tensor([0.5, 0.0]))
    return layer


def test_counts_on_hand_checked_layers():
    conv = nn.Conv2d(3, 4, 3)
    assert count_params(conv) == 3 * 4 * 9 + 4
    assert count_macs(conv, (3, 8, 8)) == 4 * 6 * 6 * 3 * 9  # out channels x 6x6 outputs x fan-in
    linear = nn.Linear(5, 3)
    assert count_params(linear) == 5 * 3 + 3
    assert count_macs(linear, (5,)) == 5 * 3


def test_lenet5_params_and_macs():
    net = lenet5()
    assert count_params(net) == 61706  # 156 + 2416 + 48120 + 10164 + 850
    # conv1 6*28*28*25 + conv2 16*10*10*150 + fc 400*120 + 120*84 + 84*10
    assert count_macs(net, (1, 28, 28)) == 117600 + 240000 + 58920


def test_resnet20_macs():
    # convs 40,812,544 + BatchNorm 200,704 (one per output) + average pool 64 + final fc 640
    assert count_macs(resnet20(), (3, 32, 32)) == 41_013_952


def test_fake_quantization_adds_no_macs():
    assert count_macs(lenet5(nbits=4), (1, 28, 28)) == 416520
    assert count_macs(lsq_quantize_model(lenet5(), 4, quantize_activations=True), (1, 28, 28)) == 416520


def test_nonzeros_count_pruned_weights_and_biases_as_zeros():
    assert count_nonzeros(pruned_linear()) == 4  # 3 weights + 1 bias of 10 parameters
    assert count_params(pruned_linear()) == 10


def test_byte_formats_by_hand():
    layer = pruned_linear()  # 8 weights (3 nonzero), 2 biases at 4 bytes = 8
    assert model_bytes(layer) == 10 * 4
    assert model_bytes(layer, "bitpacked") == 10 * 4  # a float layer packs to fp32
    assert model_bytes(layer, "bitmask") == (8 + 3 * 32) // 8 + 8  # mask bits + fp32 nonzeros
    assert model_bytes(layer, "csr") == (3 * 32 + 3 * 32 + 3 * 32) // 8 + 8  # values, columns, 2+1 row ptrs
    asym = pruned_linear(QLinear, nbits=4)
    assert model_bytes(asym, "bitpacked") == 8 * 4 // 8 + 2 * 4 + 8  # codes + alpha, beta + bias
    assert model_bytes(asym, "bitmask") == 3 + 2 * 4 + 8  # ceil((8 + 3*4)/8) = 3
    assert model_bytes(pruned_linear(QLinear, nbits=4, symmetric=True), "bitpacked") == 4 + 4 + 8
    assert model_bytes(pruned_linear(LSQLinear, bits=4), "bitpacked") == 4 + 8 + 4  # step is a parameter
    with_bn = nn.Sequential(pruned_linear(), nn.BatchNorm1d(2))
    assert model_bytes(with_bn) == 40 + (2 + 2 + 2 + 2) * 4  # num_batches_tracked not counted
    assert size_on_disk(with_bn) > model_bytes(with_bn)


def test_latency_fields_and_restores_modes_and_threads():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout()).train()
    net[2].eval()
    running_mean = net[1].running_mean.clone()
    threads = torch.get_num_threads()
    result = latency(net, (4,), batch_size=3, repeats=3, warmup=1, threads=1)
    assert set(result) == {"median_s", "p10_s", "p90_s", "batch_size", "threads", "device"}
    assert 0 < result["p10_s"] <= result["median_s"] <= result["p90_s"]
    assert (result["batch_size"], result["threads"], result["device"]) == (3, 1, "cpu")
    assert torch.get_num_threads() == threads
    assert [m.training for m in net] == [True, True, False]
    assert torch.equal(net[1].running_mean, running_mean)


def test_summary_row():
    row = summary_row(nn.Sequential(pruned_linear()), (4,), accuracy=0.75, repeats=2)
    assert row["compressed_format"] == "bitmask" and row["bytes_compressed"] == 21
    assert (row["params"], row["nonzeros"], row["macs"], row["bytes_dense"]) == (10, 4, 8, 40)
    assert row["accuracy"] == 0.75 and row["latency_s"] > 0 and row["bytes_on_disk"] > 40
    assert summary_row(nn.Linear(4, 2), (4,), repeats=1)["compressed_format"] == "dense-fp32"


def test_compressed_bytes_picks_the_smallest_format():
    assert compressed_bytes(pruned_linear()) == (21, "bitmask")
    assert compressed_bytes(nn.Linear(4, 2)) == (40, "dense-fp32")  # bitpacked ties at fp32: dense wins
    assert compressed_bytes(pruned_linear(LSQLinear, bits=4)) == (3 + 4 + 8, "bitmask")  # (8 + 3*4) bits
    assert compressed_bytes(LSQLinear(4, 2, bits=4)) == (4 + 4 + 8, "bitpacked")  # no zeros: bits + step


class Logged(nn.Module):
    """Appends its name to ``log`` at every forward (a list's append survives the deep copy that
    measuring makes) and sleeps ``seconds``."""

    def __init__(self, name: str, log: list, seconds: float = 0.0):
        super().__init__()
        self.name, self.append, self.seconds = name, log.append, seconds

    def forward(self, x):
        self.append(self.name)
        time.sleep(self.seconds)
        return x


def test_latencies_alternate_models_and_time_each():
    log = []
    result = latencies({"slow": Logged("slow", log, 0.003), "fast": Logged("fast", log)}, (2,),
                       batch_size=4, repeats=3, warmup=1, threads=1)
    assert log == ["slow", "fast", "fast", "slow"] * 2  # each once a round, every other reversed
    assert result["slow"]["median_s"] >= 0.003 > result["fast"]["median_s"]
    assert {(r["batch_size"], r["threads"]) for r in result.values()} == {(4, 1)}
    with pytest.raises(TypeError, match="models="):
        latencies({}, (2,))


def test_time_alternating_takes_turns_and_drops_the_warm_up():
    log = []
    times = time_alternating({"a": lambda: log.append("a"), "b": lambda: log.append("b"),
                              "c": lambda: time.sleep(0.002)}, repeats=2, warmup=1)
    assert log == ["a", "b", "b", "a", "a", "b"]  # rounds a b c, c b a, a b c
    assert {name: len(t) for name, t in times.items()} == {"a": 2, "b": 2, "c": 2}
    assert min(times["c"]) >= 0.002
    with pytest.raises(ValueError, match="repeats=0"):
        time_alternating({"a": log.clear}, repeats=0)
    with pytest.raises(TypeError, match="warmup=0.5"):
        time_alternating({"a": log.clear}, repeats=1, warmup=0.5)


def test_summary_table_rows_match_summary_row():
    models = {"pruned": nn.Sequential(pruned_linear()), "dense": nn.Linear(4, 2)}
    rows = summary_table(models, (4,), {"pruned": 0.75}, repeats=2)
    assert [r["model"] for r in rows] == ["pruned", "dense"]
    assert [r["accuracy"] for r in rows] == [0.75, None]
    for row, model in zip(rows, models.values(), strict=True):
        single = summary_row(model, (4,), repeats=2)
        assert {k: v for k, v in row.items() if k not in ("model", "latency_s", "accuracy")} == \
            {k: v for k, v in single.items() if k not in ("latency_s", "accuracy")}
        assert row["latency_s"] > 0


def test_count_host_syncs():
    t = torch.randn(5)
    assert count_host_syncs(lambda: t.sum()) == 0
    assert count_host_syncs(lambda: t.sum().item()) == 1
    assert count_host_syncs(lambda: t[t > 0]) == 1


@pytest.mark.parametrize("input_size, error", [((3, 0, 8), ValueError), ("3x8x8", TypeError),
                                               ((3.0, 8, 8), TypeError), ((), TypeError)])
def test_bad_input_size(input_size, error):
    with pytest.raises(error, match="input_size"):
        count_macs(nn.Conv2d(3, 4, 3), input_size)


def test_bad_arguments():
    with pytest.raises(ValueError, match="format='zip'.*" + ", ".join(FORMATS)):
        model_bytes(nn.Linear(2, 2), "zip")
    with pytest.raises(ValueError, match="batch_size=0"):
        latency(nn.Linear(2, 2), (2,), batch_size=0)
    with pytest.raises(ValueError, match="threads=0"):
        latency(nn.Linear(2, 2), (2,), threads=0)
    with pytest.raises(TypeError, match="accuracy="):
        summary_row(nn.Linear(2, 2), (2,), accuracy="high")
