"""Real kernels: torch's int8 model computes what the float one does, CSR products equal dense ones, and the
crossover is read off the measured speedups. (Times themselves are benchmarks: benchmarks/deployment.py.)"""

import pytest
import torch

from labkit import kernels, models


def test_torch_int8_predicts_as_the_float_model_and_refuses_a_fake_quantized_one():
    torch.manual_seed(0)
    model = models.LeNet5().eval()
    calibration = torch.randn(256, 1, 28, 28)
    q_model = kernels.torch_int8(model, calibration)
    x = torch.randn(200, 1, 28, 28)
    with torch.no_grad():
        agree = (q_model(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert agree >= 0.9 and not any(p.is_floating_point() for p in q_model.parameters())
    with pytest.raises(ValueError, match="fake-quantized"):
        kernels.torch_int8(models.LeNet5(nbits=4).eval(), calibration)


def test_csr_timings_prune_to_each_density_and_time_both_ways():
    weight = torch.randn(40, 30, generator=torch.Generator().manual_seed(1))
    rows = kernels.csr_timings(weight, [1.0, 0.5, 0.1], batch_size=4, repeats=2)
    assert [r["density"] for r in rows] == [1.0, 0.5, 0.1]
    assert [r["nonzeros"] for r in rows] == [1200, 600, 120]
    assert all(r["dense_s"] > 0 and r["csr_s"] > 0 for r in rows)
    assert all(r["speedup"] == r["dense_s"] / r["csr_s"] for r in rows)
    with pytest.raises(ValueError, match="density=0"):
        kernels.csr_timings(weight, [0], repeats=1)


def test_the_crossover_is_interpolated_where_the_speedup_crosses_one():
    def rows(pairs):
        return [{"density": d, "speedup": s} for d, s in pairs]

    assert kernels.crossover(rows([(1.0, 0.2), (0.2, 0.5), (0.1, 1.5), (0.05, 3.0)])) == pytest.approx(0.15)
    assert kernels.crossover(rows([(1.0, 0.2), (0.1, 0.9)])) is None  # CSR never wins here
    assert kernels.crossover(rows([(1.0, 1.2), (0.1, 5.0)])) is None  # nor loses
