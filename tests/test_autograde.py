"""labkit grade and labkit release, on the real Lab 1 notebook (it runs in seconds)."""

import copy
import shutil

import nbformat
import pytest

from labkit import autograde, cells, cli, grading, runner
from labkit.results import Status, totals

pytestmark = pytest.mark.slow  # most tests here read one class graded in Jupyter kernels

LAB1 = runner.NOTEBOOKS / "01_sparse_linear.ipynb"
WRONG_SOFT = '''def soft_threshold(W, threshold):
    W = np.asarray(W, dtype=float)
    return np.maximum(W - threshold, 0.0)  # planted bug: forgets the negative side'''
TAMPER = '''import json, os
import labkit.grading as g
# rewrite the kit's reference and the grader, and forge passing answers: none of it may count
ref = g.kit_references() / "01_sparse_linear.quick.json"
doc = json.loads(ref.read_text())
doc["questions"]["e.soft_threshold"]["cases"] = []
ref.write_text(json.dumps(doc))
g.Answerer.check = lambda *args, **kwargs: None
g.score_submission = lambda *args, **kwargs: []
with open(os.environ[g.SUBMIT_ENV], "a") as f:
    f.write(json.dumps({"question": "e.soft_threshold", "kind": "function", "answer": []}) + "\\n")'''


def _submission(path, edit=None):
    nb = copy.deepcopy(autograde.load_material("01_sparse_linear").notebook)  # with cell ids, as released
    if edit:
        edit(nb.cells)
    nbformat.write(nb, path)
    return path


def _cell(cells, text):
    return next(c for c in cells if c.cell_type == "code" and text in c.source)


def _plant_bug_and_tamper(cells):
    _cell(cells, "def soft_threshold").source = WRONG_SOFT
    cells.insert(3, nbformat.v4.new_code_cell(TAMPER))


