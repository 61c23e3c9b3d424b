"""The functions students write in the notebooks, as labkit implements them for its own runs.

labkit needs its own implementation of several blanks (Lab 3 starts from labkit's global pruning, the
sensitivity scans prune with labkit's function by default). Each is marked ``@student_writes("NN_lab")``:
it works as usual in the notebook and in the trusted kernel of ``labkit grade``, but the student's worker
sees a copy of labkit in which the body of every marked function is a ``raise`` (:func:`blanked_source`,
bound over the real module by :func:`labkit.sandbox.worker_command`). So a submission cannot hand in
labkit's implementation as its own, and its code cannot read that implementation there either. The
student distribution (:mod:`labkit.distribution`) ships the same blanked bodies for the labs it opens;
``used_by`` names the other labs whose runs call labkit's implementation, so they open only after it.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import dataclass

DECORATOR = "student_writes"


@dataclass(frozen=True)
class Mark:
    """A marked function's notebook (where students write it) and the labs whose runs call labkit's own."""

    notebook: str
    used_by: tuple[str, ...] = ()


def student_writes(notebook: str, *, used_by: tuple[str, ...] = ()):
    """Mark a function as labkit's implementation of a blank that students write in ``notebook``;
    ``used_by``: the other labs whose runs call it (written as literals: read from the source)."""

    def mark(fn):
        fn.__student_writes__ = notebook
        return fn

    return mark


def _mark(node) -> Mark | None:
    if not isinstance(node, ast.FunctionDef):
        return None
    for dec in node.decorator_list:
        name = getattr(dec.func, "id", getattr(dec.func, "attr", None)) if isinstance(dec, ast.Call) else None
        if name == DECORATOR and dec.args and isinstance(dec.args[0], ast.Constant):
            used_by = next((ast.literal_eval(k.value) for k in dec.keywords if k.arg == "used_by"), ())
            return Mark(dec.args[0].value, tuple(used_by))
    return None


def marked(source: str) -> dict[str, Mark]:
    """``{function name: its Mark}`` of the top-level functions of a module's ``source`` marked
    ``@student_writes``."""
    return {node.name: mark for node in ast.parse(source).body if (mark := _mark(node))}


def blanked_source(source: str, notebooks: Collection[str] | None = None) -> str | None:
    """``source`` with the body of each marked top-level function (its docstring kept) replaced by a
    ``raise NotImplementedError`` that names the notebook; only the functions of ``notebooks`` (None:
    all); None when none is blanked. Every other line stays where it was, so tracebacks and line numbers
    still match."""
    lines = source.splitlines(keepends=True)
    blanked = False
    for node in reversed(ast.parse(source).body):
        mark = _mark(node)
        if mark is None or (notebooks is not None and mark.notebook not in notebooks):
            continue
        notebook = mark.notebook
        body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
        first, last = body[0].lineno - 1, node.end_lineno
        indent = " " * body[0].col_offset
        message = (f"{node.name} is yours to write in notebook {notebook}: labkit's own is not available "
                   "to submitted code")
        raise_line = f"{indent}raise NotImplementedError({message!r})\n"
        lines[first:last] = [raise_line] + ["\n"] * (last - first - 1)
        blanked = True
    return "".join(lines) if blanked else None
