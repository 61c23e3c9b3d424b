"""Grading: reference files, comparison rules, function checks, record mode, results lines."""

import json
import re

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labkit import answers, grading, runner, scoring, sparse
from labkit.grading import Grader, MissingReferenceError, ReferenceConflictError
from labkit.results import Result, Status


def failed(result: Result, match: str = "") -> str:
    """The message of a check that failed (and reported, not raised), after asserting that it did."""
    assert result.status is Status.FAILED and result.points == 0, result
    assert re.search(match, result.message), (match, result.message)
    return result.message


@pytest.fixture(autouse=True)
def no_grading_env(monkeypatch):
    monkeypatch.delenv(grading.RECORD_ENV, raising=False)
    monkeypatch.delenv(grading.RESULTS_ENV, raising=False)


def record(tmp_path, monkeypatch, checks, notebook="nb"):
    """Run ``checks(grader)`` in record mode into ``tmp_path/<notebook>.quick.json``; return tmp_path."""
    monkeypatch.setenv(grading.RECORD_ENV, str(tmp_path / f"{notebook}.quick.json"))
    checks(Grader(notebook, references_dir=tmp_path))
    monkeypatch.delenv(grading.RECORD_ENV)
    return tmp_path


def test_pass_scores_the_points_from_the_reference(tmp_path, monkeypatch, capsys):
    refs = record(tmp_path, monkeypatch, lambda g: (g.check("q1", np.array([1.0, 2.0]), points=2, atol=1e-9),
                                                    g.check("q2", "abc")))
    g = Grader("nb", references_dir=refs)
    g.check("q1", np.array([1.0, 2.0]) + 1e-10)
    rows = g.summary()
    assert rows == [Result("q1", Status.PASSED, 2, 2, "reference"),
                    Result("q2", Status.NOT_RUN, 0, 1, message="its check did not run")]
    assert "total: 2 / 3" in capsys.readouterr().out


def test_failure_reports_a_readable_diff(tmp_path, monkeypatch):
    refs = record(tmp_path, monkeypatch, lambda g: g.check("b.W", np.array([1.0, 2.0, 3.0]), points=2,
                                                           atol=1e-9))
    g = Grader("nb", references_dir=refs)
    message = failed(g.check("b.W", np.array([1.0, 2.5, 3.1])))
    for part in ["'b.W'", "2 of 3 elements differ", "atol=1e-09", "worst at index (1,)",
                 "expected 2.0, got 2.5", "expected [1.0, 2.0, 3.0]", "got      [1.0, 2.5, 3.1]"]:
        assert part in message, (part, message)
    first = g.summary()[0]
    assert (first.question, first.status, first.points, first.max_points, first.basis) == (
        "b.W", Status.FAILED, 0, 2, "reference") and first.message == message


@pytest.mark.parametrize("expected, got, words", [
    ({"lam=0.2": 1.0, "lam=1": 2.0}, {"lam=0.2": 1.0, "lam=1": 2.5}, "at ['lam=1']: expected 2.0, got 2.5"),
    ({"a": 1.0}, {"b": 1.0}, "keys differ: missing ['a'], unexpected ['b']"),
    (np.zeros((2, 3)), np.zeros((3, 2)), "expected shape (2, 3), got shape (3, 2)"),
    (np.array([True, False]), np.array([1, 0]), "expected dtype bool, got dtype int64"),
    ([1.0, 2.0], [1.0], "expected a list of length 2, got length 1"),
    ({"a": 1.0}, [1.0], "expected a dict"),
    ("abc", "abd", "expected 'abc', got 'abd'"),
    (1.0, object(), "cannot store a value of type object"),
])
def test_mismatch_messages_say_what_differs(tmp_path, monkeypatch, expected, got, words):
    refs = record(tmp_path, monkeypatch, lambda g: g.check("q", expected))
    assert words in failed(Grader("nb", references_dir=refs).check("q", got), "q")


def test_missing_reference_file_says_how_to_create_it(tmp_path):
    with pytest.raises(MissingReferenceError, match=r"labkit references 01_x --profile quick"):
        Grader("01_x", profile="quick", references_dir=tmp_path)


