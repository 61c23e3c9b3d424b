"""The functions students write in the notebooks, as labkit implements them for its own runs.

labkit needs its own implementation of several blanks (Lab 3 starts from labkit's global pruning, the
sensitivity scans prune with labkit's function by default). Each is marked ``@student_writes("NN_lab")``:
it works as usual in the notebook and in the trusted kernel of ``labkit grade``, but the student's worker
sees a copy of labkit in which the body of every marked function is a ``raise`` (:func:`blanked_source`,
bound over the real module by :func:`labkit.sandbox.worker_command`). So a submission cannot hand in
labkit's implementation as its own, and its code cannot read that implementation there either.
"""

from __future__ import annotations

import ast

DECORATOR = "student_writes"


def student_writes(notebook: str):
    """Mark a function as labkit's implementation of a blank that students write in ``notebook``."""

    def mark(fn):
        fn.__student_writes__ = notebook
        return fn

    return mark


def _notebook(node: ast.FunctionDef) -> str | None:
    for dec in node.decorator_list:
        name = getattr(dec.func, "id", getattr(dec.func, "attr", None)) if isinstance(dec, ast.Call) else None
        if name == DECORATOR:
            if dec.args and isinstance(dec.args[0], ast.Constant) and isinstance(dec.args[0].value, str):
                return dec.args[0].value
    return None


def marked(source: str) -> dict[str, str]:
    """``{function name: notebook}`` of the top-level functions of a module's ``source`` marked
    ``@student_writes``."""
    return {node.name: nb for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and (nb := _notebook(node))}


def blanked_source(source: str) -> str | None:
    """``source`` with the body of each marked top-level function (its docstring kept) replaced by a
    ``raise NotImplementedError`` that names the notebook; None when nothing is marked. Every other line
    stays where it was, so tracebacks and line numbers still match."""
    lines = source.splitlines(keepends=True)
    blanked = False
    for node in reversed(ast.parse(source).body):
        notebook = isinstance(node, ast.FunctionDef) and _notebook(node)
        if not notebook:
            continue
        body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
        first, last = body[0].lineno - 1, node.end_lineno
        indent = " " * body[0].col_offset
        message = (f"{node.name} is yours to write in notebook {notebook}: labkit's own is not available "
                   "to submitted code")
        raise_line = f"{indent}raise NotImplementedError({message!r})\n"
        lines[first:last] = [raise_line] + ["\n"] * (last - first - 1)
        blanked = True
    return "".join(lines) if blanked else None
