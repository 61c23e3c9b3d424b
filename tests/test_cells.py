"""Cells by role: nbgrader metadata, blanking, and putting the instructor's cells back into a submission."""

import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit import autograde, cells, runner

SOLUTION = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"


def instructor():
    checks = new_code_cell('grader.check("q1", y)\ngrader.check("q2", 2)')
    nb = new_notebook(cells=[new_markdown_cell("# Lab"), new_code_cell("import math"),
                             new_code_cell(SOLUTION), new_code_cell("y = f(1)"), checks])
    cells.tag(nb, {"q1": 2, "q2": 1.5})
    return nb


def test_tag_gives_roles_points_and_stable_ids():
    nb = instructor()
    meta = [c.metadata.get("nbgrader") for c in nb.cells]
    assert meta[0] is None
    assert [m["grade_id"] for m in meta[1:]] == ["cell", "solution-f", "cell-2", "check-q1"]
    assert meta[2]["solution"] and not meta[2]["locked"]
    assert meta[4]["grade"] and meta[4]["locked"] and meta[4]["points"] == 3.5
    assert meta[1]["locked"] and not meta[1]["grade"] and not meta[1]["solution"]
    again = copy.deepcopy(nb)
    assert cells.tag(again, {"q1": 2, "q2": 1.5}) == [] and again == nb


def test_restore_keeps_the_students_solution_and_added_cells_and_puts_the_rest_back():
    source = instructor()
    sub = copy.deepcopy(source)
    sub.cells[2].source = "def f(x):\n    return 2 * x\n"  # their answer
    sub.cells[3].source = "y = 2"  # an edited run cell
    del sub.cells[4]  # a deleted check cell
    sub.cells.insert(3, new_code_cell("z = 'mine'"))  # an added cell
    graded, notes = cells.restore(source, sub)
    assert [c.source for c in graded.cells] == [  # the submission's markdown stays, for feedback
        "# Lab", "import math", "def f(x):\n    return 2 * x\n", "z = 'mine'", "y = f(1)",
        source.cells[4].source]
    assert notes == ["instructor cells put back: cell-2 (edited), check-q1 (deleted)"]


def test_restore_runs_a_missing_solution_blank_and_matches_cells_without_ids_by_function():
    source = instructor()
    sub = copy.deepcopy(source)
    del sub.cells[2]
    graded, notes = cells.restore(source, sub)
    assert "raise NotImplementedError()" in graded.cells[2].source
    assert "solution cells missing, run blank: solution-f" in notes
    plain = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("def f(x):\n    return x\n")])
    graded, notes = cells.restore(source, plain)
    assert graded.cells[1].source == "def f(x):\n    return x\n" and "carry no ids" in notes[0]
    assert "x = 1" not in [c.source for c in graded.cells]
    quiz = new_notebook(cells=[new_code_cell("### BEGIN SOLUTION\nANSWER = True\n### END SOLUTION")])
    cells.tag(quiz, {})
    graded, _ = cells.restore(quiz, new_notebook(cells=[new_code_cell("ANSWER = False")]))
    assert graded.cells[0].source == "ANSWER = False"  # matched by the name it assigns


@pytest.mark.parametrize("path", sorted((runner.NOTEBOOKS).glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.stem)
def test_kit_notebooks_carry_nbgrader_metadata_matching_their_references(path):
    nb = nbformat.read(path, as_version=4)
    catalog = autograde.load_material(path.stem).catalog()
    tagged = copy.deepcopy(nb)
    assert cells.tag(tagged, {q: e["points"] for q, e in catalog.items()}) == [], "run `labkit tag`"
    assert tagged == nb, "points or roles differ from the references: run `labkit tag`"
    checked = {q for c in nb.cells for q in cells.questions_in(c.source)}
    assert checked == set(catalog)
