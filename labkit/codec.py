"""Deep Compression's file (Han, Mao & Dally, ICLR 2016, sections 2 and 4): a pruned and shared model in
ONE file, the nonzeros of each layer as a sparse list with *relative* indices (``relative_indices``: the
gap to the previous entry in ``index_bits`` bits; a filler zero when a gap is too long), the weights as
codes into the layer's codebook, both codes and gaps Huffman-coded (``labkit.huffman``: canonical, so only
the code lengths are stored). Biases, BatchNorm and the shortcut convolutions stay dense float32.
``save_compressed`` writes it with its ``CompressionReport`` (bytes per stage, the paper's tables);
``load_compressed`` builds the model back, bit for bit.

Written by hand because no library stores this format: zlib cannot Huffman-code a given symbol stream
(``labkit.huffman`` does); ``zlib.crc32`` checks the file.

File format (little-endian, version 1)::

    magic b"LKDC" | version u8 | file length u32 | arch: u8 length + ASCII | num_classes u16
    | in_channels u16 | meta: u32 length + JSON | entries u16 | one record per state_dict entry, in
    order | crc32 u32
    record: kind u8 (0: float32 dense, 1: int64 dense, 2: shared sparse layer) | count u32 | ...
      dense: count values
      shared: bits u8 | index_bits u8 | clusters u16 | codebook clusters * f32 | sparse entries u32
              | Huffman block of the codes | Huffman block of the gaps
    Huffman block: alphabet u16 | code length per symbol u8 | payload bits u32 | payload bytes

The length and the crc32 (of everything before it) make a truncated or corrupted file refused
(``CompressedFileError``), never read as a silently different model.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labkit import models
from labkit.atomic import atomic_open
from labkit.blanks import student_writes
from labkit.checks import check_integers
from labkit.huffman import HuffmanError, huffman_decode, huffman_encode
from labkit.sharing import SharedWeight, check_bits, layer_bits, shared_from_weights

MAGIC = b"LKDC"
VERSION = 1
PAPER_INDEX_BITS = {"conv": 8, "fc": 5}  # relative-index bits, the paper's section 2
_DENSE_F32, _DENSE_I64, _SHARED = 0, 1, 2


class CompressedFileError(ValueError):
    """A compressed file is truncated, corrupted, of another format or version, or does not fit the
    architecture it names."""


@student_writes("06_deep_compression")
def relative_indices(positions, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse positions (increasing ints >= 0) as gaps of at most 2^index_bits - 1 zeros:
    ``(gaps, filler)`` per stored entry, where gap = zeros skipped since the previous entry (the
    first counts from position 0). A longer gap stores filler zeros (``filler`` True), each after
    the longest gap, as in the paper's figure 2."""
    index_bits = check_bits(index_bits, "index_bits")
    positions = check_integers("positions", positions)
    gap = np.diff(positions, prepend=-1) - 1
    if gap.size and gap.min() < 0:
        raise ValueError("positions: allowed are strictly increasing ints >= 0")
    span = 2**index_bits
    entries = gap // span + 1  # fillers, then the entry itself
    last = np.cumsum(entries) - 1
    gaps = np.full(int(entries.sum()), span - 1, dtype=np.int64)
    gaps[last] = gap % span
    filler = np.ones(gaps.size, dtype=bool)
    filler[last] = False
    return gaps, filler


def absolute_positions(gaps) -> np.ndarray:
    """Positions of the entries (fillers included) that ``relative_indices`` gave these gaps."""
    return np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1


# ---------------------------------------------------------------------------------------------------
# The compressed file


@dataclass(frozen=True)
class CompressionReport:
    """Bytes of a compressed model per stage, as in the paper's tables 1-4. ``rows``: one per
    prunable layer, then ``dense rest`` (biases, BatchNorm, shortcuts: float32 in every stage) and
    ``header``; the stages are ``dense`` (float32), ``pruned`` (float32 values + index_bits
    relative indices, fillers included), ``shared`` (codes of ceil(log2(clusters + filler)) bits +
    float32 codebook + indices) and ``huffman`` (the bytes this layer really takes in the file)."""

    path: Path
    rows: list[dict]

    def total(self, stage: str) -> int:
        return sum(row[stage] for row in self.rows)

    @property
    def file_bytes(self) -> int:
        return self.total("huffman")

    @property
    def ratio(self) -> float:
        """Dense float32 bytes of all parameters and float buffers / bytes of the file."""
        return self.total("dense") / self.file_bytes

    def table(self) -> list[dict]:
        """The rows plus a total row, each with its compression ratio ``x`` (dense / huffman)."""
        counts = ("weights", "nonzeros", "fillers", *STAGES)
        total = {key: self.total(key) if key in counts else "" for key in self.rows[0]}
        rows = [*self.rows, {**total, "layer": "total"}]
        return [{**row, "x": row["dense"] / row["huffman"]} for row in rows]


