"""kill -9 at random points of each command that writes (train, run, release, grade), as a TA's Ctrl-\\ or an
out-of-memory killer would: after each kill nothing the command started still runs and every file under
its output folder is whole (the earlier one or the new one); after the last kill an undisturbed rerun into
the same folder gives the undisturbed run's results and leaves no temporary behind.

The kill times are stratified over the undisturbed run's duration (one random point in each twentieth), so
every phase is hit: start-up, training or the kernel's cells, the writes at the end. Each kill is followed by
the next run into the same folder, so each also starts from what the killed one left."""

import copy
import json
import random
import signal
import subprocess
import sys
import time

import nbformat
import pytest
import torch
from processes import alive, descendants

from labkit import autograde, checkpoints

pytestmark = pytest.mark.slow

KILLS = 20


def _labkit(argv, cwd, wait: float | None = None):
    """Run ``labkit ARGV``; with ``wait``, kill -9 it after that many seconds (the process and its children
    at that moment: the ones that must not outlive it) instead of letting it end."""
    command = [sys.executable, "-m", "labkit.cli", *map(str, argv)]
    if wait is None:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (argv, done.stdout[-1500:], done.stderr[-1500:])
        return None
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(wait)
    below = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return below


def _whole(folder) -> None:
    """Every file under ``folder`` but the hidden ones (temporaries, the writer lock) reads as its kind."""
    for path in folder.rglob("*"):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix == ".ipynb":
            nbformat.validate(nbformat.read(path, as_version=4))
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl" or path.name.endswith(".journal"):
            for line in path.read_text().splitlines():
                json.loads(line)
        elif path.suffix == ".csv":
            autograde.read_csv(path)
        elif path.suffix == ".pt":
            checkpoints.load_checkpoint(path)
        elif path.suffix == ".html":
            assert path.read_text().rstrip().endswith("</html>"), path
        else:
            raise AssertionError(f"{path}: a file of a kind this test does not know")


def _hidden(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if not p.name.endswith(".lock"))


def _kill_and_rerun(argv_into, tmp_path, seed: int):
    """The undisturbed run into ``ref``, then KILLS killed runs and one whole run into ``out``; returns
    ``(ref, out)`` after checking what every kill left."""
    ref, out = tmp_path / "ref", tmp_path / "out"
    start = time.monotonic()
    _labkit(argv_into(ref), tmp_path)
    duration = time.monotonic() - start
    rng = random.Random(seed)
    for i in range(KILLS):
        at = duration * (i + rng.random()) / KILLS
        below = _labkit(argv_into(out), tmp_path, wait=at)
        deadline = time.monotonic() + 20
        while alive(below) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(below), f"kill {i} at {at:.1f} s left {sorted(alive(below))} running"
        if out.exists():
            _whole(out)
    _labkit(argv_into(out), tmp_path)
    _whole(out)
    assert _hidden(out) == [], "a temporary of a killed run was left behind"
    return ref, out


def _weights(path):
    return checkpoints.load_checkpoint(path)[0]


def test_train_killed_anywhere_leaves_no_half_checkpoint(tmp_path):
    ref, out = _kill_and_rerun(lambda folder: ["train", "lenet-300-100", "--dataset", "fashion-mnist-mini",
                                               "--epochs", "1", "--out", folder / "model.pt"],
                               tmp_path, seed=1)
    a, b = _weights(ref / "model.pt"), _weights(out / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _results(folder):
    return [(r["question"], r["status"], r["points"]) for r in
            map(json.loads, (folder / "01_sparse_linear.results.jsonl").read_text().splitlines())]


def test_run_killed_anywhere_leaves_its_earlier_results_or_none(tmp_path):
    ref, out = _kill_and_rerun(lambda folder: ["run", "01_sparse_linear", "--out", folder], tmp_path, seed=2)
    assert _results(out) == _results(ref) and len(_results(ref)) > 10


def test_release_killed_anywhere_leaves_whole_files(tmp_path):
    ref, out = _kill_and_rerun(lambda folder: ["release", "01_sparse_linear", "--out", folder,
                                               "--no-validate"], tmp_path, seed=3)
    for notebook in ("student/01_sparse_linear.ipynb", "instructor/01_sparse_linear.ipynb"):
        assert (out / notebook).read_bytes() == (ref / notebook).read_bytes()
    for name in ("01_sparse_linear.quick.json", "01_sparse_linear.full.json"):
        a, b = (json.loads((folder / "instructor" / "references" / name).read_text())["questions"]
                for folder in (ref, out))
        assert a.keys() == b.keys()
        for q in a:  # hidden cases are drawn afresh by each release: the same questions have them
            assert ("hidden_cases" in a[q]) == ("hidden_cases" in b[q])
            assert {k: v for k, v in a[q].items() if k != "hidden_cases"} == \
                   {k: v for k, v in b[q].items() if k != "hidden_cases"}


def test_grade_killed_anywhere_resumes_to_the_undisturbed_grades(tmp_path):
    subs = tmp_path / "class"
    subs.mkdir()
    nbformat.write(copy.deepcopy(autograde.load_material("01_sparse_linear").notebook),
                   subs / "alice_01_sparse_linear.ipynb")
    ref, out = _kill_and_rerun(lambda folder: ["grade", subs, "--csv", folder / "grades.csv", "--feedback",
                                               folder / "feedback", "--timeout", "120", "--resume"],
                               tmp_path, seed=4)

    def grades(folder):
        return [(r.submission, r.question, r.status, r.points)
                for r in autograde.read_csv(folder / "grades.csv")]

    assert grades(out) == grades(ref)
    assert sorted(p.name for p in (out / "feedback").rglob("*.html")) == ["alice_01_sparse_linear.html"]
