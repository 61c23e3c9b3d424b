"""Planted wrong student functions for notebook 04 (LeNet-5 LSQ), each a plausible bug, and the questions
each must lose: its own function check and every graded run that calls it (the LSQ layers of the QAT runs
take ``lsq_quantize`` as their forward pass; the size table is made with ``bitpacked_bytes``)."""

WRONG = {
    # clamps to the unsigned range of an activation quantizer, [0, 2^bits - 1], instead of the signed
    # [-2^(bits-1), 2^(bits-1) - 1] of weights: every negative weight becomes 0
    "lsq_quantize": '''def lsq_quantize(x, step, bits):
    q_n, q_p = 0, 2 ** bits - 1
    return torch.round(torch.clamp(x / step, -q_n, q_p)) * step
''',
    # counts bits, not bytes: forgets the division by 8 (and so the rounding up to whole bytes)
    "bitpacked_bytes": '''def bitpacked_bytes(weight_counts, bits, float_entries):
    return sum(n * bits + 4 for n in weight_counts) + 4 * float_entries
''',
}

DOWNSTREAM = {
    "lsq_quantize": ["lsq.forward", "lsq.on_grid", "lsq.accuracy_at_start", "lsq.accuracy"],
    "bitpacked_bytes": ["size.bitpacked_formula", "size.of_float32", "size.matches_model"],
}