STAGES = ("dense", "pruned", "shared", "huffman")


def _huffman_block(symbols: np.ndarray) -> bytes:
    lengths, payload, n_bits = huffman_encode(symbols)
    return struct.pack("<H", len(lengths)) + bytes(lengths) + struct.pack("<I", n_bits) + payload


def _relative_indices_by(index_fn, positions: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``index_fn(positions, index_bits)`` (a student's ``relative_indices``) as checked arrays."""
    gaps, filler = index_fn(positions.copy(), index_bits)
    gaps, filler = np.asarray(gaps), np.asarray(filler)
    if (gaps.ndim != 1 or gaps.shape != filler.shape or gaps.dtype.kind not in "iu" or filler.dtype != bool
            or int((~filler).sum()) != positions.size):
        name = getattr(index_fn, "__name__", index_fn)
        raise ValueError(f"index_fn={name!r} returned gaps {gaps.dtype} {gaps.shape} and filler "
                         f"{filler.dtype} {filler.shape}: allowed are equally long 1-D int gaps and bool "
                         f"filler flags with one non-filler per position ({positions.size})")
    if gaps.size and (gaps.min() < 0 or gaps.max() >= 2**index_bits):
        raise ValueError(f"index_fn returned gaps in {int(gaps.min())}..{int(gaps.max())}: allowed are "
                         f"0..{2**index_bits - 1} ({index_bits} bits)")
    return gaps.astype(np.int64), filler


def _shared_record(s: SharedWeight, bits: int, index_bits: int, index_fn=None) -> tuple[bytes, dict]:
    labels = s.labels.flatten().numpy()
    positions = np.flatnonzero(labels >= 0)
    if index_fn is None:
        gaps, filler = relative_indices(positions, index_bits)
    else:
        gaps, filler = _relative_indices_by(index_fn, positions, index_bits)
    clusters = len(s.codebook)
    codes = np.full(gaps.size, clusters, dtype=np.int64)  # the filler zero: one symbol past the codebook
    codes[~filler] = labels[positions]
    record = (struct.pack("<BIBBH", _SHARED, labels.size, bits, index_bits, clusters)
              + s.codebook.numpy().astype("<f4").tobytes() + struct.pack("<I", gaps.size)
              + _huffman_block(codes) + _huffman_block(gaps))
    code_bits = max(1, (clusters + bool(filler.any()) - 1).bit_length())
    row = {"weights": labels.size, "nonzeros": positions.size, "fillers": int(filler.sum()),
           "clusters": clusters, "bits": bits, "index_bits": index_bits, "dense": 4 * labels.size,
           "pruned": math.ceil(gaps.size * (32 + index_bits) / 8),
           "shared": math.ceil(gaps.size * (code_bits + index_bits) / 8) + 4 * clusters,
           "huffman": len(record)}
    return record, row


def _dense_record(key: str, tensor: torch.Tensor) -> bytes:
    kinds = {torch.float32: (_DENSE_F32, "<f4"), torch.int64: (_DENSE_I64, "<i8")}
    if tensor.dtype not in kinds:
        raise ValueError(f"state_dict entry {key} is {tensor.dtype}: allowed are float32 and int64 tensors")
    kind, dtype = kinds[tensor.dtype]
    return struct.pack("<BI", kind, tensor.numel()) + tensor.detach().cpu().numpy().astype(dtype).tobytes()


def _short_text(text: str) -> bytes:
    raw = text.encode("ascii")
    return struct.pack("<B", len(raw)) + raw


def _meta_bytes(meta) -> bytes:
    if meta is None:
        return b""
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise TypeError(f"meta={meta!r:.80}: allowed are None or a dict with str keys (stored as JSON)")
    try:
        return json.dumps(dict(meta), separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta={meta!r:.80}: allowed are JSON values ({exc})") from exc


def save_compressed(model: nn.Module, path: str | Path, *, arch: str, bits=None, index_bits=None,
                    meta: Mapping | None = None, index_fn=None) -> CompressionReport:
    """Write ``model`` (already pruned and shared) to ONE file at ``path``, atomically (temp + rename),
    in the format of the module docstring, and return its ``CompressionReport``.

    Lossless: each prunable layer must hold at most 2^bits distinct nonzero values (``share_weights``
    makes them); ``load_compressed`` gives back exactly these weights (zeros as +0.0). ``bits`` and
    ``index_bits`` as in ``layer_bits`` (default: the paper's 8 / 5 bits for conv / FC, for both).
    ``arch`` names the architecture (``labkit.models.ARCHITECTURES``) whose state_dict ``model``
    has; ``meta``: a JSON-able dict stored with it (e.g. the accuracy). ``index_fn(positions,
    index_bits) -> (gaps, filler)`` encodes the sparse positions (None: ``relative_indices``; notebook
    06 passes the student's); the reader always decodes with ``absolute_positions``, so a wrong
    ``index_fn`` writes a file that does not read back as the model."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: allowed is an nn.Module")
    if arch not in models.ARCHITECTURES:
        raise ValueError(f"arch={arch!r}: allowed are {', '.join(models.ARCHITECTURES)}")
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path={path!r}: allowed is a str or pathlib.Path")
    per_bits = layer_bits(model, bits)
    per_index = layer_bits(model, index_bits, "index_bits", PAPER_INDEX_BITS)
    meta_bytes = _meta_bytes(meta)
    num_classes, in_channels = models.constructor_args(model)
    state = model.state_dict()
    expected = models.build(arch, num_classes=num_classes, in_channels=in_channels).state_dict()
    if [(k, v.shape) for k, v in state.items()] != [(k, v.shape) for k, v in expected.items()]:
        raise ValueError(f"model={type(model).__name__}: its state_dict is not that of arch={arch!r} "
                         f"(num_classes={num_classes}, in_channels={in_channels})")
    shared = shared_from_weights(model)
    for name, s in shared.items():
        if len(s.codebook) > 2 ** per_bits[name]:
            raise ValueError(f"layer {name} has {len(s.codebook)} distinct nonzero weights: allowed are at "
                             f"most 2^{per_bits[name]} (share_weights(model, bits) first)")
    records, rows = [], []
    rest = _row("dense rest")
    for key, tensor in state.items():
        name = key.removesuffix(".weight")
        if key.endswith(".weight") and name in shared:
            record, row = _shared_record(shared[name], per_bits[name], per_index[name], index_fn)
            rows.append(_row(name, **row))
        else:
            record = _dense_record(key, tensor)
            floats = 4 * tensor.numel() if tensor.is_floating_point() else 0
            rest.update({stage: rest[stage] + floats for stage in ("dense", "pruned", "shared")},
                        huffman=rest["huffman"] + len(record))
        records.append(record)
    head = (_short_text(arch) + struct.pack("<HHI", num_classes, in_channels, len(meta_bytes)) + meta_bytes
            + struct.pack("<H", len(records)))
    length = len(MAGIC) + 5 + len(head) + sum(map(len, records)) + 4
    blob = MAGIC + struct.pack("<BI", VERSION, length) + head + b"".join(records)
    blob += struct.pack("<I", zlib.crc32(blob))
    path = Path(path)
    with atomic_open(path, "wb") as f:
        f.write(blob)
    header = _row("header + crc32", huffman=len(MAGIC) + 5 + len(head) + 4)
    return CompressionReport(path, [*rows, rest, header])


def _row(layer: str, **values) -> dict:
    """A report row: the per-layer fields (0 or blank where they do not apply) and the stage bytes."""
    blank = {"weights": 0, "nonzeros": 0, "fillers": 0, "clusters": "", "bits": "", "index_bits": ""}
    return {"layer": layer, **blank, **dict.fromkeys(STAGES, 0), **values}


class _Reader:
    """Reads a compressed file's fields in order; running past the end is a CompressedFileError."""

    def __init__(self, blob: bytes, path: Path):
        self.blob, self.path, self.pos = blob, path, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.blob):
            raise CompressedFileError(f"{self.path}: {what} needs {n} bytes at offset {self.pos}, only "
                                      f"{len(self.blob) - self.pos} are left")
        self.pos += n
        return self.blob[self.pos - n:self.pos]

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def huffman_block(self, count: int, what: str) -> np.ndarray:
        (alphabet,) = self.unpack("<H", f"{what} alphabet")
        lengths = list(self.take(alphabet, f"{what} code lengths"))
        (n_bits,) = self.unpack("<I", f"{what} bit count")
        payload = self.take(math.ceil(n_bits / 8), f"{what} payload")
        try:
            return huffman_decode(lengths, payload, n_bits, count)
        except HuffmanError as error:
            raise CompressedFileError(f"{self.path}: {what}: {error}") from error


def _read_shared(reader: _Reader, count: int, key: str) -> np.ndarray:
    bits, index_bits, clusters = reader.unpack("<BBH", f"{key} header")
    codebook = np.frombuffer(reader.take(4 * clusters, f"{key} codebook"), "<f4")
    (entries,) = reader.unpack("<I", f"{key} entry count")
    codes = reader.huffman_block(entries, f"{key} codes")
    positions = absolute_positions(reader.huffman_block(entries, f"{key} gaps"))
    if clusters > 2**bits or codes.max(initial=0) > clusters or positions.max(initial=-1) >= count:
        raise CompressedFileError(f"{reader.path}: {key} decodes to codes or positions out of range")
    kept = codes < clusters
    flat = np.zeros(count, dtype=np.float32)
    flat[positions[kept]] = codebook[codes[kept]]
    return flat


def _read_record(reader: _Reader, key: str, target: torch.Tensor) -> torch.Tensor:
    kind, count = reader.unpack("<BI", f"{key} record header")
    if count != target.numel():
        raise CompressedFileError(f"{reader.path}: {key} holds {count} values, the architecture "
                                  f"{target.numel()}")
    if kind == _SHARED and target.dtype == torch.float32:
        values = _read_shared(reader, count, key)
    elif kind == _DENSE_F32 and target.dtype == torch.float32:
        values = np.frombuffer(reader.take(4 * count, key), "<f4")
    elif kind == _DENSE_I64 and target.dtype == torch.int64:
        values = np.frombuffer(reader.take(8 * count, key), "<i8")
    else:
        raise CompressedFileError(f"{reader.path}: {key} has record kind {kind}, not one for {target.dtype}")
    return torch.from_numpy(values.copy()).reshape(target.shape)


def load_compressed(path: str | Path) -> tuple[nn.Module, dict]:
    """Read a ``save_compressed`` file: ``(model, meta)``, the model built by
    ``labkit.models.build`` from the architecture in the header and holding exactly the weights
    written; meta is the stored dict plus ``arch``, ``num_classes``, ``in_channels``. A file that is
    truncated, corrupted, of another format or version raises ``CompressedFileError``."""
    path = Path(path)
    blob = path.read_bytes()
    if blob[:4] != MAGIC:
        raise CompressedFileError(f"{path} starts with {blob[:4]!r}, not {MAGIC!r}: not a labkit compressed "
                                  "model file")
    reader = _Reader(blob, path)
    reader.take(4, "magic")
    version, length = reader.unpack("<BI", "version and length")
    if version != VERSION:
        raise CompressedFileError(f"{path} has format version {version}: this labkit reads version {VERSION}")
    if length != len(blob):
        raise CompressedFileError(f"{path} has {len(blob)} bytes, its header says {length}: "
                                  + ("truncated" if len(blob) < length else "trailing bytes"))
    (crc,) = struct.unpack("<I", blob[-4:])
    if zlib.crc32(blob[:-4]) != crc:
        raise CompressedFileError(f"{path} is corrupted: crc32 {zlib.crc32(blob[:-4]):#010x} of the content, "
                                  f"{crc:#010x} stored")
    (n,) = reader.unpack("<B", "architecture name length")
    arch = reader.take(n, "architecture name").decode("ascii", errors="replace")
    num_classes, in_channels, meta_length = reader.unpack("<HHI", "constructor arguments")
    meta = json.loads(reader.take(meta_length, "meta")) if meta_length else {}
    if arch not in models.ARCHITECTURES:
        raise CompressedFileError(f"{path} names arch={arch!r}: this labkit builds {models.ARCHITECTURES}")
    model = models.build(arch, num_classes=num_classes, in_channels=in_channels)
    targets = model.state_dict()
    (entries,) = reader.unpack("<H", "entry count")
    if entries != len(targets):
        raise CompressedFileError(f"{path} holds {entries} tensors, {arch} has {len(targets)}")
    state = {key: _read_record(reader, key, target) for key, target in targets.items()}
    if reader.pos != len(blob) - 4:
        raise CompressedFileError(f"{path}: {len(blob) - 4 - reader.pos} unread bytes before the checksum")
    model.load_state_dict(state)
    return model, {**meta, "arch": arch, "num_classes": num_classes, "in_channels": in_channels}
