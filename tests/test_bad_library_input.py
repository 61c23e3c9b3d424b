"""What a student sees when a library function gets an input it cannot use: one clear TypeError / ValueError
naming the argument and what is allowed, never a wrong result or a raw torch / numpy error. The table in
docs/RESULTS.md ("Bad input to the library") lists these cases."""

import numpy as np
import pytest
import torch
from torch import nn

from labkit import codec, huffman, prune, quant, sharing, sparse

NAN = float("nan")
CASES = [
    ("project_topk([nan, 1, 2], 1)", lambda: sparse.project_topk([NAN, 1, 2], 1), ValueError,
     "allowed is an array of finite numbers"),
    ("soft_threshold([nan, 1], 0.5)", lambda: sparse.soft_threshold([NAN, 1], 0.5), ValueError,
     "allowed is an array of finite numbers"),
    ("project_topk([], 1)", lambda: sparse.project_topk([], 1), ValueError,
     "at least one entry on its last axis"),
    ("apply_masks(net, {'0': 0.5 everywhere})",
     lambda: prune.apply_masks(nn.Sequential(nn.Linear(4, 3)), {"0": torch.full((3, 4), 0.5)}), ValueError,
     "holds values other than 0 and 1"),
    ("MaskStep({'0': 2 everywhere}).after_step(net)",
     lambda: prune.MaskStep({"0": torch.full((3, 4), 2)}).after_step(nn.Sequential(nn.Linear(4, 3))),
     ValueError, "holds values other than 0 and 1"),
    ("prune_by_percentage(nn.Linear(0, 3), 50)", lambda: prune.prune_by_percentage(nn.Linear(0, 3), 50),
     ValueError, "the weight is empty"),
    ("quantize(tensor([-2e38, 2e38]), 8)", lambda: quant.quantize(torch.tensor([-2e38, 2e38]), 8), ValueError,
     "its range overflows torch.float32"),
    ("quantize(tensor([]), 8)", lambda: quant.quantize(torch.tensor([]), 8), ValueError, "w is empty"),
    ("LSQQuantizer(8)(tensor([]))", lambda: quant.LSQQuantizer(8)(torch.tensor([])), ValueError, "is empty"),
    ("kmeans_1d(tensor([1, nan, 2, 3]), 2)", lambda: sharing.kmeans_1d(torch.tensor([1, NAN, 2, 3]), 2),
     ValueError, "values hold 1 NaN/Inf"),
    ("nearest_centroid(values, tensor([2., 0., 1.]))",
     lambda: sharing.nearest_centroid(torch.tensor([0.1, 0.9]), torch.tensor([2.0, 0.0, 1.0])), ValueError,
     "allowed are ascending centroids"),
    ("relative_indices([0.5, 3.7], 4)", lambda: codec.relative_indices([0.5, 3.7], 4), TypeError,
     "positions holds float64 values"),
    ("huffman_encode([0.5, 1.5])", lambda: huffman.huffman_encode([0.5, 1.5]), TypeError,
     "symbols holds float64 values"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_what_is_allowed(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_the_checks_keep_the_inputs_that_are_allowed():
    net = nn.Sequential(nn.Linear(4, 3))
    before = net[0].weight.detach().clone()
    prune.apply_masks(net, {"0": torch.ones(3, 4, dtype=torch.int64)})  # 0/1 ints read as a bool mask
    assert torch.equal(net[0].weight, before)
    assert codec.relative_indices(torch.tensor([1, 5]), 4)[0].tolist() == [1, 3]  # int tensors
    assert codec.relative_indices([], 4)[0].size == 0 and huffman.huffman_encode([]) == ([], b"", 0)
    centroids = torch.tensor([0.0, 0.5, 1.0])
    assert sharing.nearest_centroid(torch.tensor([0.4, 0.6]), centroids).tolist() == [1, 1]
    np.testing.assert_array_equal(sparse.project_topk([3.0, -1.0, 2.0], 2), [3.0, 0.0, 2.0])
