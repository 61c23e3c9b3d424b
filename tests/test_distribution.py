"""The student distribution (labkit.distribution): no answer in it, and a student's code runs against it."""

import json
import subprocess
import sys

import nbformat
import pytest
from test_student_grading import with_function

import labkit
from labkit import cells, distribution, runner
from labkit.results import Result, Status

OPEN = ["00_concepts", "01_sparse_linear"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return distribution.write_distribution(tmp_path_factory.mktemp("d") / "student-kit", OPEN)


def in_dist(dist, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` with the distribution's labkit (as an installed copy would be imported)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=dist,
                          env={"PYTHONPATH": str(dist), "LABKIT_HOME": str(dist), "PATH": "/usr/bin:/bin"})


def test_the_open_labs_blanks_raise_and_their_runs_need_the_students_functions(dist):
    code = """import numpy as np
from labkit import sparse
X, y = np.eye(3), np.ones(3)
for call in (lambda: sparse.gradient(X, y, np.zeros(3)), lambda: sparse._trimmed(np.ones(3), 0.1, 1),
             lambda: sparse.run(X, y, sparse.handout_methods(3)), lambda: sparse.gd(X, y)):
    try:
        call()
        print("answered")
    except NotImplementedError as e:
        print("raised", "01_sparse_linear" in str(e))
print(sparse.gd(X, y, gradient=lambda X, y, W: 2 * (X @ W - y) @ X, steps=3).W.shape)
"""
    done = in_dist(dist, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:5] == ["raised True"] * 4 + ["(4, 3)"]


def test_a_closed_labs_functions_stay_labkits(dist):
    code = ("import torch\nfrom labkit import prune\nlayer = torch.nn.Linear(10, 10)\n"
            "print(int(prune.prune_by_percentage(layer, 50).sum()))")
    done = in_dist(dist, code)
    assert done.returncode == 0 and done.stdout.strip() == "50", done.stderr


def test_no_answer_in_any_student_file(dist):
    refs = sorted((dist / "labkit" / "references").glob("*.json"))
    assert {r.name.split(".")[0] for r in refs} == set(OPEN)
    sealed = 0
    for ref in refs:
        for q, entry in json.loads(ref.read_text())["questions"].items():
            assert "hidden_cases" not in entry, (ref.name, q)
            if entry.get("sealed"):
                sealed += 1
                assert "expected" not in entry, (ref.name, q)
    assert sealed == 10  # the ten True/False verdicts of 00
    notebooks = sorted((dist / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in notebooks] == OPEN
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        assert cells.BEGIN not in text and cells.END not in text
        assert nb.cells[0].source == runner.colab_setup_source()
        assert labkit.STUDENT_REPOSITORY in nb.cells[0].source
    verdicts = [c.source for c in nbformat.read(dist / "notebooks" / "00_concepts.ipynb", as_version=4).cells
                if "True or False?" in c.source]
    assert len(verdicts) == 10 and all("= True" not in v and "= False" not in v for v in verdicts)
    assert json.loads((dist / distribution.MANIFEST).read_text())["open_labs"] == OPEN


def test_labs_whose_runs_use_anothers_blanks_cannot_open_together(tmp_path):
    with pytest.raises(ValueError, match="global_prune_by_percentage .* 03_quantization_resnet20"):
        distribution.write_distribution(tmp_path / "d", ["02_pruning_resnet20", "03_quantization_resnet20"])
    with pytest.raises(ValueError, match="allowed are one or more of"):
        distribution.write_distribution(tmp_path / "d", ["99_nosuch"])
    assert not (tmp_path / "d").exists() and list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_replaced_only_when_it_is_a_distribution(tmp_path, dist):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "homework.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="not a student distribution"):
        distribution.write_distribution(mine, ["01_sparse_linear"])
    assert [p.name for p in mine.iterdir()] == ["homework.ipynb"]
    again = distribution.write_distribution(tmp_path / "again", ["01_sparse_linear"])
    (again / "stale.txt").write_text("from the earlier distribution")
    distribution.write_distribution(again, ["00_concepts"])
    assert not (again / "stale.txt").exists()
    assert json.loads((again / distribution.MANIFEST).read_text())["open_labs"] == ["00_concepts"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no build folder left


def run_in_dist(dist, nb, tmp_path) -> dict[str, Result]:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, path)
    results = tmp_path / "results.jsonl"
    try:
        runner.execute_notebook(path, tmp_path / "out.ipynb", {"PROFILE": "quick"}, timeout=300,
                                env={"PYTHONPATH": str(dist), "LABKIT_HOME": str(dist),
                                     "LABKIT_RESULTS": str(results)})
    except runner.NotebookFailed:
        pass  # a cell that raises: the checks after it still ran
    rows = (Result.from_row(json.loads(line)) for line in results.read_text().splitlines())
    return {r.question: r for r in rows}


@pytest.mark.slow
def test_a_students_notebook_in_the_distribution(dist, tmp_path):
    """01 with labkit's gradient handed in fails that check (and what uses it); 00's verdicts are sealed:
    recorded, never judged or shown in the student's kernel."""
    nb = nbformat.read(runner.resolve_notebook("01_sparse_linear"), as_version=4)
    code = "def gradient(X, y, W):\n    from labkit import sparse\n    return sparse.gradient(X, y, W)\n"
    got = run_in_dist(dist, with_function(nb, "gradient", code), tmp_path / "01")
    assert got["a.gradient"].status is Status.FAILED and "01_sparse_linear" in got["a.gradient"].message
    assert got["c.project_topk"].status is Status.PASSED  # the student's own functions still pass
    assert got["b.W"].status is not Status.PASSED
    got = run_in_dist(dist, nbformat.read(runner.resolve_notebook("00_concepts"), as_version=4),
                      tmp_path / "00")
    verdicts = [r for q, r in got.items() if q in {f"1.{i}" for i in range(1, 11)}]
    assert len(verdicts) == 10
    assert all(r.status is Status.UNGRADED and "sealed" in r.message for r in verdicts)
    out = (tmp_path / "00" / "out.ipynb").read_text()
    assert "expected True" not in out and "expected False" not in out


@pytest.mark.harness
@pytest.mark.parametrize("lab", [p.stem for p in runner.lab_notebooks() if p.stem not in OPEN])
def test_each_labs_solution_passes_every_check_in_its_own_distribution(lab, tmp_path):
    """A student who writes every blank right (the kit's solution) gets every point with only that lab open
    (its blanks, and the helpers that compute them, a raise): no run of the lab needs labkit's answers."""
    dist = distribution.write_distribution(tmp_path / "kit", [lab])
    results = tmp_path / "results.jsonl"
    runner.execute_notebook(runner.resolve_notebook(lab), tmp_path / "out.ipynb", {"PROFILE": "tiny"},
                            timeout=600, env={"PYTHONPATH": str(dist), "LABKIT_HOME": str(dist),
                                              "LABKIT_RESULTS": str(results)})
    got = [Result.from_row(json.loads(line)) for line in results.read_text().splitlines()]
    assert got and [r for r in got if r.status not in (Status.PASSED, Status.UNGRADED)] == []
