import math

import numpy as np
import pytest
import torch

from labkit import huffman as H

# --- Huffman ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbols", [
    np.random.default_rng(0).integers(0, 50, 2000),  # random, nearly uniform
    np.random.default_rng(1).geometric(0.3, 3000) - 1,  # skewed
    np.arange(300),  # all distinct
    [7] * 10,  # one symbol
    [0, 1],
    [],
])
def test_huffman_round_trip(symbols):
    lengths, payload, n_bits = H.huffman_encode(symbols)
    assert H.huffman_decode(lengths, payload, n_bits, len(symbols)).tolist() == list(np.asarray(symbols))
    assert len(payload) == math.ceil(n_bits / 8)
    used = [n for n in lengths if n]
    if len(used) > 1:
        assert sum(2.0**-n for n in used) == 1.0  # a complete prefix code


def test_huffman_lengths_are_optimal_and_beat_fixed_width_on_skewed_streams():
    symbols = np.random.default_rng(2).geometric(0.4, 5000) - 1
    counts = np.bincount(symbols)
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    _, _, n_bits = H.huffman_encode(symbols)
    assert entropy <= n_bits / len(symbols) < entropy + 1
    assert n_bits < len(symbols) * math.ceil(math.log2(len(counts)))


def test_huffman_edge_cases():
    assert H.huffman_code_lengths([]) == []
    assert H.huffman_code_lengths([0, 5, 0]) == [0, 1, 0]
    assert H.huffman_code_lengths([3, 3, 3, 3]) == [2, 2, 2, 2]
    assert H.huffman_code_lengths([1, 1, 2, 4]) == [3, 3, 2, 1]
    assert H.canonical_codes([2, 1, 3, 3]) == {1: (0b0, 1), 0: (0b10, 2), 2: (0b110, 3), 3: (0b111, 3)}
    assert H.huffman_encode([]) == ([], b"", 0)
    assert H.huffman_encode([4, 4, 4]) == ([0, 0, 0, 0, 1], b"\x00", 3)


def test_huffman_errors():
    lengths, payload, n_bits = H.huffman_encode([0, 1, 2, 2])
    with pytest.raises(H.HuffmanError, match="4 announced"):
        H.huffman_decode(lengths, payload, n_bits - 1, 4)
    with pytest.raises(H.HuffmanError, match="5 announced"):
        H.huffman_decode(lengths, payload, n_bits, 5)
    with pytest.raises(H.HuffmanError, match="bits"):
        H.huffman_decode(lengths, payload, 8 * len(payload) + 1, 4)
    with pytest.raises(ValueError, match="symbols"):
        H.huffman_encode([1, -1])
    with pytest.raises(ValueError, match="counts"):
        H.huffman_code_lengths([1, -2])


def test_huffman_size_of_float_weights_and_of_codes():
    w = torch.randn(1000)
    floats = H.huffman_size(w)
    assert floats["distinct"] == 1000 and floats["total"] > floats["float32"] == 4000
    codes = H.huffman_size(torch.randint(0, 16, (1000,)))
    assert codes["distinct"] == 16 and codes["payload"] <= 500 and codes["total"] < 600
