"""Planted wrong student functions for notebook 07 (deployment), each a plausible bug, and the questions each
must lose: its own function check and every integer run (the integer networks of (d) and (e) compute their
multipliers with the student's fixed_point_multiplier and run on the student's requantize and integer_linear,
through integer.Kernels; their values require all three checks)."""

WRONG = {
    # truncates the mantissa instead of rounding it: m0 one too small for most M
    "fixed_point_multiplier": '''def fixed_point_multiplier(M):
    fraction, exponent = math.frexp(M)
    return int(fraction * 2**31), -exponent
''',
    # forgets the rounding term: every output is floored, half a step low on average
    "requantize": '''def requantize(acc, m0, shift, zero_point, lo=0, hi=255):
    n = 31 + torch.as_tensor(shift, dtype=torch.int64)
    out = (acc.to(torch.int64) * torch.as_tensor(m0, dtype=torch.int64)) >> n
    return (out + zero_point).clamp(lo, hi).to(torch.int32)
''',
    # forgets the input's zero point: every input is read z_x steps too high
    "integer_linear": '''def integer_linear(q_x, x_zero_point, q_w, bias_q):
    acc = q_x.to(torch.int64) @ q_w.to(torch.int64).T + bias_q.to(torch.int64)
    return acc.to(torch.int32)
''',
}

_INTEGER_RUNS = ["d.lenet5_agreement", "d.lenet5_integer_accuracy", "d.fc1_exact", "e.resnet20_agreement",
                 "e.resnet20_integer_accuracy"]
DOWNSTREAM = {
    "fixed_point_multiplier": ["a.fixed_point_multiplier", *_INTEGER_RUNS],
    "requantize": ["b.requantize", *_INTEGER_RUNS],
    "integer_linear": ["c.integer_linear", *_INTEGER_RUNS],
}
