"""Plausible wrong versions of notebook 02's student functions, and the questions each must lose.

Measured with PROFILE tiny and quick (see the lead's harness): each wrong function fails its own function
check and the value checks listed in DOWNSTREAM, because the graded runs call the student's functions.
"""

WRONG = {
    # The percentile of the signed weights, not of |w|: at q = 30 and 50 the threshold is <= 0 and almost
    # nothing is pruned; at q = 70 about 40% of each layer goes instead of 70%.
    "prune_by_percentage": '''def prune_by_percentage(layer, q=70.0):
    """Prune ``layer.weight`` in place: zero every weight whose |w| is at most the q-th percentile
    (q in percent) of the layer's |w|."""
    weight = layer.weight.data.cpu().numpy()
    threshold = np.percentile(weight, q)
    mask = torch.from_numpy(np.abs(weight) > threshold).to(layer.weight.device)
    layer.weight.data.mul_(mask)
''',
    # A mask of the positive weights: every negative weight is zeroed after each step as well.
    "weight_masks": '''def weight_masks(net):
    """{layer name: mask} for every prunable layer: 1 where the weight is nonzero, 0 where it is zero."""
    return {name: (layer.weight.data > 0).float() for name, layer in prune.prunable_layers(net)}
''',
    # Masks the gradient after optimizer.step() instead of the weight: the step has already moved the
    # pruned weights, so they grow back.
    "keep_pruned_at_zero": '''def keep_pruned_at_zero(net, weight_mask):
    """After optimizer.step(): multiply every prunable layer's weight by its mask, in place."""
    for name, layer in prune.prunable_layers(net):
        layer.weight.grad.data.mul_(weight_mask[name])
''',
    # One threshold per layer (the per-layer rule of (b)) instead of one over all layers together.
    "global_prune_by_percentage": '''def global_prune_by_percentage(net, q=70.0):
    """Prune all prunable layers of ``net`` in place with ONE threshold: the q-th percentile of |w| over
    all their weights together; keep a weight only if its |w| is above it."""
    for _, layer in prune.prunable_layers(net):
        weight = layer.weight.data.cpu().numpy()
        threshold = np.percentile(np.abs(weight), q)
        mask = torch.from_numpy(np.abs(weight) > threshold).to(layer.weight.device)
        layer.weight.data.mul_(mask)
''',
}

DOWNSTREAM = {
    "prune_by_percentage": ["b.prune_by_percentage", "b.sparsity_q70", "d.sparsity"],
    "weight_masks": ["c.mask_step", "c.sparsity_unchanged", "d.sparsity", "e.total_sparsity", "e.accuracy"],
    "keep_pruned_at_zero": ["c.mask_step", "c.sparsity_unchanged", "d.sparsity", "e.total_sparsity"],
    "global_prune_by_percentage": ["e.global_prune_by_percentage", "e.one_threshold"],
}

# more plausible bugs, each (function, code, questions it must lose)
EXTRA = {
    # q passed to np.percentile as a fraction: q=70 prunes 0.7% of each layer. Every value measured on
    # "the 70% model" requires the sparsity check, so none of them counts, with or without references.
    "prune_by_percentage/fraction": ("prune_by_percentage", '''def prune_by_percentage(layer, q=70.0):
    """Prune ``layer.weight`` in place: zero every weight whose |w| is at most the q-th percentile
    (q in percent) of the layer's |w|."""
    weight = layer.weight.data.cpu().numpy()
    threshold = np.percentile(np.abs(weight), q / 100)
    mask = torch.from_numpy(np.abs(weight) > threshold).to(layer.weight.device)
    layer.weight.data.mul_(mask)
''', ["b.prune_by_percentage", "b.sparsity_q70", "b.accuracy", "b.accuracy_q70", "c.best_accuracy",
      "d.sparsity", "d.best_accuracy", "beyond.sensitivity", "beyond.agp_accuracy"]),
}
