"""The narrow channel between ``labkit grade``'s trusted kernel and the student's code in its sandbox.

Messages are framed on a Unix stream socket: an 8-byte length, a JSON header, then the raw bytes of the
arrays the header names. What the student's side sends back is *data only*: None, bools, numbers,
strings, lists, tuples, dicts, numpy arrays and torch tensors of plain dtypes, decoded here without
pickle, so nothing it sends can run code or carry an object with behaviour of its own (an ndarray
subclass with its own ``__eq__``, say) into the trusted kernel. The trusted side sends its arguments
pickled (the student's side may run anything anyway), so a layer or a whole network reaches the
student's function as the object the handout's signature names.

Hand-written because no kept library decodes tensors from an untrusted peer without pickle
(``torch.load(weights_only=True)`` still unpickles; safetensors holds flat tensor dicts only).
"""

from __future__ import annotations

import json
import math
import select
import socket
import struct
import sys
import time

import numpy as np

MAX_MESSAGE = 512 * 2**20  # bytes; a ResNet-20 state_dict is ~1 MB, a data set never crosses
MAX_ITEMS = 1_000_000  # containers and their elements in one message
_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "complex64", "complex128")
_LENGTH = struct.Struct("!Q")
_NAMES = {np.dtype(name): name for name in _DTYPES}  # dtype -> its name (numpy's dtype.name is slow)
_RAW = {**{name: np.dtype(name) for name in _DTYPES}, "bfloat16": np.dtype("int16")}


class ChannelError(RuntimeError):
    """The peer sent something malformed or too large, or the connection broke."""


class UnsendableError(TypeError):
    """A value holds something that is not data (see the module docstring)."""


# ---- values <-> a JSON tree and raw buffers ------------------------------------------------------------

def encode(value) -> tuple[object, list[bytes]]:
    """``value`` as a JSON-ready tree plus the raw buffers it refers to by index; UnsendableError for
    anything but the data the module docstring lists."""
    buffers: list[bytes] = []
    count = [0]

    def walk(v):
        count[0] += 1
        if count[0] > MAX_ITEMS:
            raise UnsendableError(f"more than {MAX_ITEMS} items")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, float)) and type(v) in (int, float, bool):
            return v if isinstance(v, int) else {"$float": repr(v)}
        if isinstance(v, (np.ndarray, np.generic)):
            return _array(np.asarray(v), "numpy", scalar=isinstance(v, np.generic))
        torch = _torch()
        if torch is not None and isinstance(v, torch.Tensor):
            return _tensor(v)
        if type(v) in (list, tuple):
            return {"$" + type(v).__name__: [walk(x) for x in v]}
        if type(v) is dict:
            odd = [k for k in v if type(k) not in (str, int, float, bool)]
            if odd:
                raise UnsendableError(f"a dict key of type {type(odd[0]).__name__}")
            return {"$dict": [[walk(k), walk(x)] for k, x in v.items()]}
        raise UnsendableError(f"a value of type {type(v).__module__}.{type(v).__qualname__}")

    def _array(a: np.ndarray, library: str, scalar: bool = False, dtype: str | None = None):
        name = _NAMES.get(a.dtype)
        if name is None:
            raise UnsendableError(f"an array of dtype {a.dtype}")
        buffers.append(a.tobytes())
        node = {"$array": len(buffers) - 1, "library": library, "dtype": dtype or name,
                "shape": list(a.shape)}
        if scalar:
            node["scalar"] = True
        return node

    def _tensor(t):
        torch = _torch()
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return _array(t.view(torch.int16).numpy(), "torch", dtype="bfloat16")
        return _array(t.numpy(), "torch")

    return walk(value), buffers


