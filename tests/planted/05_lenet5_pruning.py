"""Planted wrong student functions for notebook 05 (LeNet-5 pruning), each a plausible bug, and the
questions each must lose: its own function check and every graded run that calls it (every fine-grained
model is pruned with ``magnitude_mask``; every channel-pruned model is cut with ``channels_to_keep``)."""

WRONG = {
    # reads q as the share of weights to KEEP: keeps the q% most important weights instead of pruning them
    "magnitude_mask": '''def magnitude_mask(weight, q):
    importance = weight.detach() ** 2
    return importance > torch.quantile(importance.flatten(), 1 - q / 100)
''',
    # reads ratio as the share of channels to keep: keeps round(ratio C) channels instead of removing them
    "channels_to_keep": '''def channels_to_keep(weight, ratio):
    norms = weight.detach().flatten(1).norm(dim=1)
    n_keep = max(1, round(ratio * len(norms)))
    keep = torch.zeros(len(norms), dtype=torch.bool)
    keep[norms.argsort(descending=True, stable=True)[:n_keep]] = True
    return keep
''',
}

DOWNSTREAM = {
    "magnitude_mask": ["fine.w2_mask", "fine.w2_equals_abs", "fine.nonzeros", "fine.compression_ratio",
                       "fine.accuracy_before_ft", "fine.accuracy_after_ft", "fine.sensitivity_monotone"],
    "channels_to_keep": ["channel.keep", "channel.kept", "table.counts", "table.accuracy", "channel.counts",
                         "channel.accuracy_before_ft", "channel.accuracy_after_ft"],
}
