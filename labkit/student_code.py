"""The student's code as the trusted kernel of ``labkit grade`` sees it: cells run elsewhere, functions called
through :mod:`labkit.channel`.

When a submission is graded, the instructor's notebook runs in a kernel that runs no student code (the trusted
kernel). Every cell the student wrote (the solution cells, and cells the student added) is replaced there by
``run_cell(k, globals())``, which has the student's worker (:mod:`labkit.student_worker`, a process in its own
sandbox) run that cell, prints what it printed, and binds the names the instructor's solution cells define: a
function as a :class:`StudentFunction` (each call runs the student's function in the worker), a value
(``ANSWER_1_1 = True``) as the data it is. The trusted kernel then runs labkit's loops, evaluations and checks
on those, so what a submission's code does to its own process (patching the grader, labkit or numpy) changes
only what its functions return.

A call sends its arguments to the worker; tensors, arrays and modules the function changed in place come back
and are copied into the caller's objects (a layer pruned in place stays pruned here), the rest of the
arguments is the caller's. The labs' functions are functions of their arguments, so a call on data equal byte
for byte to an earlier call's gets that call's answer again without asking the worker (an evaluation quantizes
the same weights for every batch); what the function printed is shown the first time only. The student's cells
see the notebook's imported modules and its plain settings (numbers, strings, devices, small dataclasses), and
the names earlier student cells defined; not its models or data: the labs' functions take those as arguments.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import hashlib
import json
import os
import pickle
import socket
import sys
import time
import types

import numpy as np

from labkit import channel

SOCKET_ENV = "LABKIT_STUDENT_SOCKET"
OUTPUT_BUDGET = 256 * 1024  # characters of the student's printed output shown in the graded notebook
_CONNECT_SECONDS = 120.0


class StudentCodeError(Exception):
    """The student's code raised an exception that is not one of Python's built-in ones, or stopped
    answering."""


@dataclasses.dataclass(frozen=True)
class ModuleRef:
    """A module of the notebook's namespace, imported again on the student's side."""

    name: str


class StudentFunction:
    """A function the student defined, called in the worker. Pickles as a reference that the worker turns
    back into the function itself (a layer holding a student's quantizer can be sent to another student
    function); deep copies are itself."""

    def __init__(self, connection: Connection, handle: int, name: str, doc: str | None):
        self._connection, self._handle = connection, handle
        self.__name__ = self.__qualname__ = name
        self.__doc__ = doc

    def __call__(self, *args, **kwargs):
        return self._connection.call(self, args, kwargs)

    def __reduce__(self):
        return (by_handle, (self._handle,))

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        return f"<your function {self.__name__}>"


_HANDLES: dict[int, object] = {}  # handle -> the object: StudentFunctions here, the functions in the worker


def by_handle(handle: int):
    """The object registered for ``handle`` on this side (what a pickled StudentFunction becomes)."""
    return _HANDLES[handle]


class Connection:
    """The trusted kernel's end of the channel to the student's worker."""

    def __init__(self, path: str):
        deadline = time.monotonic() + _CONNECT_SECONDS
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise StudentCodeError(
                        f"the student's worker did not start within {_CONNECT_SECONDS:g} s") from None
                time.sleep(0.05)
        self.sock, self.broken, self.shown = sock, None, 0
        self.poller = channel.Poller(cap=0.0005)
        self.answered: collections.OrderedDict = collections.OrderedDict()  # call digest -> reply
        self.answered_bytes = 0

    def run_cell(self, index: int, namespace: dict) -> None:
        """Run student cell ``index`` in the worker and bind what it defined into ``namespace``."""
        header, buffers = self._ask({"op": "cell", "index": index}, [pickle.dumps(plain_globals(namespace))])
        self._show(header.get("output", ""))
        names = header.get("names")
        if names is None:  # the request itself failed
            _raise_if_failed(header)
        if not isinstance(names, dict):
            raise channel.ChannelError("malformed reply")
        for name, bound in names.items():
            if not isinstance(bound, dict) or not str(name).isidentifier():
                raise channel.ChannelError("malformed reply")
            if "function" in bound:
                handle = bound["function"]
                if type(handle) is not int:
                    raise channel.ChannelError("malformed reply")
                fn = StudentFunction(self, handle, str(name), str(bound.get("doc") or "") or None)
                _HANDLES[handle] = fn
                namespace[name] = fn
            elif "value" in bound:
                namespace[name] = channel.decode(bound["value"], buffers)
            else:
                namespace.pop(name, None)
                print(f"{name}: {str(bound.get('error'))[:200]}")
        _raise_if_failed(header)

    def call(self, fn: StudentFunction, args: tuple, kwargs: dict):
        """``fn(*args, **kwargs)`` in the worker; in-place changes to tensors, arrays and modules among the
        arguments copied back; the result decoded as data."""
        key = None
        try:  # data (arrays, tensors, numbers) as data; modules and the like pickled
            tree, buffers = channel.encode((args, kwargs))
            request = {"op": "call", "handle": fn._handle, "args": tree}
            key = _digest(request, buffers)
        except channel.UnsendableError:
            try:
                buffers = [pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)]
            except Exception as exc:  # e.g. a module holding a lambda
                raise TypeError(f"cannot send the arguments to your {fn.__name__}: {exc}") from None
            request = {"op": "call", "handle": fn._handle}
        if key in self.answered:  # the same function on the same data: its answer again
            self.answered.move_to_end(key)
            header, buffers = self.answered[key]
        else:
            header, buffers = self._ask(request, buffers)
            self._show(header.get("output", ""))
            if key is not None and "error" not in header:
                self._remember(key, header, buffers)
        _raise_if_failed(header)
        changed = header.get("changed", [])
        leaves = mutable_leaves((args, kwargs)) if changed else []
        for entry in changed:
            if not (isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int
                    and 0 <= entry[0] < len(leaves)):
                raise channel.ChannelError("malformed reply")
            copy_into(leaves[entry[0]], channel.decode(entry[1], buffers), fn.__name__)
        return channel.decode(header.get("result"), buffers)

    def _ask(self, header: dict, payload: list[bytes]) -> tuple[dict, list[bytes]]:
        if self.broken:
            raise StudentCodeError(f"your code no longer answers: {self.broken}")
        try:
            channel.send(self.sock, header, payload)
            self.poller.wait(self.sock)
            reply, buffers = channel.recv(self.sock)
        except KeyboardInterrupt:  # the cell's time-out: the worker may still be busy with this call
            self._break("an earlier call was interrupted at the time limit")
            raise
        except (OSError, channel.ChannelError) as exc:
            self._break(f"the channel to it failed ({exc})")
            raise StudentCodeError(f"your code no longer answers: {self.broken}") from None
        return reply, buffers

    def _remember(self, key: bytes, header: dict, buffers: list[bytes]) -> None:
        """Keep a reply for :data:`ANSWERED_BYTES` at most, the least recently used dropped first."""
        size = sum(len(b) for b in buffers)
        self.answered[key] = (header, buffers)
        self.answered_bytes += size
        while self.answered_bytes > ANSWERED_BYTES and self.answered:
            _, (_, old) = self.answered.popitem(last=False)
            self.answered_bytes -= sum(len(b) for b in old)

    def _break(self, why: str) -> None:
        self.broken = why
        self.sock.close()

    def _show(self, text) -> None:
        if not isinstance(text, str) or not text:
            return
        left = OUTPUT_BUDGET - self.shown
        if left > 0:
            sys.stdout.write(text[:left])
            if len(text) > left:
                sys.stdout.write("\n[the rest of your code's output is not shown]\n")
        self.shown += len(text)


ANSWERED_BYTES = 64 * 2**20


def _digest(request: dict, buffers: list[bytes]) -> bytes:
    """What identifies a call on data: the function, the arguments' structure and their bytes."""
    h = hashlib.blake2b(json.dumps(request, sort_keys=True).encode(), digest_size=20)
    for b in buffers:
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.digest()


