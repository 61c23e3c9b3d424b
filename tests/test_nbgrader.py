"""nbgrader itself on the kit's notebooks: ``generate_assignment`` on the source notebook, then
``autograde`` of the solution (full marks) and of the student version nbgrader released (no points), then
``generate_feedback``, in a temporary course folder."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import runner

pytestmark = pytest.mark.slow  # nbgrader runs the notebooks in Jupyter kernels

NBGRADER = Path(sys.executable).parent / "nbgrader"  # a dev dependency: pip install -e '.[dev]'



def nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{NBGRADER.parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    subprocess.run([str(NBGRADER), *args, "--force"], cwd=course, env=env, check=True, capture_output=True,
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