def decode(tree, buffers: list[bytes]):
    """The value :func:`encode` made ``tree`` and ``buffers`` from; ChannelError for a malformed tree."""
    def walk(node):
        if node is None or isinstance(node, (bool, int, str)):
            return node
        if not isinstance(node, dict) or len(node) < 1:
            raise ChannelError(f"malformed value {str(node)[:80]!r}")
        if "$float" in node:
            return float(node["$float"])
        if "$list" in node:
            return [walk(x) for x in _items(node["$list"])]
        if "$tuple" in node:
            return tuple(walk(x) for x in _items(node["$tuple"]))
        if "$dict" in node:
            out = {}
            for pair in _items(node["$dict"]):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ChannelError("malformed dict entry")
                key = walk(pair[0])
                if type(key) not in (str, int, float, bool):
                    raise ChannelError("malformed dict key")
                out[key] = walk(pair[1])
            return out
        if "$array" in node:
            return _array(node)
        raise ChannelError(f"malformed value {str(node)[:80]!r}")

    def _items(x):
        if not isinstance(x, list):
            raise ChannelError("malformed container")
        return x

    def _array(node):
        index, dtype, shape = node.get("$array"), node.get("dtype"), node.get("shape")
        raw = _RAW.get(dtype) if isinstance(dtype, str) else None
        if (type(index) is not int or not 0 <= index < len(buffers) or raw is None
                or not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape)):
            raise ChannelError(f"malformed array {str(node)[:80]!r}")
        if math.prod(shape) * raw.itemsize != len(buffers[index]):
            raise ChannelError("an array's shape does not match its bytes")
        a = np.frombuffer(buffers[index], dtype=raw).reshape(shape).copy()
        if node.get("library") == "torch":
            torch = _torch()
            t = torch.from_numpy(a)
            return t.view(torch.bfloat16) if dtype == "bfloat16" else t
        return a[()] if node.get("scalar") else a

    return walk(tree)


def _torch():
    return sys.modules.get("torch")  # torch is only ever here if a value holds tensors


# ---- framing --------------------------------------------------------------------------------------------

def send(sock: socket.socket, header: dict, buffers: list[bytes] = ()) -> None:
    """One message: ``header`` (JSON; gets the buffer sizes) and the buffers after it."""
    head = json.dumps({**header, "$sizes": [len(b) for b in buffers]}).encode()
    total = 4 + len(head) + sum(len(b) for b in buffers)
    if total > MAX_MESSAGE:
        raise UnsendableError(f"a message of {total} bytes; allowed are {MAX_MESSAGE}")
    sock.sendall(_LENGTH.pack(total) + struct.pack("!I", len(head)) + head)
    for b in buffers:
        sock.sendall(b)


def recv(sock: socket.socket) -> tuple[dict, list[bytes]]:
    """The next message as (header, buffers); ChannelError if the peer closed or sent garbage."""
    (total,) = _LENGTH.unpack(_read(sock, _LENGTH.size))
    if total > MAX_MESSAGE or total < 4:
        raise ChannelError(f"a message of {total} bytes; allowed are 4 to {MAX_MESSAGE}")
    body = _read(sock, total)
    (n,) = struct.unpack("!I", body[:4])
    try:
        header = json.loads(body[4:4 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChannelError(f"malformed header ({exc})") from None
    sizes = header.pop("$sizes", None) if isinstance(header, dict) else None
    if not isinstance(sizes, list) or not all(type(s) is int and s >= 0 for s in sizes) \
            or 4 + n + sum(sizes) != total:
        raise ChannelError("malformed header: its buffer sizes do not add up")
    buffers, at = [], 4 + n
    for s in sizes:
        buffers.append(body[at:at + s])
        at += s
    return header, buffers


class Poller:
    """Waits for a socket to become readable, polling first where the last waits were short. A process
    woken from a blocking read waits about as long as a short call takes on these machines (~0.2 ms), and
    the calls come in tight loops (a gradient step, a layer's forward pass), so polling halves their cost;
    where the peer takes longer (a training step between two calls), polling would only take a core from
    it, so the poller then blocks at once."""

    def __init__(self, cap: float):
        self.cap, self.last = cap, 0.0

    def wait(self, sock: socket.socket) -> None:
        start = time.perf_counter()
        if self.last < self.cap:
            deadline = start + 2 * self.last + 1e-4
            while time.perf_counter() < deadline:
                if select.select([sock], [], [], 0)[0]:
                    break
            else:
                select.select([sock], [], [])
        else:
            select.select([sock], [], [])
        self.last = time.perf_counter() - start


def _read(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 2**22))
        if not chunk:
            raise ChannelError("the connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