def test_without_full_references_values_are_ungraded_but_functions_graded(tmp_path, monkeypatch, capsys):
    refs = record(tmp_path, monkeypatch, lambda g: (g.check("acc", 0.9),
                                                    g.check_function("abs", abs, inputs=[(-2,)])))
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv(grading.RESULTS_ENV, str(results))
    g = Grader("nb", profile="full", dataset="cifar10", references_dir=refs)
    note = capsys.readouterr().out
    assert g.ungraded and "UNGRADED" in note
    assert "labkit references nb --profile full --dataset cifar10" in note
    g.check("acc", 0.1)  # no reference for this profile: shown, not failed, worth nothing
    g.check_function("abs", abs)
    failed(g.check_function("abs", lambda x: x))  # the data-independent function check still bites
    rows = {r.question: r for r in g.summary()}
    assert rows["acc"].status is Status.UNGRADED and rows["acc"].max_points == 1 and not rows["acc"].counted
    assert [json.loads(line)["status"] for line in results.read_text().splitlines()] == [
        "ungraded", "passed", "failed"]


def test_missing_question_says_how_to_regenerate(tmp_path, monkeypatch):
    refs = record(tmp_path, monkeypatch, lambda g: g.check("q1", 1.0))
    with pytest.raises(MissingReferenceError, match=r"'q9'.*labkit references nb --profile quick"):
        Grader("nb", references_dir=refs).check("q9", 1.0)


@pytest.mark.parametrize("tolerance, expected, got, passes", [
    ({}, 1.0, 1.0, True),
    ({}, 1.0, np.nextafter(1.0, 2.0), False),
    ({}, np.array([3, 4]), np.array([3, 4]), True),
    ({"atol": 0.5}, 1.0, 1.5, True),  # exactly at the boundary
    ({"atol": 0.5}, 1.0, 1.5000001, False),
    ({"atol": 0.5}, 1.0, 0.4999999, False),
    ({"rtol": 0.25}, 2.0, 2.5, True),
    ({"rtol": 0.25}, 2.0, 2.5000001, False),
    ({"rtol": 0.25}, -2.0, -1.5, True),
    ({"atol": 0.25, "rtol": 0.25}, 2.0, 2.75, True),
    ({"atol": 0.25, "rtol": 0.25}, 2.0, 2.7500001, False),
    ({"atol": 0.5}, np.array([np.nan, 1.0]), np.array([np.nan, 1.25]), True),
])
def test_tolerance_rules_at_and_beyond_the_boundary(tmp_path, monkeypatch, tolerance, expected, got, passes):
    refs = record(tmp_path, monkeypatch, lambda g: g.check("q", expected, **tolerance))
    g = Grader("nb", references_dir=refs)
    if passes:
        g.check("q", got)
    else:
        failed(g.check("q", got))


def test_rule_and_points_come_from_the_file_not_the_call(tmp_path, monkeypatch):
    refs = record(tmp_path, monkeypatch, lambda g: g.check("q", 1.0, points=2, atol=1e-9))
    g = Grader("nb", references_dir=refs)
    failed(g.check("q", 1.1, points=100, atol=1.0), "atol=1e-09")
    g.check("q", 1.0, points=100, rtol=0.5)
    assert g.summary()[0].max_points == 2


def test_record_mode_round_trip_keeps_types_dtypes_and_shapes(tmp_path, monkeypatch):
    import torch

    value = {"W": np.arange(6, dtype=np.float32).reshape(2, 3), "mask": np.array([True, False]),
             "codes": np.array([[1, 2]], dtype=np.uint8), "t": torch.tensor([[0.5, -1.0]]), "n": np.int64(7),
             "x": 0.1, "flag": False, "name": "resnet", "none": None, "pair": (1, 2.5),
             "empty": np.zeros((0, 3))}
    refs = record(tmp_path, monkeypatch, lambda g: g.check("q", value, points=3, rtol=1e-6))
    entry = json.loads((refs / "nb.quick.json").read_text())["questions"]["q"]
    assert entry["points"] == 3 and entry["rule"] == {"rtol": 1e-06} and entry["kind"] == "value"
    assert entry["expected"]["W"] == {"$array": "numpy", "dtype": "float32", "shape": [2, 3],
                                      "data": [[0, 1, 2], [3, 4, 5]]}
    assert entry["expected"]["t"]["$array"] == "torch" and entry["expected"]["t"]["dtype"] == "float32"
    back = answers.decode(entry["expected"])
    assert back["codes"].dtype == np.uint8 and back["empty"].shape == (0, 3)
    assert isinstance(back["t"], torch.Tensor) and back["t"].dtype == torch.float32
    Grader("nb", references_dir=refs).check("q", value)


