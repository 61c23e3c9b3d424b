"""labkit's own implementations of the blanks: marked, and a raise in the student's worker (labkit.blanks)."""

import ast
import importlib
import json
import pkgutil

import nbformat
import numpy as np
import pytest

import labkit
from labkit import autograde, blanks, cells, runner, sandbox, student_code

SOURCE = '''"""A module."""
from labkit.blanks import student_writes


@student_writes("01_sparse_linear")
def gradient(X, y, W):
    """dL/dW."""
    r = X @ W - y
    return 2 * X.T @ r


def helper(x):
    return x + 1
'''


def test_blanked_source_keeps_signature_docstring_and_line_numbers_and_raises():
    text = blanks.blanked_source(SOURCE)
    assert len(text.splitlines()) == len(SOURCE.splitlines())
    assert "X.T" not in text and '"""dL/dW."""' in text and "return x + 1" in text
    namespace: dict = {}
    exec(compile(text, "m.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="gradient is yours to write in notebook 01_sparse_linear"):
        namespace["gradient"](np.eye(2), np.ones(2), np.zeros(2))
    assert namespace["helper"](1) == 2
    assert blanks.blanked_source("def f():\n    return 1\n") is None
    assert blanks.marked(SOURCE) == {"gradient": blanks.Mark("01_sparse_linear")}
    assert blanks.blanked_source(SOURCE, ["02_pruning_resnet20"]) is None  # another lab's: kept


def test_every_blank_labkit_implements_under_its_own_name_is_marked_for_its_notebook():
    modules = [importlib.import_module(f"labkit.{m.name}") for m in pkgutil.iter_modules(labkit.__path__)]
    found = 0
    for nb in runner.lab_notebooks():
        for name in cells.solution_names(nbformat.read(nb, as_version=4)):
            for module in modules:
                fn = getattr(module, name, None)
                if callable(fn) and getattr(fn, "__module__", None) == module.__name__:
                    found += 1
                    assert getattr(fn, "__student_writes__", None) == nb.stem, (module.__name__, name)
    assert found >= 8  # sparse's four, prune's two, sharing's one, codec's one


@pytest.mark.skipif(sandbox.available() is not None, reason="bubblewrap is not installed")
def test_submitted_code_cannot_call_or_read_labkits_implementation(tmp_path):
    cell = '''import inspect
from labkit import prune, quant, sparse


def gradient(X, y, W):
    return sparse.gradient(X, y, W)


def ste_forward(w, bit, symmetric=False):
    return quant.STE.apply(w, bit, symmetric)


def source():
    return inspect.getsource(sparse), open(prune.__file__).read()
'''
    folder, channel_dir = tmp_path / "worker", tmp_path / "channel"
    folder.mkdir()
    channel_dir.mkdir()
    (folder / "cells.json").write_text(json.dumps([{"id": "c", "source": cell,
                                                    "names": ["gradient", "ste_forward", "source"]}]))
    worker = autograde.start_worker(folder, channel_dir / "s.sock", timeout=10, sandbox=True,
                                    memory=4 * 2**30)
    try:
        ns: dict = {}
        student_code.Connection(str(channel_dir / "s.sock")).run_cell(0, ns)
        with pytest.raises(NotImplementedError, match="notebook 01_sparse_linear"):
            ns["gradient"](np.eye(2), np.ones(2), np.zeros(2))
        import torch

        with pytest.raises(NotImplementedError, match="notebook 03_quantization_resnet20"):
            ns["ste_forward"](torch.randn(4, 4), 2)
        for text in ns["source"]():  # the modules are there, the answers are not
            marked = [n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)
                      and n.name in blanks.marked(text)]
            assert marked and all(len(n.body) <= 2 and isinstance(n.body[-1], ast.Raise) for n in marked)
    finally:
        worker.stop()
