"""The student's worker and the trusted kernel's proxies (labkit.student_code), without Jupyter: what a
student's cell binds, what crosses back from a call, and what the worker's sandbox stops."""

import os
import subprocess
import time

import numpy as np
import pytest
import torch

from labkit import autograde, cells, cli, runner, sandbox, student_code

pytestmark = pytest.mark.skipif(sandbox.available() is not None, reason="bubblewrap is not installed")

CELLS = [
    # 0: a solution cell that also tampers with everything it can import
    '''import labkit.grading, numpy
labkit.grading.Checker.check = labkit.grading.Answerer.check = lambda *a, **k: None
numpy.array_equal = lambda *a, **k: True
ANSWER = True
HELPER_NOT_ANSWERED = 3

def prune(layer, q):
    """Zero the smallest q% of layer.weight in place."""
    w = layer.weight.data
    k = int(w.numel() * q / 100)
    if k:
        w.view(-1)[w.abs().view(-1).argsort()[:k]] = 0

def scale(x, by):
    x *= by
    return None

def look(x):
    return x.sum()

def boom(x):
    raise NotImplementedError("not yet")

def odd(x):
    class Mine(Exception):
        pass
    raise Mine("custom")

def weird(x):
    return object()

def chatty(n):
    print("x" * n)
    return n

CALLS = [0]

def counted(x):
    CALLS[0] += 1
    return CALLS[0]

def uses_settings():
    return STEP * 2, str(device), np.zeros(2).dtype.name
''',
    # 1: an endless loop, and what the sandbox stops
    '''def forever():
    while True:
        pass

def escape(path):
    import os, socket
    out = {}
    for name, attempt in {"write": lambda: open(path, "w").write("pwned"),
                          "net": lambda: socket.create_connection(("127.0.0.1", 22), timeout=1),
                          "proc": lambda: [p for p in os.listdir("/proc") if p.isdigit()],
                          "home": lambda: os.listdir("/root"),
                          "fork": lambda: [os.fork() or os._exit(0) for _ in range(500)]}.items():
        try:
            out[name] = str(attempt())[:200]
        except Exception as exc:
            out[name] = "stopped: " + type(exc).__name__
    return out

def fill():
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(b"x" * 2**20)
    except OSError as exc:
        return str(exc)
''',
]
NAMES = ["ANSWER", "prune", "scale", "look", "boom", "odd", "weird", "chatty", "uses_settings", "counted",
         "forever",
         "escape", "fill"]