def test_record_mode_rejects_duplicates_and_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv(grading.RECORD_ENV, str(tmp_path / "rec.json"))
    g = Grader("nb", references_dir=tmp_path)
    g.check("q", 1.0)
    with pytest.raises(ValueError, match="'q' is recorded twice"):
        g.check("q", 2.0)
    with pytest.raises(ValueError, match="points=0: allowed is a finite number > 0"):
        g.check("q2", 1.0, points=0)
    with pytest.raises(ValueError, match="atol=-1: allowed is None or a finite number >= 0"):
        g.check("q3", 1.0, atol=-1)
    with pytest.raises(ValueError, match="allowed is a non-empty list of cases"):
        g.check_function("q4", sparse.soft_threshold)
    with pytest.raises(TypeError, match="cannot store a value of type set"):
        g.check("q5", {1, 2})


def test_bad_grader_arguments():
    with pytest.raises(ValueError, match=r"notebook='\.\./nb': allowed is a non-empty string"):
        Grader("../nb")
    with pytest.raises(ValueError, match="allowed is a non-empty string"):
        Grader("nb", profile="")


SOFT_INPUTS = [(np.array([0.5, -0.5, 0.2, -0.1, 0.0]), 0.2), (np.array([[1.0, -2.0]]), 0.5),
               {"W": [3.0], "threshold": 1}]
TOPK_INPUTS = [(np.array([0.5, -2.0, 1.0, 0.1, -1.5]), 2), (np.array([1.0, -3.0, 2.0]), 1)]


@pytest.fixture
def function_refs(tmp_path, monkeypatch):
    def checks(g):
        g.check_function("e.soft", sparse.soft_threshold, inputs=SOFT_INPUTS, points=2)
        g.check_function("c.topk", sparse.project_topk, inputs=TOPK_INPUTS, points=2)

    return record(tmp_path, monkeypatch, checks)


def test_check_function_passes_a_correct_implementation(function_refs):
    g = Grader("nb", references_dir=function_refs)

    def my_soft(W, threshold):
        W = np.asarray(W)
        return W - np.clip(W, -threshold, threshold)

    g.check_function("e.soft", my_soft)
    g.check_function("c.topk", sparse.project_topk, inputs=[(np.zeros(3), 1)])  # call's inputs are ignored
    assert [r.status for r in g.summary()] == [Status.PASSED, Status.PASSED]


def test_check_function_names_the_failing_case_of_a_wrong_soft_threshold(function_refs):
    def wrong_soft(W, threshold):  # forgets the negative side
        return np.maximum(np.asarray(W) - threshold, 0)

    message = failed(Grader("nb", references_dir=function_refs).check_function("e.soft", wrong_soft))
    assert "case 1 of 3, wrong_soft([0.5, -0.5, 0.2, -0.1, 0.0], 0.2)" in message
    assert "expected -0.3, got 0.0" in message
    assert "case 2 of 3" in message and "case 3 of 3" not in message


def test_check_function_names_the_failing_case_of_a_wrong_projection(function_refs):
    def keep_smallest(W, k):
        order = np.argsort(np.abs(W))[:k]
        return np.where(np.isin(np.arange(len(W)), order), W, 0.0)

    failed(Grader("nb", references_dir=function_refs).check_function("c.topk", keep_smallest),
           r"case 1 of 2, keep_smallest\(\[0.5, -2.0, 1.0, 0.1, -1.5\], 2\)")


def test_check_function_reports_a_function_that_raises(function_refs):
    def broken(W, k):
        raise RuntimeError("not implemented")

    failed(Grader("nb", references_dir=function_refs).check_function("c.topk", broken),
           "case 2 of 2.*raised RuntimeError: not implemented")


def test_check_and_check_function_are_not_interchangeable(function_refs):
    with pytest.raises(ValueError, match="function check in the reference; use grader.check_function"):
        Grader("nb", references_dir=function_refs).check("c.topk", 1.0)


def test_results_lines_are_appended_per_check_and_the_summary_adds_the_checks_not_run(tmp_path, monkeypatch):
    refs = record(tmp_path, monkeypatch, lambda g: (g.check("q1", 1.0, points=2), g.check("q2", 2.0),
                                                    g.check("q3", 3.0)))
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv(grading.RESULTS_ENV, str(results))
    g = Grader("nb", references_dir=refs)
    g.check("q1", 1.0)
    failed(g.check("q2", 3.0))
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert lines[0] == {"notebook": "nb", "profile": "quick", "submission": "", "question": "q1",
                        "status": "passed", "points": 2, "max_points": 2, "basis": "reference", "message": ""}
    assert lines[1]["status"] == "failed" and lines[1]["points"] == 0
    assert "expected 2.0, got 3.0" in lines[1]["message"] and len(lines) == 2
    g.summary()
    g.summary()
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(row["question"], row["status"]) for row in lines[2:]] == [("q3", "not run")]  # once


