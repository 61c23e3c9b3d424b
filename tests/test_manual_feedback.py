"""Manual points and feedback: answer cells become CSV rows with an empty score, an instructor's CSV of
manual scores fills them in, and each submission's feedback is one HTML page with its score table."""

import nbformat
import pytest

from labkit import autograde, feedback
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
        ["a.ipynb", "a", "", "2", "2", "4", "5", "0"], ["b.ipynb", "b", "", "0", "0", "0", "3", "3"]]


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
    path = feedback.write_page(nb, [r.with_(submission="class/jdoe_01.ipynb") for r in _rows()[:3]], tmp_path)
    html = path.read_text()
    assert path == tmp_path / "class" / "jdoe_01.html" and path.with_suffix(".ipynb").is_file()
    assert "42" in html and "Score: 2 / 5" in html and "answer-c" in html
    flat = feedback.write_page(nb, [r.with_(submission="class_jdoe_01.ipynb") for r in _rows()[:3]], tmp_path)
    odd = feedback.write_page(nb, [r.with_(submission="../up/x y.ipynb") for r in _rows()[:3]], tmp_path)
    assert flat == tmp_path / "class_jdoe_01.html" and path.is_file()  # two pages, not one overwritten
    assert odd == tmp_path / "up" / "x_y.html"  # never outside the feedback folder


def test_every_mark_is_shown_at_its_cell_and_the_pages_are_rebuilt_with_manual_marks(tmp_path):
    nb = nbformat.v4.new_notebook()
    check = nbformat.v4.new_code_cell('grader.check("c.W", W)', outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="answered c.W (scored by `labkit grade`)\n")])
    answer = nbformat.v4.new_markdown_cell("My answer.", metadata={"nbgrader": {
        "grade": True, "solution": True, "grade_id": "answer-c", "points": 3}})
    nb.cells = [check, answer]
    rows = [r.with_(message="case 1 of 1, f(<ndarray of shape (9,)>): differs") if r.question == "c.W"
            else r for r in _rows()[:3]]
    rows[1] = rows[1].with_(status=Status.FAILED, points=0)
    page = feedback.write_page(nb, rows, tmp_path)
    html = page.read_text()
    assert html.index("c.W</strong>: <strong>0 / 2</strong>, failed") < html.index("My answer.")
    assert "&lt;ndarray of shape (9,)&gt;" in html  # the message as written, not read as a tag
    assert "marked by hand: score pending" in html and "Score: 0 / 5" in html
    scores = tmp_path / "manual.csv"
    scores.write_text("submission,question,points,comment\na.ipynb,answer-c,2.5,clear and right\n")
    written, missing = feedback.rebuild(autograde.apply_manual(rows, scores), tmp_path)
    html = page.read_text()
    assert written == [page] and missing == []
    assert "marked by hand: <strong>2.5 / 3</strong>" in html and "clear and right" in html
    assert "Score: 2.5 / 5" in html and "written answers 2.5 / 3" in html
    assert feedback.rebuild([r.with_(submission="z.ipynb") for r in rows], tmp_path) == ([], ["z.ipynb"])


def test_labkit_feedback_rebuilds_the_pages_from_the_grades_csv(tmp_path, capsys):
    from labkit import cli

    nb = nbformat.v4.new_notebook()
    rows = _rows()[:3]
    page = feedback.write_page(nb, rows, tmp_path / "fb")
    grades, scores = tmp_path / "grades.csv", tmp_path / "manual.csv"
    autograde.write_csv(rows, grades)
    scores.write_text("submission,question,points,comment\na.ipynb,answer-c,3,\n")
    assert cli.main(["feedback", str(grades), "--out", str(tmp_path / "fb"), "--manual", str(scores)]) == 0
    assert "Score: 5 / 5" in page.read_text()
    assert cli.main(["feedback", str(grades), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "no executed notebook under" in capsys.readouterr().err


@pytest.mark.parametrize("submission, student", [
    ("class/jdoe_01_sparse_linear.ipynb", "jdoe"),
    ("submitted/alice/ps1/01_sparse_linear.ipynb", "alice"),  # nbgrader's tree
    ("01_sparse_linear-kim.ipynb", "kim"),
    ("notes.ipynb", "notes"),
])
def test_the_grade_csv_names_student_and_lab_on_every_row(tmp_path, submission, student):
    rows = [r.with_(submission=submission) for r in _rows()[:3]]
    out = tmp_path / "grades.csv"
    autograde.write_csv(rows, out)
    import csv

    lines = list(csv.DictReader(out.open()))
    lab = "" if submission == "notes.ipynb" else "01_sparse_linear"
    assert {(r["student"], r["lab"]) for r in lines} == {(student, lab)}
    assert [r["points"] for r in lines] == ["0", "2", ""]  # one number format; pending stays empty
    assert autograde.read_csv(out) == rows
