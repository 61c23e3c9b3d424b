"""Canonical Huffman coding of integer symbol streams (numpy only): the last stage of Deep Compression
(``labkit.compress`` codes each layer's cluster codes and index gaps with it) and the Q1.3 experiment
(``huffman_size``: what coding a layer's values costs, its table included).

The code is *canonical*: symbols sorted by (length, symbol) get consecutive codes, so the code lengths
alone (one byte per symbol) define it. ``heapq`` builds the tree; zlib cannot serve, its Huffman coder
is buried in DEFLATE and cannot code a given symbol stream.
"""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np

from labkit.checks import check_integers


class HuffmanError(ValueError):
    """A payload does not decode to the announced symbols with the given code lengths."""


def huffman_code_lengths(counts) -> list[int]:
    """Code length of each symbol 0..len(counts)-1 of a Huffman code for these symbol counts (0 for a
    symbol that never occurs; a lone symbol gets 1 bit). Ties merge the lower symbol first, so the
    lengths are deterministic."""
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError(f"counts={counts!r}: allowed are counts >= 0")
    lengths = [0] * len(counts)
    heap = [(c, s, [s]) for s, c in enumerate(counts) if c > 0]
    if len(heap) == 1:
        lengths[heap[0][1]] = 1
    heapq.heapify(heap)
    order = itertools.count(len(counts))  # internal nodes sort after the leaves of equal count
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, next(order), s1 + s2))
    return lengths


def canonical_codes(lengths) -> dict[int, tuple[int, int]]:
    """{symbol: (code, length)} of the canonical Huffman code with these lengths: symbols sorted by
    (length, symbol) get consecutive codes, so the lengths alone define the code."""
    codes, code, previous = {}, 0, 0
    for length, symbol in sorted((n, s) for s, n in enumerate(lengths) if n > 0):
        code <<= length - previous
        codes[symbol] = (code, length)
        code, previous = code + 1, length
    return codes


def huffman_encode(symbols) -> tuple[list[int], bytes, int]:
    """Huffman-code a stream of ints >= 0: ``(code lengths per symbol, payload, payload bits)``; the
    payload is the codes, most significant bit first, zero-padded to whole bytes."""
    symbols = check_integers("symbols", symbols)
    if symbols.size and symbols.min() < 0:
        raise ValueError(f"symbols holds {int(symbols.min())}: allowed are ints >= 0")
    lengths = huffman_code_lengths(np.bincount(symbols)) if symbols.size else []
    table = {s: np.array([(code >> i) & 1 for i in reversed(range(n))], dtype=np.uint8)
             for s, (code, n) in canonical_codes(lengths).items()}
    bits = np.concatenate([table[s] for s in symbols.tolist()]) if symbols.size else np.zeros(0, np.uint8)
    return lengths, np.packbits(bits).tobytes(), int(bits.size)


def huffman_decode(lengths, payload: bytes, n_bits: int, count: int) -> np.ndarray:
    """The ``count`` symbols ``huffman_encode`` coded into ``payload`` (``n_bits`` bits) with these
    code lengths; raises ``HuffmanError`` if the bits do not decode to exactly that many."""
    lookup = {(n, code): s for s, (code, n) in canonical_codes(lengths).items()}
    longest = max(lengths, default=0)
    if n_bits > 8 * len(payload):
        raise HuffmanError(f"Huffman payload holds {8 * len(payload)} bits, {n_bits} announced")
    out, code, n = [], 0, 0
    for bit in np.unpackbits(np.frombuffer(payload, np.uint8), count=n_bits).tolist():
        code, n = code << 1 | bit, n + 1
        symbol = lookup.get((n, code))
        if symbol is not None:
            out.append(symbol)
            code = n = 0
        elif n >= longest:
            raise HuffmanError(f"invalid Huffman code after {len(out)} symbols")
    if n or len(out) != count:
        raise HuffmanError(f"Huffman payload decodes to {len(out)} symbols (+{n} stray bits), "
                                  f"{count} announced")
    return np.array(out, dtype=np.int64)


def huffman_size(values) -> dict[str, int]:
    """What Huffman coding ``values`` (any numbers, a numpy array or tensor; each distinct value is one
    symbol) costs, in bytes: ``payload`` (the codes), ``table`` (each distinct value as float32 plus its
    code length byte), ``total``, against ``float32`` (4 bytes a value); plus ``values`` and
    ``distinct`` counts."""
    flat = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values).ravel()
    distinct, symbols = np.unique(flat, return_inverse=True)
    _, _, n_bits = huffman_encode(symbols)
    payload, table = math.ceil(n_bits / 8), 5 * len(distinct)
    return {"values": flat.size, "distinct": len(distinct), "float32": 4 * flat.size,
            "payload": payload, "table": table, "total": payload + table}