def test_changed_questions_uses_the_old_rule():
    def entry(value, atol=1e-9, points=1):
        return {"kind": "value", "points": points, "rule": {"atol": atol}, "expected": value}

    old = {"a": entry(1.0), "b": entry(2.0), "c": entry(3.0), "d": entry(4.0)}
    new = {"a": entry(1.0 + 1e-12), "b": entry(2.1), "c": entry(3.0, points=2), "e": entry(5.0)}
    changes = grading.changed_questions(old, new)
    assert [c.split()[0] for c in changes] == ["b", "c", "d", "e"]
    assert grading.changed_questions(old, old) == []


def tiny_notebook(path, value):
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}}, cells=[
        new_code_cell('PROFILE = "quick"', metadata={"tags": ["parameters"]}),
        new_code_cell(f'from labkit.grading import Grader\ng = Grader("{path.stem}", profile=PROFILE)\n'
                      f'g.check("x", {value!r}, points=2, atol=0.01)'),
    ])
    nbformat.write(nb, path)
    return path


def test_make_references_records_refuses_changes_and_forces(tmp_path):
    refs = tmp_path / "refs"
    old = {"x": {"kind": "value", "points": 2, "rule": {"atol": 0.01}, "expected": 1.0}}
    doc = {"notebook": "tiny", "profile": "quick", "questions": old}
    grading.write_json_atomic(refs / "tiny.quick.json", doc)
    nb = tiny_notebook(tmp_path / "tiny.ipynb", 1.5)
    dirs = {"references_dir": refs, "runs_dir": tmp_path / "runs"}
    with pytest.raises(ReferenceConflictError, match=r"x \(expected 1.0, got 1.5"):
        grading.make_references(nb, "quick", **dirs)
    assert json.loads((refs / "tiny.quick.json").read_text())["questions"] == old
    written = grading.make_references(nb, "quick", force=True, **dirs)
    assert written == refs / "tiny.quick.json"
    assert json.loads(written.read_text())["questions"]["x"]["expected"] == 1.5
    Grader("tiny", references_dir=refs).check("x", 1.505)
    nb = tiny_notebook(tmp_path / "tiny.ipynb", 1.505)  # within the old rule: no change without force
    grading.make_references(nb, "quick", **dirs)
    assert json.loads(written.read_text())["questions"]["x"]["expected"] == 1.5
    grading.make_references(nb, "quick", force=True, **dirs)  # force records the new value anyway
    assert json.loads(written.read_text())["questions"]["x"]["expected"] == 1.505


def test_resolve_notebook_by_name_and_unknown_names():
    expected = runner.NOTEBOOKS / "01_sparse_linear.ipynb"
    assert runner.resolve_notebook("01_sparse_linear") == expected
    assert runner.resolve_notebook("01_sparse_linear.ipynb") == expected
    with pytest.raises(FileNotFoundError, match="no notebook '99_nope': allowed is a notebook file or one"):
        runner.resolve_notebook("99_nope")
    assert [p.stem[:2] for p in runner.lab_notebooks()] == ["00", "01", "02", "03", "04", "05", "06", "07"]


def test_shipped_lab1_references_exist_for_both_profiles():
    for profile in ("quick", "full"):
        g = Grader("01_sparse_linear", profile=profile)
        X, y = sparse.hw_data()
        g.check("c.W", sparse.projected_gd(X, y).W[-1])
        g.check_function("e.soft_threshold", sparse.soft_threshold)


