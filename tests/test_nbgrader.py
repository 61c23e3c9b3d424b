"""nbgrader itself on the kit's notebooks: ``generate_assignment`` on the source notebook, then
``autograde`` of the solution (full marks) and of the student version nbgrader released (no points), then
``generate_feedback``, in a temporary course folder."""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lab_lists
import nbformat
import pytest

from labkit import runner

pytestmark = pytest.mark.slow  # nbgrader runs the notebooks in Jupyter kernels

NBGRADER = Path(sys.executable).parent / "nbgrader"  # a dev dependency: pip install -e '.[dev]'



def nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{NBGRADER.parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    force = [] if args[0] == "export" else ["--force"]  # export takes no --force
    subprocess.run([str(NBGRADER), *args, *force], cwd=course, env=env, check=True, capture_output=True,
                   timeout=900)


@pytest.mark.parametrize("lab", ["00_concepts", "01_sparse_linear"])
def test_nbgrader_generates_autogrades_and_feeds_back(tmp_path, lab):
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    shutil.copy(runner.resolve_notebook(lab), course / "source" / "ps1")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'labkit'\nc.ExecutePreprocessor.timeout = 600\n")
    nbgrader(course, "generate_assignment", "ps1")
    released = course / "release" / "ps1" / f"{lab}.ipynb"
    assert "BEGIN SOLUTION" not in released.read_text()
    for student, notebook in (("alice", course / "source" / "ps1" / f"{lab}.ipynb"), ("bob", released)):
        folder = course / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        shutil.copy(notebook, folder)
    nbgrader(course, "autograde", "ps1", "--create")
    nbgrader(course, "generate_feedback", "ps1")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        alice, bob = (gb.find_submission("ps1", s) for s in ("alice", "bob"))
        assert alice.max_code_score > 0 and alice.code_score == alice.max_code_score  # answers: by hand
        assert bob.score <= 0.1 * bob.max_score
    assert (course / "feedback" / "alice" / "ps1" / f"{lab}.html").is_file()
    nbgrader(course, "export")  # the gradebook as a CSV: one row per student and assignment
    rows = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open())}
    assert sorted(rows) == ["alice", "bob"] and float(rows["alice"]["score"]) > float(rows["bob"]["score"])


@pytest.mark.parametrize("notebook", runner.lab_notebooks(), ids=lambda p: p.stem)
def test_nbgrader_generates_every_labs_student_version(tmp_path, notebook):
    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    shutil.copy(notebook, course / "source" / "ps1")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'labkit'\n")
    nbgrader(course, "generate_assignment", "ps1")  # e.g. a solution marker quoted in a text cell stops it
    released = (course / "release" / "ps1" / notebook.name).read_text()
    assert "BEGIN SOLUTION" not in released and "YOUR CODE HERE" in released


def test_nbgrader_and_labkit_grade_give_each_question_the_same_points(tmp_path):
    """One question per autograded cell: nbgrader scores a cell all or nothing, so its per-cell points are
    labkit grade's per-question points, for a planted wrong function too (01: the gradient without its
    factor 2, which loses some value checks of a run and keeps others)."""
    from nbgrader.api import Gradebook
    from test_student_grading import planted, with_function

    from labkit import autograde, cells

    lab = "01_sparse_linear"
    _, _, extra = planted(lab)
    name, code, _ = extra["gradient/no-factor-2"]
    wrong = with_function(nbformat.read(runner.resolve_notebook(lab), as_version=4), name, code)
    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    shutil.copy(runner.resolve_notebook(lab), course / "source" / "ps1")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'labkit'\nc.ExecutePreprocessor.timeout = 600\n"
        "c.ExecutePreprocessor.kernel_name = 'labkit'\n")  # the kernelspec `make kernel` installs
    nbgrader(course, "generate_assignment", "ps1")
    folder = course / "submitted" / "dave" / "ps1"
    folder.mkdir(parents=True)
    nbformat.write(wrong, folder / f"{lab}.ipynb")
    nbgrader(course, "autograde", "ps1", "--create")
    ours = {r.question: r.points for r in autograde.grade([folder / f"{lab}.ipynb"], lab=lab) if r.counted}
    source = nbformat.read(runner.resolve_notebook(lab), as_version=4)
    questions = {c.metadata.nbgrader["grade_id"]: cells.questions_in(c.source)
                 for c in source.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")
                 and c.cell_type == "code"}
    assert all(len(qs) == 1 for qs in questions.values())
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        theirs = {qs[0]: gb.find_grade(cell, lab, "ps1", "dave").score for cell, qs in questions.items()}
    assert theirs == {q: ours[q] for q in theirs}
    most = sum(e["points"] for e in autograde.load_material(lab).catalog().values())
    assert 0 < sum(theirs.values()) < most


TRAINING_LABS = lab_lists.TRAINING


@pytest.mark.parametrize("lab", TRAINING_LABS)
def test_nbgrader_on_a_training_lab_scores_as_labkit_grade_does(tmp_path, lab):
    """The labs that train models, in the tiny profile (properties decide, as on CIFAR-10 / MNIST): nbgrader
    generates the student version, autogrades the solution (every automatic point), the blank (at most 10%)
    and a planted wrong function (each question the points `labkit grade` gives it), feeds back, exports."""
    import re

    from nbgrader.api import Gradebook
    from test_student_grading import planted, with_function

    from labkit import autograde, cells

    source = nbformat.read(runner.resolve_notebook(lab), as_version=4)
    parameters = next(c for c in source.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    parameters.source = re.sub(r'^PROFILE = "quick"', 'PROFILE = "tiny"', parameters.source, flags=re.M)
    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    nbformat.write(source, course / "source" / "ps1" / f"{lab}.ipynb")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'labkit'\nc.ExecutePreprocessor.timeout = 600\n"
        "c.ExecutePreprocessor.kernel_name = 'labkit'\n")
    nbgrader(course, "generate_assignment", "ps1")
    wrong, _, _ = planted(lab)
    name, code = next(iter(wrong.items()))
    subs = {"alice": source, "bob": nbformat.read(course / "release" / "ps1" / f"{lab}.ipynb", as_version=4),
            "dave": with_function(source, name, code)}
    for student, nb in subs.items():
        (course / "submitted" / student / "ps1").mkdir(parents=True)
        nbformat.write(nb, course / "submitted" / student / "ps1" / f"{lab}.ipynb")
    nbgrader(course, "autograde", "ps1", "--create")
    nbgrader(course, "generate_feedback", "ps1")
    nbgrader(course, "export")
    dave = course / "submitted" / "dave" / "ps1" / f"{lab}.ipynb"
    ours = {r.question: r.points for r in autograde.grade([dave], lab=lab, profile="tiny") if r.counted}
    check_cells = {c.metadata.nbgrader["grade_id"]: cells.questions_in(c.source) for c in source.cells
                   if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        alice, bob = (gb.find_submission("ps1", s) for s in ("alice", "bob"))
        assert alice.code_score == alice.max_code_score > 0
        assert bob.score <= 0.1 * bob.max_score
        theirs = {qs[0]: gb.find_grade(cell, lab, "ps1", "dave").score for cell, qs in check_cells.items()}
    assert theirs == {q: ours[q] for q in theirs} and sum(theirs.values()) < alice.max_code_score
    assert (course / "feedback" / "dave" / "ps1" / f"{lab}.html").is_file()
    assert {r["student_id"] for r in csv.DictReader((course / "grades.csv").open())} == set(subs)
