"""Planted wrong student functions of notebook 03 (Lab 3), for the release / grading harness.

``WRONG[name]`` replaces the solution cell's ``def name`` as a whole; ``DOWNSTREAM[name]`` lists the
question ids it must lose (its own function checks and the graded runs made with it), on the quick
profile (recorded references) and on tiny (properties only) alike. ``EXTRA`` holds further plausible
bugs of the same function in the same form, ``{label: (function name, code, downstream ids)}``.
"""

# The step is one too large (2^bit instead of 2^bit - 1; 2^(bit-1) instead of 2^(bit-1) - 1 when
# symmetric): 2^bit + 1 levels per layer, one more than the bits can code.
WRONG = {"ste_forward": '''def ste_forward(w, bit, symmetric=False):
    """The STE's forward pass: ``w`` quantized to ``bit`` bits with dynamic scaling; zeros stay zero."""
    if bit is None:
        return w
    if bit == 0:
        return w * 0
    weight_mask = (w != 0).float()  # weight = 0 (pruned) -> mask 0, weight != 0 -> mask 1
    tiny = torch.finfo(w.dtype).tiny  # keeps alpha > 0: a constant tensor must not give 0/0
    if not symmetric:
        alpha = (w.max() - w.min()).clamp_min(tiny)
        beta = w.min()
        ws = (w - beta) / alpha
        step = 2**bit
        R = torch.round(ws * step) / step
        wq = alpha * R + beta
    else:
        abs_max = w.abs().max().clamp_min(tiny)
        ws = w / abs_max
        step = 2 ** (bit - 1)
        R = torch.round(ws * step) / step
        wq = R * abs_max
    return wq * weight_mask
'''}

DOWNSTREAM = {"ste_forward": ["a.ste_forward", "a.zero_pattern", "b.fixed_point", "e.fixed_point"]}

# Forgets the handout's mask: a pruned weight goes to the nearest asymmetric level instead of staying 0
# (the symmetric grid's exact 0 hides the bug there).
EXTRA = {"ste_forward/no_mask": ("ste_forward", '''def ste_forward(w, bit, symmetric=False):
    """The STE's forward pass: ``w`` quantized to ``bit`` bits with dynamic scaling; zeros stay zero."""
    if bit is None:
        return w
    if bit == 0:
        return w * 0
    tiny = torch.finfo(w.dtype).tiny  # keeps alpha > 0: a constant tensor must not give 0/0
    if not symmetric:
        alpha = (w.max() - w.min()).clamp_min(tiny)
        beta = w.min()
        ws = (w - beta) / alpha
        step = 2**bit - 1
        R = torch.round(ws * step) / step
        wq = alpha * R + beta
    else:
        abs_max = w.abs().max().clamp_min(tiny)
        ws = w / abs_max
        step = 2 ** (bit - 1) - 1
        R = torch.round(ws * step) / step
        wq = R * abs_max
    return wq
''', ["a.ste_forward", "a.zero_pattern", "d.pruned_zeros_still_zero",
                     "d.accuracy_before", "d.accuracy_after"])}