def _raise_if_failed(header: dict) -> None:
    error = header.get("error")
    if error is None:
        return
    if not isinstance(error, dict):
        raise channel.ChannelError("malformed reply")
    kind, message = str(error.get("type", "Exception")), str(error.get("message", ""))[:4000]
    trace = str(error.get("traceback", ""))[-4000:]
    if trace:
        sys.stderr.write(trace)
    builtin = getattr(builtins, kind, None)
    error = StudentCodeError(f"{kind}: {message}")
    if isinstance(builtin, type) and issubclass(builtin, Exception) and builtin.__module__ == "builtins":
        try:
            error = builtin(message)
        except TypeError:  # an exception type whose constructor wants other arguments
            pass
    raise error


_CONNECTION: Connection | None = None


def run_cell(index: int, namespace: dict) -> None:
    """What student cell ``index`` is in the trusted notebook (see the module docstring)."""
    global _CONNECTION
    if _CONNECTION is None:
        path = os.environ.get(SOCKET_ENV)
        if not path:
            raise RuntimeError(f"{SOCKET_ENV} is not set: student cells run only under `labkit grade`")
        _CONNECTION = Connection(path)
    _CONNECTION.run_cell(index, namespace)


# ---- what crosses, and how changes come back --------------------------------------------------------------

