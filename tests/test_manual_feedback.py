"""Manual points and feedback: answer cells become CSV rows with an empty score, an instructor's CSV of
manual scores fills them in, and each submission's feedback is one HTML page with its score table."""

import nbformat
import pytest

from labkit import autograde
from labkit.results import NOTES, Result, Status


def _rows():
    return [Result(NOTES, Status.NOTES, 0, 0, submission="a.ipynb"),
            Result("c.W", Status.PASSED, 2, 2, "reference", submission="a.ipynb"),
            Result("answer-c", Status.MANUAL, None, 3, submission="a.ipynb"),
            Result("answer-c", Status.MANUAL, None, 3, submission="b.ipynb")]


def test_manual_scores_merge_into_the_totals(tmp_path):
    scores = tmp_path / "manual.csv"
    scores.write_text("submission,question,points,comment\na.ipynb,answer-c,2.5,good | clear\n")
    rows = autograde.apply_manual(_rows(), scores)
    assert rows[2].points == 2.5 and rows[2].message == "good | clear" and rows[2].status is Status.MANUAL
    assert rows[3].pending  # b's answer is still pending
    table = autograde.summary(rows)
    assert "4.5" in table.splitlines()[2] and "3" in table.splitlines()[3]
    out = tmp_path / "all.csv"
    autograde.write_csv(rows, out)
    assert autograde.read_csv(out) == rows


def test_the_manual_template_lists_every_manual_question_and_reads_back_with_its_blanks_pending(tmp_path):
    import csv

    template = tmp_path / "manual.csv"
    autograde.write_manual_template(_rows(), template)
    lines = list(csv.DictReader(template.open()))
    assert [(r["submission"], r["question"], r["max_points"], r["points"]) for r in lines] == [
        ("a.ipynb", "answer-c", "3", ""), ("b.ipynb", "answer-c", "3", "")]
    lines[0]["points"], lines[0]["comment"] = "2", "clear"
    with template.open("w", newline="") as f:  # the instructor scores a's answer, leaves b's blank
        writer = csv.DictWriter(f, list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    rows = autograde.apply_manual(_rows(), template)
    assert rows[2].points == 2 and rows[2].message == "clear" and rows[3].pending
    totals = tmp_path / "totals.csv"
    autograde.write_totals(rows, totals)
    assert [list(r.values()) for r in csv.DictReader(totals.open())] == [
        ["a.ipynb", "", "2", "2", "4", "5", "0"], ["b.ipynb", "", "0", "0", "0", "3", "3"]]


@pytest.mark.parametrize("line, words", [
    ("a.ipynb,c.W,1", "has no manually graded question 'c.W'"),
    ("z.ipynb,answer-c,1", "'z.ipynb' has no manually graded"),
    ("a.ipynb,answer-c,4", "allowed is 0 to 3"),
    ("a.ipynb,answer-c,lots", "allowed is a number"),
])
def test_bad_manual_scores_are_refused_by_line(tmp_path, line, words):
    scores = tmp_path / "manual.csv"
    scores.write_text("submission,question,points\n" + line + "\n")
    with pytest.raises(ValueError, match="line 2") as err:
        autograde.apply_manual(_rows(), scores)
    assert words in str(err.value)
    scores.write_text("who,what\nx,y\n")
    with pytest.raises(ValueError, match="columns submission, question, points"):
        autograde.apply_manual(_rows(), scores)


def test_answer_cells_are_manual_questions():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Explain."),
                nbformat.v4.new_markdown_cell("YOUR ANSWER HERE", metadata={"nbgrader": {
                    "grade": True, "solution": True, "grade_id": "answer-1.1", "points": 1,
                    "locked": False, "schema_version": 3}})]
    assert autograde.Material("x", nb, {}).manual() == {"answer-1.1": 1.0}


def test_feedback_is_the_executed_notebook_and_its_score_table(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(41 + 1)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="42\n")])]
    path = autograde.write_feedback(nb, [r.with_(submission="class/jdoe_01.ipynb") for r in _rows()[:3]],
                                    tmp_path)
    html = path.read_text()
    assert path == tmp_path / "class" / "jdoe_01.html"
    assert "42" in html and "Score: 2 / 2" in html and "answer-c" in html
    flat = autograde.write_feedback(nb, [r.with_(submission="class_jdoe_01.ipynb") for r in _rows()[:3]],
                                    tmp_path)
    odd = autograde.write_feedback(nb, [r.with_(submission="../up/x y.ipynb") for r in _rows()[:3]], tmp_path)
    assert flat == tmp_path / "class_jdoe_01.html" and path.is_file()  # two pages, not one overwritten
    assert odd == tmp_path / "up" / "x_y.html"  # never outside the feedback folder
