"""labkit: a course lab kit on model compression (sparse optimization, pruning, quantization)."""

__version__ = "0.1.0"