@pytest.fixture(scope="module")
def connected(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("worker")
    folder, channel_dir = tmp / "worker", tmp / "channel"
    folder.mkdir()
    channel_dir.mkdir()
    (folder / "cells.json").write_text(__import__("json").dumps(
        [{"id": f"c{i}", "source": s, "names": NAMES} for i, s in enumerate(CELLS)]))
    worker = autograde.start_worker(folder, channel_dir / "s.sock", timeout=5, sandbox=True,
                                    memory=4 * 2**30)
    connection = student_code.Connection(str(channel_dir / "s.sock"))
    namespace = {"np": np, "STEP": 0.25, "device": torch.device("cpu"), "net": torch.nn.Linear(3, 3)}
    connection.run_cell(0, namespace)
    yield connection, namespace, tmp
    worker.stop()


def test_a_cell_binds_only_the_answer_names_and_tampering_stays_in_the_worker(connected):
    _, ns, _ = connected
    import labkit.grading

    assert ns["ANSWER"] is True and "HELPER_NOT_ANSWERED" not in ns
    assert isinstance(ns["prune"], student_code.StudentFunction) and ns["prune"].__name__ == "prune"
    assert ns["prune"].__doc__.startswith("Zero the smallest")
    assert labkit.grading.Checker.check.__name__ == "check" and not np.array_equal(np.zeros(1), np.ones(1))


def test_a_module_changed_in_place_is_copied_back_into_the_callers_own_parameters(connected):
    _, ns, _ = connected
    layer = torch.nn.Linear(4, 5)
    weight, bias = layer.weight, layer.bias.detach().clone()
    assert ns["prune"](layer, 50) is None
    assert layer.weight is weight and int((layer.weight == 0).sum()) == 10  # the same Parameter, pruned
    assert torch.equal(layer.bias, bias)


def test_tensors_and_arrays_changed_in_place_come_back_and_results_are_data(connected):
    _, ns, _ = connected
    t, a = torch.ones(3), np.ones(2)
    ns["scale"](t, 3.0)
    ns["scale"](a, 2.0)
    assert torch.equal(t, torch.full((3,), 3.0)) and np.array_equal(a, [2.0, 2.0])
    got = ns["look"](torch.arange(4.0))
    assert isinstance(got, torch.Tensor) and got.item() == 6.0


def test_errors_keep_builtin_types_and_anything_else_is_a_student_code_error(connected):
    _, ns, _ = connected
    with pytest.raises(NotImplementedError, match="not yet"):
        ns["boom"](1)
    with pytest.raises(student_code.StudentCodeError, match="Mine: custom"):
        ns["odd"](1)
    with pytest.raises(TypeError, match="weird returned a value of type builtins.object"):
        ns["weird"](1)


def test_cells_see_the_notebooks_plain_settings_and_modules(connected):
    _, ns, _ = connected
    assert ns["uses_settings"]() == (0.5, "cpu", "float64")


def test_output_is_bounded(connected, capsys):
    _, ns, _ = connected
    assert ns["chatty"](10**7) == 10**7
    assert len(capsys.readouterr().out) <= student_code.OUTPUT_BUDGET + 100


def test_the_sandbox_stops_writes_network_other_processes_home_and_fork_bombs(connected):
    connection, ns, tmp = connected
    target = tmp / "outside.txt"
    connection.run_cell(1, ns)
    out = ns["escape"](str(target))
    assert not target.exists() and out["write"].startswith("stopped")
    assert out["net"].startswith("stopped") and out["home"] in ("[]", "['.pyenv']") or \
        out["home"].startswith("stopped")
    assert set(eval(out["proc"])) <= {"1", "2"}  # bwrap's init and the worker: no host process table
    assert out["fork"].startswith("stopped")
    assert "No space left" in ns["fill"]()


def test_an_endless_call_is_stopped_at_its_time_limit(connected):
    _, ns, _ = connected
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        ns["forever"]()
    assert time.monotonic() - start < 10
    assert ns["look"](torch.ones(2)).item() == 2.0  # and the worker answers again


def test_a_kernel_that_cannot_start_stops_grading_with_the_cause(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "python_paths", lambda: [])  # no Python inside the sandbox
    with pytest.raises(sandbox.SandboxError, match="cannot start in the sandbox"):
        sandbox.preflight(tmp_path)
    lab1 = str(runner.NOTEBOOKS / "01_sparse_linear.ipynb")
    assert cli.main(["grade", lab1, "--csv", str(tmp_path / "scores.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("labkit grade: error: ") and "cannot start in the sandbox" in err[-1]
    assert not (tmp_path / "scores.csv").exists()


def test_restore_marks_exactly_the_students_cells():
    nb = autograde.load_material("01_sparse_linear").notebook
    import copy

    import nbformat

    sub = copy.deepcopy(nb)
    sub.cells.insert(4, nbformat.v4.new_code_cell("x = 1", metadata={cells.STUDENT: False}))
    graded, _ = cells.restore(nb, sub)
    marked = [c.source for c in graded.cells if cells.is_student(c)]
    assert "x = 1" in marked and len(marked) == 1 + sum(
        cells.is_solution(c) for c in nb.cells if c.cell_type == "code")
    assert cells.solution_names(nb) == ["gradient", "project_topk", "soft_threshold",
                                        "trimmed_soft_threshold"]


def test_a_worker_started_without_a_sandbox_still_cannot_reach_the_trusted_kernel(tmp_path):
    (tmp_path / "cells.json").write_text('[{"id": "a", "source": "import os\\nPID = os.getpid()", '
                                         '"names": ["PID"]}]')
    worker = autograde.start_worker(tmp_path, tmp_path / "s.sock", 5, sandbox=False,
                                    memory=4 * 2**30)
    try:
        ns = {}
        student_code.Connection(str(tmp_path / "s.sock")).run_cell(0, ns)
        assert ns["PID"] != os.getpid()
    finally:
        worker.stop()
    assert subprocess.run(["kill", "-0", str(worker.process.pid)], capture_output=True).returncode != 0


def test_a_call_on_equal_data_gets_its_answer_again_and_its_changes_replayed(connected):
    _, ns, _ = connected
    first = ns["counted"](np.arange(3.0))
    assert ns["counted"](np.arange(3.0)) == first and ns["counted"](np.arange(4.0)) == first + 1
    t1, t2 = torch.ones(3), torch.ones(3)
    ns["scale"](t1, 5.0)
    ns["scale"](t2, 5.0)  # answered from memory: the in-place change is applied again
    assert torch.equal(t2, torch.full((3,), 5.0))
