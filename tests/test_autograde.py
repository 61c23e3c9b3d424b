"""labkit grade and labkit release, on the real Lab 1 notebook (it runs in seconds)."""

import shutil

import nbformat
import pytest

from labkit import autograde, cli, grading, release

LAB1 = grading.REPO_DIR / "notebooks" / "01_sparse_linear.ipynb"
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
g.score_submission = lambda questions, answers: []
with open(os.environ[g.SUBMIT_ENV], "a") as f:
    f.write(json.dumps({"question": "e.soft_threshold", "kind": "function", "answer": []}) + "\\n")'''


def _submission(path, edit=None):
    nb = nbformat.read(LAB1, as_version=4)
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
    _cell(cells, 'runs_d = sparse.sweep("l1_gd"').source = 'raise RuntimeError("crash")'
    hang = _cell(cells, 'runs_e = sparse.sweep("proximal_l1"')
    hang.source = "import time\ntime.sleep(600)\n" + hang.source


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
    rows = autograde.grade(autograde.find_submissions([subs]), jobs=2, timeout=20, root=root)
    assert (refs / "01_sparse_linear.quick.json").read_text() == \
        (grading.REFERENCES_DIR / "01_sparse_linear.quick.json").read_text()  # the kit's copy is untouched
    yield root, rows, mp
    mp.undo()


def _failed(rows, who):
    return sorted(r["question"] for r in rows if r["submission"].startswith(f"subs/{who}") and r["message"])


def test_a_correct_submission_gets_full_marks(graded):
    _, rows, _ = graded
    alice = [r for r in rows if "alice" in r["submission"]]
    assert sum(r["points"] for r in alice) == sum(r["max_points"] for r in alice) == 30


def test_planted_bug_loses_exactly_its_question_and_tampering_gains_nothing(graded):
    _, rows, _ = graded
    # the student's trimmed step calls their own soft threshold, so it shares the bug
    assert _failed(rows, "bob") == ["e.soft_threshold", "f.trimmed_soft_threshold"]


def test_crashing_and_hanging_cells_cost_only_what_depends_on_them(graded):
    _, rows, _ = graded
    assert _failed(rows, "carol") == ["d.W", "d.loss", "e.W", "e.loss"]
    message = next(r["message"] for r in rows if "carol" in r["submission"] and r["question"] == "d.W")
    assert "did not run" in message


def test_shards_cover_every_submission_once_and_merge_to_the_unsharded_result(graded, tmp_path):
    root, rows, _ = graded
    subs = autograde.find_submissions([root / "subs"])
    shards = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}.csv"
        autograde.write_csv(autograde.grade(subs, shard=(i, 2), timeout=20, root=root), out)
        shards.append(out)
    names = [{r["submission"] for r in autograde.read_csv(s)} for s in shards]
    assert not names[0] & names[1] and names[0] | names[1] == {r["submission"] for r in rows}
    whole = tmp_path / "whole.csv"
    autograde.write_csv(rows, whole)
    assert autograde.merge(shards) == autograde.read_csv(whole)
    with pytest.raises(ValueError, match="more than one shard"):
        autograde.merge([shards[0], shards[0]])


def test_release_blanks_solutions_and_validates(graded, tmp_path, capsys):
    code = cli.main(["release", str(LAB1), "--out", str(tmp_path), "--timeout", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    student = nbformat.read(tmp_path / LAB1.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "np.put_along_axis" not in text
    assert text.count("raise NotImplementedError()") == 3
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")
    assert "blanked: project_topk, soft_threshold, trimmed_soft_threshold" in out and "OK" in out


def test_blank_solutions_keeps_indentation_and_refuses_unmatched_markers():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    student, names = release.blank_solutions(source)
    assert student == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert names == ["f"]
    with pytest.raises(ValueError, match="unmatched"):
        release.blank_solutions("### BEGIN SOLUTION\nx = 1\n")


def test_shard_and_lab_arguments():
    assert autograde.parse_shard("2/8") == (2, 8)
    for bad in ("0/2", "3/2", "a/b", "2"):
        with pytest.raises(ValueError, match="--shard"):
            autograde.parse_shard(bad)
    with pytest.raises(ValueError, match="cannot tell which lab"):
        autograde.lab_of(grading.REPO_DIR / "homework.ipynb")
    with pytest.raises(FileNotFoundError, match="neither a notebook"):
        autograde.find_submissions(["missing.txt"])