_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_PLAIN = (type(None), bool, int, float, complex, str)
_MAX_PLAIN_ITEMS = 1000


def plain_globals(namespace: dict) -> dict:
    """The part of a notebook namespace the student's cells may see: modules (as :class:`ModuleRef`),
    functions and classes importable from a module, and plain settings (see the module docstring)."""
    out = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _IPYTHON_NAMES or isinstance(value, StudentFunction):
            continue
        if isinstance(value, types.ModuleType):
            out[name] = ModuleRef(value.__name__)
        elif _importable(value) or _plain(value, [0]):
            out[name] = value
    return out


def _importable(value) -> bool:
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__" \
            or "<" in qualname or module not in sys.modules:
        return False
    found = sys.modules[module]
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is value


def _plain(value, count: list) -> bool:
    count[0] += 1
    if count[0] > _MAX_PLAIN_ITEMS:
        return False
    torch = sys.modules.get("torch")
    if isinstance(value, _PLAIN) or (torch is not None and isinstance(value, (torch.device, torch.dtype))):
        return True
    if type(value) in (tuple, list, set, frozenset):
        return all(_plain(v, count) for v in value)
    if type(value) is dict:
        return all(_plain(k, count) and _plain(v, count) for k, v in value.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _importable(type(value)) and all(_plain(getattr(value, f.name), count)
                                                for f in dataclasses.fields(value))
    return False


def mutable_leaves(value) -> list:
    """The tensors, numpy arrays and torch modules inside ``value`` (through lists, tuples and dict
    values), in a fixed order, one entry per occurrence: what a call may change in place."""
    torch = sys.modules.get("torch")
    found, containers = [], set()

    def walk(v):
        if isinstance(v, (list, tuple, dict)):
            if id(v) in containers:
                return
            containers.add(id(v))
            for x in v.values() if isinstance(v, dict) else v:
                walk(x)
        elif isinstance(v, np.ndarray) or (torch is not None
                                           and isinstance(v, (torch.Tensor, torch.nn.Module))):
            found.append(v)

    walk(value)
    return found


def copy_into(target, new, function: str) -> None:
    """Copy ``new`` (decoded data) into the caller's ``target`` (a tensor, array or module: then ``new``
    is ``{state_dict key: tensor}``); TypeError if it does not fit."""
    torch = sys.modules.get("torch")

    def fit(old, got, where):
        if tuple(got.shape) != tuple(old.shape) or str(got.dtype) != str(old.dtype):
            raise TypeError(f"your {function} changed {where} to shape {tuple(got.shape)}, dtype "
                            f"{got.dtype}; allowed is a change in place (shape {tuple(old.shape)}, dtype "
                            f"{old.dtype})")

    if torch is not None and isinstance(target, torch.nn.Module):
        state = target.state_dict(keep_vars=True)
        if not isinstance(new, dict) or not set(new) <= set(state):
            raise TypeError(f"your {function} added tensors to a module: allowed is changing its tensors")
        with torch.no_grad():
            for key, got in new.items():
                if not isinstance(got, torch.Tensor):
                    raise channel.ChannelError("malformed reply")
                fit(state[key], got, key)
                state[key].data.copy_(got.to(state[key].device))
    elif torch is not None and isinstance(target, torch.Tensor):
        if not isinstance(new, torch.Tensor):
            raise channel.ChannelError("malformed reply")
        fit(target, new, "an argument")
        with torch.no_grad():
            target.data.copy_(new.to(target.device))
    else:
        if not isinstance(new, np.ndarray):
            raise channel.ChannelError("malformed reply")
        fit(target, new, "an argument")
        target[...] = new
