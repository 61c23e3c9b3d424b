"""The student's side of ``labkit grade``: one process, in its own sandbox, that runs a submission's cells
and calls its functions for the trusted kernel (:mod:`labkit.student_code`).

    python -m labkit.student_worker SOCKET CELLS.json CALL_SECONDS

It listens on the Unix socket ``SOCKET`` for one connection, then answers two requests until the peer
closes: ``cell`` (run the ``index``-th student cell of ``CELLS.json`` in the student's namespace, after the
notebook's plain globals the request carries; reply with the printed output and, of the names the cell
may define, the functions as handles and the values as data) and ``call`` (run a function by handle on
pickled arguments; reply with its result as data and the tensors, arrays and modules it changed in place).
A request runs at most ``CALL_SECONDS`` (an alarm, which code that blocks signals can outlast; the trusted
kernel's own time-out is the bound then). Whatever the student's code does here stays here: its process,
its output (kept to ``OUTPUT_LIMIT`` characters a request) and its sandbox's folder.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pickle
import signal
import socket
import sys
import traceback

from labkit import channel, student_code

OUTPUT_LIMIT = 64 * 1024


class TimeLimit(BaseException):
    """A request ran past its time limit (a BaseException, so ``except Exception`` does not swallow it)."""


class _Bounded(io.TextIOBase):
    """A text stream that keeps its first ``OUTPUT_LIMIT`` characters."""

    def __init__(self):
        self.parts, self.size = [], 0

    def write(self, text):
        text = str(text)
        if self.size < OUTPUT_LIMIT:
            self.parts.append(text[:OUTPUT_LIMIT - self.size])
        self.size += len(text)
        return len(text)

    def text(self) -> str:
        more = "\n[output cut]\n" if self.size > OUTPUT_LIMIT else ""
        return "".join(self.parts) + more


class _NoIPython:
    """``get_ipython()`` for cells that use magics: they do nothing here."""

    def run_line_magic(self, *args, **kwargs):
        return None

    run_cell_magic = system = getoutput = run_line_magic


class Worker:
    def __init__(self, cells: list[dict], call_seconds: float):
        self.cells, self.call_seconds = cells, call_seconds
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__,
                          "get_ipython": _NoIPython, "display": print}
        self.handles: dict[int, object] = {}
        student_code._HANDLES = self.handles  # a pickled StudentFunction becomes the function itself

    def serve(self, sock: socket.socket) -> None:
        poller = channel.Poller(cap=0.0005)
        while True:
            poller.wait(sock)
            try:
                header, buffers = channel.recv(sock)
            except channel.ChannelError:
                return
            reply, out = self.handle(header, buffers)
            try:
                channel.send(sock, reply, out)
            except channel.UnsendableError as exc:
                channel.send(sock, {"error": {"type": "TypeError", "message": str(exc)}})

    def handle(self, header: dict, buffers: list[bytes]) -> tuple[dict, list[bytes]]:
        output = _Bounded()
        op = header.get("op")
        try:
            payload = (channel.decode(header["args"], buffers) if "args" in header
                       else pickle.loads(buffers[0]))
            with _limits(self.call_seconds), contextlib.redirect_stdout(output), \
                    contextlib.redirect_stderr(output):
                if op == "cell":
                    return self.cell(int(header["index"]), payload, output)
                if op == "call":
                    return self.call(int(header["handle"]), *payload, output)
            return {"error": {"type": "ValueError", "message": f"unknown request {op!r}"}}, []
        except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything at all
            return {"output": output.text(), "error": _error(exc)}, []

    def cell(self, index: int, plain: dict, output: _Bounded) -> tuple[dict, list[bytes]]:
        for name, value in plain.items():
            self.namespace[name] = (importlib.import_module(value.name)
                                    if isinstance(value, student_code.ModuleRef) else value)
        cell = self.cells[index]
        before = {name: self.namespace.get(name) for name in cell["names"]}
        error = None
        try:
            exec(compile(_python(cell["source"]), f"<your cell {cell['id']}>", "exec"), self.namespace)
        except BaseException as exc:  # noqa: BLE001 - reported to the trusted kernel as the cell's error
            error = _error(exc)
        names, data = {}, {}
        for name in cell["names"]:
            value = self.namespace.get(name, _MISSING)
            if value is _MISSING or value is before[name]:
                continue
            if callable(value):
                handle = len(self.handles) + 1
                self.handles[handle] = value
                names[name] = {"function": handle, "doc": (getattr(value, "__doc__", None) or "")[:2000]}
            else:
                data[name] = value
        buffers = []
        for name, value in data.items():
            try:
                encoded, extra = channel.encode(value)
            except channel.UnsendableError as exc:
                names[name] = {"error": f"cannot be graded: {exc}"}
                continue
            names[name] = {"value": _shift(encoded, len(buffers))}
            buffers += extra
        return {"output": output.text(), "names": names, "error": error}, buffers

    def call(self, handle: int, args: tuple, kwargs: dict, output: _Bounded) -> tuple[dict, list[bytes]]:
        fn = self.handles[handle]
        leaves = student_code.mutable_leaves((args, kwargs))
        before = [_snapshot(leaf) for leaf in leaves]
        result = fn(*args, **kwargs)
        changed = [(i, state) for i, (leaf, old) in enumerate(zip(leaves, before, strict=True))
                   if (state := _changes(leaf, old)) is not None]
        try:
            encoded, buffers = channel.encode(result)
        except channel.UnsendableError as exc:
            raise TypeError(f"{getattr(fn, '__name__', 'your function')} returned {exc}; allowed are "
                            "None, numbers, strings, lists, tuples, dicts, numpy arrays and torch tensors"
                            ) from None
        entries = []
        for i, state in changed:
            tree, extra = channel.encode(state)
            entries.append([i, _shift(tree, len(buffers))])
            buffers += extra
        return {"output": output.text(), "result": encoded, "changed": entries}, buffers


_MISSING = object()


def _python(source: str) -> str:
    """A cell's source as plain Python (IPython's magics turned into ``get_ipython()`` calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return source
    return TransformerManager().transform_cell(source)