def test_without_a_recorded_reference_properties_decide_and_data_independent_checks_use_the_catalog(
        tmp_path, monkeypatch, capsys):
    from labkit import properties as P

    refs = record(tmp_path, monkeypatch, lambda g: (
        g.check("dense", 0.9, points=1, atol=0.01, expect=P.between(0.5, 1)),
        g.check("pruned", {"30": 0.88, "70": 0.5}, points=2, atol=0.02,
                expect=P.all_of(P.ordered("decreasing", slack=0.02), P.at_most("dense", margin=0.01))),
        g.check("verdict", True, points=2, data_independent=True),
        g.check("free", 3.0)))
    g = Grader("nb", profile="tiny", references_dir=refs)
    assert "judged by their properties" in capsys.readouterr().out
    g.check("dense", 0.6)  # far from the recorded 0.9, but the property holds: passes
    failed(g.check("pruned", {"30": 0.5, "70": 0.58}), "does not match its property")  # out of order
    failed(g.check("verdict", False), "does not match its reference")
    g.check("free", 1.0)
    rows = {r.question: r for r in g.summary()}
    assert [rows[q].status.value for q in ("dense", "pruned", "verdict", "free")] == [
        "passed", "failed", "failed", "ungraded"]
    assert rows["dense"].basis == "property" and rows["verdict"].basis == "reference"
    assert "UNGRADED: 1 more points in 1 checks (free)" in capsys.readouterr().out
    # where a reference is recorded for the profile, it decides, not the property
    failed(Grader("nb", references_dir=refs).check("dense", 0.6), "does not match its reference")


def test_hidden_cases_are_recorded_with_a_seed_and_scored_without_showing_them(tmp_path, monkeypatch):
    def project(w, k):
        keep = np.argsort(-np.abs(w), kind="stable")[:k]
        return np.where(np.isin(np.arange(len(w)), keep), w, 0.0)

    public = [(np.array([0.5, -2.0, 0.0, 1.0]), 2)]
    monkeypatch.setenv(grading.HIDDEN_SEED_ENV, "7")
    refs = record(tmp_path, monkeypatch, lambda g: g.check_function("topk", project, inputs=public))
    entry = json.loads((refs / "nb.quick.json").read_text())["questions"]["topk"]
    (hidden,) = entry["hidden_cases"]
    w = answers.decode(hidden["args"])[0]
    assert w.shape == (4,) and w[2] == 0 and not np.allclose(w, public[0][0]) and answers.decode(
        hidden["args"])[1] == 2
    lookup = {0: np.array([0.0, -2.0, 0.0, 1.0])}  # returns the stored public output whatever the input
    outputs = [answers.encode(project(*public[0])), answers.encode(lookup[0])]
    problems = scoring.function_problems(entry, outputs)
    assert problems == ["hidden cases [1] of 1 differ from the reference implementation's outputs"]
    assert scoring.function_problems(entry, [answers.encode(project(*public[0])),
                                             answers.encode(project(w, 2))]) == []


def test_hidden_cases_redraw_floats_keep_zeros_constants_and_everything_else():
    rng = np.random.default_rng(0)
    import torch

    case = ({"w": torch.tensor([[0.0, 1.0], [-2.0, 0.5]]), "c": torch.full((3,), -0.3)}, 4, "sym", [1, 2])
    (new,) = grading.hidden_cases([case], rng)
    assert new[1:] == (4, "sym", [1, 2])
    assert new[0]["w"][0, 0] == 0 and new[0]["w"].dtype == torch.float32
    assert not torch.equal(new[0]["w"], case[0]["w"])
    assert torch.equal(new[0]["c"], case[0]["c"])


def test_score_submission_uses_the_recorded_reference_or_the_property(tmp_path, monkeypatch):
    from labkit import properties as P

    refs = record(tmp_path, monkeypatch, lambda g: (
        g.check("dense", 0.9, atol=0.01, expect=P.between(0.5, 1)),
        g.check("ft", 0.9, atol=0.01, expect=P.at_least("dense")), g.check("free", 1.0)))
    catalog = json.loads((refs / "nb.quick.json").read_text())["questions"]
    answers = [{"question": "dense", "kind": "value", "answer": 0.6},
               {"question": "ft", "kind": "value", "answer": 0.55}]
    by_property = {r.question: r for r in scoring.score_submission(catalog, answers)}
    assert (by_property["dense"].status, by_property["ft"].status) == (Status.PASSED, Status.FAILED)
    assert by_property["free"].status is Status.UNGRADED and not by_property["free"].counted
    by_reference = {r.question: r for r in scoring.score_submission(catalog, answers, recorded=catalog)}
    assert by_reference["dense"].status is Status.FAILED and by_reference["free"].counted
    assert by_reference["free"].status is Status.NOT_RUN and by_reference["free"].max_points == 1


def test_a_failed_case_shows_its_call_on_one_line_with_large_arrays_as_shapes():
    from labkit.answers import encode
    from labkit.scoring import function_problems

    case = {"args": encode([{"conv1": np.zeros((4, 3, 3, 3)), "fc": np.array([1.0, 0.0])}]),
            "kwargs": encode({}), "expected": encode(1.0)}
    (problem,) = function_problems({"cases": [case], "rule": "exact", "function": "keep"}, [encode(2.0)])
    call = "keep({'conv1': <ndarray of shape (4, 3, 3, 3)>, 'fc': [1.0, 0.0]})"
    assert problem.startswith(f"case 1 of 1, {call}:")
    assert "\n" not in problem