def _crash_and_hang(cells):
    _cell(cells, "def trimmed_soft_threshold").source = 'raise RuntimeError("crash")'  # a solution cell
    cells.insert(3, nbformat.v4.new_code_cell("import time\ntime.sleep(600)"))  # a cell the student added


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Three submissions in a class folder, graded unsharded with a kit reference copy that a
    submission is free to overwrite."""
    root = tmp_path_factory.mktemp("class")
    refs = root / "refs"
    shutil.copytree(grading.REFERENCES_DIR, refs)
    subs = root / "subs"
    subs.mkdir()
    _submission(subs / "alice_01_sparse_linear.ipynb")
    _submission(subs / "bob_01_sparse_linear.ipynb", _plant_bug_and_tamper)
    _submission(subs / "carol_01_sparse_linear.ipynb", _crash_and_hang)
    mp = pytest.MonkeyPatch()
    mp.setenv(grading.REFERENCES_ENV, str(refs))
    rows = autograde.grade(autograde.find_submissions([subs]), jobs=2, timeout=20, root=root,
                           feedback=root / "feedback")
    assert (refs / "01_sparse_linear.quick.json").read_text() == \
        (grading.REFERENCES_DIR / "01_sparse_linear.quick.json").read_text()  # the kit's copy is untouched
    yield root, rows, mp
    mp.undo()


def _failed(rows, who):
    return sorted(r.question for r in rows if r.submission.startswith(f"subs/{who}")
                  and r.status in (Status.FAILED, Status.NOT_RUN))


def test_a_correct_submission_gets_full_marks(graded):
    _, rows, _ = graded
    alice = [r for r in rows if "alice" in r.submission]
    catalog = autograde.load_material("01_sparse_linear").catalog()
    assert totals(alice) == (sum(e["points"] for e in catalog.values()),) * 2
    assert alice[0].status is Status.NOTES and not alice[0].message


def test_every_submission_gets_a_feedback_page_with_its_score(graded):
    root, _, _ = graded
    pages = sorted(p.name for p in (root / "feedback" / "subs").glob("*.html"))
    assert pages == [f"{who}_01_sparse_linear.html" for who in ("alice", "bob", "carol")]
    full = sum(e["points"] for e in autograde.load_material("01_sparse_linear").catalog().values())
    assert f"automatic {full} / {full}" in (root / "feedback" / "subs" / pages[0]).read_text()


def test_planted_bug_loses_exactly_its_question_and_tampering_gains_nothing(graded):
    _, rows, _ = graded
    # the graded (e) runs use the student's soft threshold, and their trimmed step calls it too (the (f)
    # runs still end right: their penalized entries go to zero either way)
    assert _failed(rows, "bob") == sorted(["e.soft_threshold", "e.W", "e.zeros", "e.loss",
                                           "f.trimmed_soft_threshold"])


def test_crashing_and_hanging_cells_cost_only_what_depends_on_them(graded):
    _, rows, _ = graded
    assert _failed(rows, "carol") == ["f.W", "f.loss", "f.trimmed_soft_threshold"]
    message = next(r.message for r in rows if "carol" in r.submission and r.question == "f.W")
    assert "NameError" in message or "did not run" in message


def test_shards_cover_every_submission_once_and_merge_to_the_unsharded_result(graded, tmp_path):
    root, rows, _ = graded
    subs = autograde.find_submissions([root / "subs"])
    shards = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}.csv"
        autograde.write_csv(autograde.grade(subs, shard=(i, 2), timeout=20, root=root), out)
        shards.append(out)
    names = [{r.submission for r in autograde.read_csv(s)} for s in shards]
    assert not names[0] & names[1] and names[0] | names[1] == {r.submission for r in rows}
    whole = tmp_path / "whole.csv"
    autograde.write_csv(rows, whole)
    assert autograde.merge(shards) == autograde.read_csv(whole)
    with pytest.raises(ValueError, match="more than one shard"):
        autograde.merge([shards[0], shards[0]])


def test_release_writes_student_and_instructor_folders_and_validates(graded, tmp_path, capsys):
    code = cli.main(["release", str(LAB1), "--out", str(tmp_path), "--timeout", "60"])
    out = capsys.readouterr().out
    assert code == 0, out
    student = nbformat.read(tmp_path / "student" / LAB1.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "np.put_along_axis" not in text
    assert text.count("raise NotImplementedError()") == 4
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")
    assert all(cells.grade_id(c) for c in student.cells if c.cell_type == "code")
    assert "blanked: gradient, project_topk, soft_threshold, trimmed_soft_threshold" in out and "OK" in out
    public = tmp_path / "student"
    assert not list(public.rglob("*.json"))  # the student folder holds no references at all
    hidden = autograde.load_material("01_sparse_linear", tmp_path / "instructor").catalog()
    assert all(e.get("hidden_cases") for e in hidden.values() if e["kind"] == "function")
    assert "hidden_cases" not in (grading.REFERENCES_DIR / "01_sparse_linear.quick.json").read_text()


def test_blank_solutions_keeps_indentation_and_refuses_unmatched_markers():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    student, names = cells.blank_solutions(source)
    assert student == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert names == ["f"]
    with pytest.raises(ValueError, match="unmatched"):
        cells.blank_solutions("### BEGIN SOLUTION\nx = 1\n")


@pytest.mark.parametrize("argv, words", [
    (["grade", "/etc/hostname"], "labkit grade: error: submission '/etc/hostname' is neither a notebook"),
    (["grade", "--merge", "/etc/hostname"], "is not a labkit grade CSV"),
    (["train", "lenet5", "--dataset", "fashion-mnist-mini", "--epochs", "-1"], "train: error: --epochs -1"),
    (["run", "99_nope"], "labkit run: error: no notebook '99_nope'"),
])
def test_user_errors_are_one_line_and_exit_2(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_shard_and_lab_arguments():
    assert autograde.parse_shard("2/8") == (2, 8)
    names = [f"s{i}_01_sparse_linear.ipynb" for i in range(40)]
    for first in (0, 1):  # a Slurm array counted from 0 or from 1 covers every submission once
        shards = [autograde.parse_shard(f"{i}/8") for i in range(first, first + 8)]
        assert sorted(n for s in shards for n in names if autograde.in_shard(n, s)) == sorted(names)
    assert all(autograde.in_shard(n, (0, 8)) == autograde.in_shard(n, (8, 8)) for n in names)
    for bad in ("-1/2", "3/2", "1/0", "a/b", "2"):
        with pytest.raises(ValueError, match="--shard"):
            autograde.parse_shard(bad)
    with pytest.raises(ValueError, match="cannot tell which lab"):
        autograde.lab_of(runner.NOTEBOOKS.parent / "homework.ipynb")
    with pytest.raises(FileNotFoundError, match="neither a notebook"):
        autograde.find_submissions(["missing.txt"])