def _snapshot(leaf):
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(leaf, torch.nn.Module):
        return {k: v.detach().clone() for k, v in leaf.state_dict().items()}
    if torch is not None and isinstance(leaf, torch.Tensor):
        return leaf.detach().clone()
    return leaf.copy()


def _changes(leaf, old):
    """What of ``leaf`` differs from its snapshot ``old`` (a module: the changed state_dict entries),
    or None."""
    torch = sys.modules.get("torch")

    def same(a, b):
        if torch is not None and isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and bool(
                torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                      and torch.equal(a.nan_to_num(), b.nan_to_num())))
        # bytes, not numpy's comparison: equal NaNs are equal, and a patched numpy changes nothing here
        return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()

    if torch is not None and isinstance(leaf, torch.nn.Module):
        now = {k: v.detach() for k, v in leaf.state_dict().items()}
        diff = {k: v for k, v in now.items() if k not in old or not same(v, old[k])}
        return diff or None
    now = leaf.detach() if torch is not None and isinstance(leaf, torch.Tensor) else leaf
    return None if same(now, old) else now


def _shift(tree, offset: int):
    """``tree`` with its buffer indices moved by ``offset`` (several encoded values in one message)."""
    if isinstance(tree, dict):
        if "$array" in tree:
            return {**tree, "$array": tree["$array"] + offset}
        return {k: _shift(v, offset) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_shift(v, offset) for v in tree]
    return tree


def _error(exc: BaseException) -> dict:
    frames = traceback.extract_tb(exc.__traceback__)
    theirs = [f for f in frames if f.filename.startswith("<your cell")] or frames[-1:]
    text = "".join(traceback.format_list(theirs)) + "".join(traceback.format_exception_only(type(exc), exc))
    kind = "TimeoutError" if isinstance(exc, TimeLimit) else type(exc).__name__
    return {"type": kind, "message": str(exc)[:4000], "traceback": text[-4000:]}


_LIMIT = [0.0]  # seconds of the request running now


def _alarm(*_):
    raise TimeLimit(f"your code ran past {_LIMIT[0]:g} s")


@contextlib.contextmanager
def _limits(seconds: float):
    _LIMIT[0] = seconds
    if signal.getsignal(signal.SIGALRM) is not _alarm:  # set again if the student's code replaced it
        signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(argv: list[str]) -> None:
    path, cells_path, seconds = argv
    cells = json.loads(open(cells_path).read())
    worker = Worker(cells, float(seconds))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".new")
    server.listen(1)
    os.rename(path + ".new", path)  # the trusted kernel connects only once the worker listens
    sock, _ = server.accept()
    server.close()
    os.unlink(path)
    # what the student's code writes to the process's own stdout / stderr goes nowhere
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    worker.serve(sock)


if __name__ == "__main__":
    main(sys.argv[1:])