def test_a_value_about_a_model_counts_only_when_the_model_is_the_one_the_question_sets(tmp_path, monkeypatch):
    """An accuracy "at 70% sparsity" scores only when the sparsity check passed: in the notebook at once,
    and in labkit grade's scoring (where the order of the answers does not matter)."""
    from labkit import properties as P

    refs = record(tmp_path, monkeypatch, lambda g: (
        g.check("sparsity", 0.7, points=1, expect=P.equals(0.7, atol=0.01)),
        g.check("accuracy", 0.85, points=2, atol=0.02, expect=P.between(0.5, 1), requires=["sparsity"])))
    g = Grader("nb", profile="tiny", references_dir=refs)  # properties decide: any accuracy in range passes
    g.check("sparsity", 0.007)  # a pruning function that prunes 1/100 of what it should
    failed(g.check("accuracy", 0.9), "counts only when 'sparsity' passes .* 'sparsity' is failed")
    catalog = json.loads((refs / "nb.quick.json").read_text())["questions"]
    assert catalog["accuracy"]["requires"] == ["sparsity"]
    answers_ = [{"question": "accuracy", "kind": "value", "answer": 0.85},
                {"question": "sparsity", "kind": "value", "answer": 0.007}]
    for recorded in (None, catalog):  # with and without references
        rows = {r.question: r for r in scoring.score_submission(catalog, answers_, recorded=recorded)}
        assert rows["sparsity"].status is Status.FAILED and rows["accuracy"].status is Status.FAILED
        right = [{**answers_[0]}, {**answers_[1], "answer": 0.7}]
        rows = {r.question: r for r in scoring.score_submission(catalog, right, recorded=recorded)}
        assert rows["accuracy"].status is Status.PASSED
    with pytest.raises(ValueError, match="not yet checked: \\['later'\\]"):
        record(tmp_path / "x", monkeypatch, lambda g: g.check("first", 1.0, requires=["later"]))


def test_a_sealed_verdict_is_never_shown_and_without_its_reference_is_left_to_grading(tmp_path, monkeypatch):
    from labkit.distribution import public_references

    refs = record(tmp_path, monkeypatch, lambda g: g.check("1.5", False, data_independent=True, sealed=True))
    message = failed(Grader("nb", references_dir=refs).check("1.5", True), "a sealed question does not")
    assert "False" not in message  # right or wrong, never the answer
    doc = json.loads((refs / "nb.quick.json").read_text())
    student = tmp_path / "student"
    grading.write_json_atomic(student / "nb.quick.json", public_references(doc))
    assert "expected" not in json.loads((student / "nb.quick.json").read_text())["questions"]["1.5"]
    result = Grader("nb", references_dir=student).check("1.5", True)
    assert result.status is Status.UNGRADED and result.message == scoring.SEALED


def test_a_bit_flip_in_a_reference_file_is_refused_by_name_never_read_as_other_answers(tmp_path, capsys):
    import random
    import shutil

    from labkit import cli

    instructor = tmp_path / "instructor"
    shutil.copytree(grading.REFERENCES_DIR, instructor / "references",
                    ignore=lambda d, names: [n for n in names if not n.startswith("01_sparse_linear")])
    shutil.copy(runner.resolve_notebook("01_sparse_linear"), instructor)
    path = instructor / "references" / "01_sparse_linear.quick.json"
    blob, whole = path.read_bytes(), grading.read_references(path)
    rng = random.Random(0)
    refused = 0
    for _ in range(40):
        flipped = bytearray(blob)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        path.write_bytes(flipped)
        try:
            assert grading.read_references(path) == whole  # a flip JSON reads the same ('e' -> 'E')
        except grading.DamagedReferenceError:
            refused += 1
    assert refused >= 38
    points = blob.index(b'"points": ') + len(b'"points": ')
    path.write_bytes(blob[:points] + bytes([blob[points] ^ 1]) + blob[points + 1:])  # a question's points
    assert cli.main(["grade", str(runner.resolve_notebook("01_sparse_linear")), "--instructor",
                     str(instructor), "--no-sandbox"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"labkit grade: error: reference file {path} is damaged"), err[-1]
