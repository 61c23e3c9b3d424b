"""Grades that cannot be forged: for every notebook, a class of four (an honest solution, the blank student
version, the blank version with every attack of tests/hostile.py, and the solution with the same attacks
added) graded with the instructor folder. The attacks gain nothing, break nothing and see nothing: the
hostile blank scores no more than the blank, the hostile solution exactly what the honest one scores, and
no canary (in the instructor folder, another submission, the home directory, another process's command
line) reaches what grading shows."""

import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import hostile
import lab_lists
import nbformat
import pytest

from labkit import autograde, release, runner, sandbox
from labkit.results import totals

pytestmark = pytest.mark.skipif(sandbox.available() is not None, reason="bubblewrap is not installed")

FAST, SLOW = lab_lists.FAST, lab_lists.TRAINING  # quick profile in make test; tiny in make test-grading


def _totals(rows):
    by_who = {}
    for r in rows:
        by_who.setdefault(Path(r.submission).name.split("_")[0], []).append(r)
    return {who: totals(rs) for who, rs in by_who.items()}


def _grade_class(lab, profile, tmp_path):
    canary = f"CANARY-{secrets.token_hex(6)}"
    made = release.release_notebook(runner.resolve_notebook(lab), tmp_path / "dist", seed=3)
    (made.instructor / "canary.txt").write_text(f"{canary}-instructor")
    home_canary = Path.home() / f".labkit-canary-{canary}.txt"
    home_canary.write_text(f"{canary}-home")
    watcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", f"{canary}-process"])
    subs = tmp_path / "class"
    subs.mkdir()
    instructor_nb = nbformat.read(made.instructor / f"{lab}.ipynb", as_version=4)
    honest = subs / f"honest_{lab}.ipynb"
    shutil.copy(made.instructor / f"{lab}.ipynb", honest)
    nb = nbformat.read(honest, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell(f"{canary}-submission"))
    nbformat.write(nb, honest)
    shutil.copy(made.student, subs / f"blank_{lab}.ipynb")
    places = [str(made.instructor), str(subs), str(home_canary), str(Path.home())]
    nbformat.write(hostile.hostile(instructor_nb, places, solved=False), subs / f"hostile_{lab}.ipynb")
    nbformat.write(hostile.hostile(instructor_nb, places, solved=True), subs / f"hostilesolved_{lab}.ipynb")
    before = honest.read_bytes()
    try:
        rows = autograde.grade(autograde.find_submissions([subs]), profile=profile, jobs=2, timeout=300,
                               instructor=made.instructor, root=tmp_path, feedback=tmp_path / "feedback")
    finally:
        watcher.kill()
        home_canary.unlink()
    return rows, canary, honest, before, tmp_path / "feedback"


def _check_class(lab, rows, canary, honest, before, feedback, full_marks):
    totals = _totals(rows)
    assert totals["hostile"][0] <= totals["blank"][0], totals
    assert totals["hostilesolved"] == totals["honest"], totals
    if full_marks:
        assert totals["honest"][0] == totals["honest"][1], totals
    shown = {p.name: p.read_text() for p in (feedback / "class").glob("*.html")}
    hostile_page = next(text for name, text in shown.items() if name.startswith("hostile_"))
    assert "FOUND: [" in hostile_page and "references: 0" in hostile_page  # it searched, found no reference
    assert "fork stopped" in hostile_page and "disk stopped" in hostile_page
    for name, text in shown.items():
        assert f"{canary}-instructor" not in text and f"{canary}-home" not in text, name
        assert f"{canary}-process" not in text, name
        if not name.startswith("honest_"):
            assert f"{canary}-submission" not in text, name
        assert len(text) < 20 * 2**20, name  # a gigabyte printed shows as at most a few hundred kB
    assert honest.read_bytes() == before
    assert not list(honest.parent.rglob("fill.bin")) and not list(Path.home().glob("fill.bin"))


@pytest.mark.slow
@pytest.mark.parametrize("lab", FAST)
def test_attacks_gain_nothing_in_the_fast_notebooks(lab, tmp_path):
    rows, canary, honest, before, feedback = _grade_class(lab, "quick", tmp_path)
    _check_class(lab, rows, canary, honest, before, feedback, full_marks=True)


@pytest.mark.harness
@pytest.mark.parametrize("lab", SLOW)
def test_attacks_gain_nothing_in_the_training_notebooks(lab, tmp_path):
    rows, canary, honest, before, feedback = _grade_class(lab, "tiny", tmp_path)
    _check_class(lab, rows, canary, honest, before, feedback, full_marks=False)


