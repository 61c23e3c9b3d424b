"""Grading measures the student, notebook by notebook, on the instructor's path: ``labkit release`` into a
student and an instructor folder, then ``labkit grade`` with the instructor folder on

- the solution: full marks, with at least 80% of the points graded on a profile without references
  (``tiny``: property checks only) for the labs that train a model;
- the blank student version: at most 10% of the points;
- a hostile blank: one check cell rewritten to forge every value answer from the public references, the
  next one deleted, and a cell added that forges answers too: scores what the blank scores;
- each planted wrong function (``tests/planted/<lab>.py``): loses its own check and the value checks
  downstream of it;
- a function that looks up the public cases' stored outputs: passes the notebook's own check, fails
  grading on the hidden cases;
- the first planted wrong function's notebook, run as its student runs it: its own total is its grade.

The fast labs run in their quick profile (recorded references decide) with ``make test``; the ones that
train models run in ``tiny`` (properties decide) with ``make test-grading`` (marker ``harness``).
"""

import ast
import copy
import importlib.util
import json
from pathlib import Path

import lab_lists
import nbformat
import pytest

from labkit import autograde, cells, release, runner
from labkit.results import NOTES, Result, Status, totals

PLANTED = Path(__file__).parent / "planted"
LABS = lab_lists.PROFILE
FORGE = '''import json as _json
from labkit import answers as _a, grading as _g
_doc = _json.loads((_g.REFERENCES_DIR / "{lab}.quick.json").read_text())
for _q, _e in _doc["questions"].items():
    if _e["kind"] == "value":
        grader.check(_q, _a.decode(_e["expected"]))
'''
LOOKUP = '''import json as _json
import numpy as _np
from labkit import answers as _a
_cases = _json.loads({cases!r})  # copied from the kit's public reference file into the notebook


def _same(a, b):
    try:
        return all(_np.array_equal(_np.asarray(x), _np.asarray(y)) for x, y in zip(a, b, strict=True))
    except (TypeError, ValueError):
        return False


def {name}(*args, **kwargs):
    """Returns the stored output of the public case with these inputs (the first one's otherwise)."""
    for case in _cases:
        if _same(_a.decode(case["args"]), args):
            return _a.decode(case["expected"])
    return _a.decode(_cases[0]["expected"])
'''


def planted(lab: str):
    path = PLANTED / f"{lab}.py"
    if not path.is_file():
        return {}, {}, {}
    spec = importlib.util.spec_from_file_location(f"planted_{lab}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG, module.DOWNSTREAM, getattr(module, "EXTRA", {})


def replace_function(source: str, name: str, code: str) -> str:
    """``source`` with the top-level ``def name`` replaced by ``code``."""
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    lines = source.splitlines(keepends=True)
    start = node.lineno - 1 - len(node.decorator_list)
    return "".join(lines[:start]) + code.rstrip("\n") + "\n" + "".join(lines[node.end_lineno:])


def with_function(nb, name: str, code: str):
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if cells.is_solution(c) and f"def {name}(" in c.source)
    cell.source = replace_function(cell.source, name, code)
    return nb


def hostile(student, lab: str):
    """The blank version with its first check cell forging answers, its second deleted, and an added
    forging cell after the first solution cell."""
    nb = copy.deepcopy(student)
    checks = [i for i, c in enumerate(nb.cells)
              if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    nb.cells[checks[0]].source = FORGE.format(lab=lab)
    del nb.cells[checks[1]]
    first_solution = next(i for i, c in enumerate(nb.cells) if cells.is_solution(c))
    nb.cells.insert(first_solution + 1, nbformat.v4.new_code_cell(FORGE.format(lab=lab)))
    return nb


@pytest.fixture(scope="module", params=[  # the labs that train models run with `make test-grading`
    pytest.param(lab, marks=pytest.mark.slow if profile == "quick" else pytest.mark.harness)
    for lab, profile in LABS.items()])
def graded(request, tmp_path_factory):
    lab, profile = request.param, LABS[request.param]
    root = tmp_path_factory.mktemp(lab)
    made = release.release_notebook(runner.resolve_notebook(lab), root / "dist", seed=1)
    source = nbformat.read(made.instructor / f"{lab}.ipynb", as_version=4)
    student = nbformat.read(made.student, as_version=4)
    wrong, downstream, extra = planted(lab)
    catalog = autograde.load_material(lab, made.instructor).catalog()
    subs = {"solution": source, "blank": student, "hostile": hostile(student, lab)}
    for name, code in wrong.items():
        subs[f"wrong-{name}"] = with_function(source, name, code)
    for label, (name, code, _) in extra.items():
        subs[f"extra-{label.replace('/', '-')}"] = with_function(source, name, code)
    lookups = {e["function"]: q for q, e in catalog.items()
               if e["kind"] == "function" and f"{e['function']}," in _check_calls(source, q)}
    for name, question in lookups.items():
        cases = json.dumps(autograde.load_material(lab).catalog()[question]["cases"])
        code = LOOKUP.format(cases=cases, name=name)
        subs[f"lookup-{name}"] = with_function(source, name, code)
    folder = root / "subs"
    folder.mkdir()
    for who, nb in subs.items():
        nbformat.write(nb, folder / f"{who}_{lab}.ipynb")
    rows = autograde.grade(autograde.find_submissions([folder]), profile=profile, timeout=300, root=folder,
                           instructor=made.instructor)
    by_sub = {}
    for r in rows:
        by_sub.setdefault(r.submission.split(f"_{lab}")[0], {})[r.question] = r
    own = {}  # the first planted wrong function's notebook run the way its student runs it
    for name in list(wrong)[:1]:
        results = root / f"own-{name}.results.jsonl"
        try:
            runner.execute_notebook(folder / f"wrong-{name}_{lab}.ipynb", root / f"own-{name}.ipynb",
                                    {"PROFILE": profile}, env={"LABKIT_RESULTS": str(results)}, timeout=300)
        except runner.NotebookFailed:
            pass  # a run cell that raises: the checks after it still ran
        lines = results.read_text().splitlines()
        own[f"wrong-{name}"] = [Result.from_row(json.loads(line)) for line in lines]
    return lab, profile, catalog, by_sub, downstream, extra, lookups, own


def _check_calls(nb, question: str) -> str:
    """The source of the check cell naming ``question`` (to see whether it calls the function directly)."""
    return next((c.source for c in nb.cells if question in cells.questions_in(c.source)), "")


def automatic(rows: dict) -> dict:
    """The automatically graded results that count (no notes, no ungraded, no written answers)."""
    return {q: r for q, r in rows.items() if r.counted and r.status is not Status.MANUAL}


def score(rows: dict) -> tuple[float, float]:
    return totals(list(automatic(rows).values()))


def test_the_solution_scores_full_marks_and_most_points_are_graded(graded):
    lab, profile, catalog, subs, *_ = graded
    points, graded_max = score(subs["solution"])
    failed = {q: r.message for q, r in automatic(subs["solution"]).items() if r.status is not Status.PASSED}
    assert not failed, failed
    assert points == graded_max
    assert graded_max >= 0.8 * sum(e["points"] for e in catalog.values()), (profile, graded_max)


def test_the_blank_student_version_scores_at_most_ten_percent(graded):
    _, _, catalog, subs, *_ = graded
    points, _ = score(subs["blank"])
    assert points <= release.BLANK_SHARE * sum(e["points"] for e in catalog.values())


def test_edited_deleted_and_added_check_cells_gain_nothing(graded):
    _, _, _, subs, *_ = graded
    assert score(subs["hostile"]) == score(subs["blank"])
    notes = subs["hostile"][NOTES].message
    assert "(edited)" in notes and "(deleted)" in notes


def test_each_planted_wrong_function_loses_its_check_and_what_depends_on_it(graded):
    _, _, _, subs, downstream, extra, *_ = graded
    cases = {f"wrong-{name}": qs for name, qs in downstream.items()}
    cases |= {f"extra-{label.replace('/', '-')}": qs for label, (_, _, qs) in extra.items()}
    for who, questions in cases.items():
        lost = {q for q, r in automatic(subs[who]).items() if r.points < r.max_points}
        assert set(questions) <= lost, (who, sorted(set(questions) - lost))


def test_a_function_that_returns_the_stored_public_outputs_fails_grading(graded):
    _, _, catalog, subs, _, _, lookups, _ = graded
    for name, question in lookups.items():
        row = subs[f"lookup-{name}"][question]
        assert row.points == 0 and "hidden cases" in row.message, (name, row)


def test_the_notebook_total_is_the_grade_for_a_planted_wrong_function(graded):
    *_, subs, _, _, _, own = graded
    for who, results in own.items():
        points, most = totals(results)
        assert points < most  # the planted function loses points in the notebook too
        assert points == score(subs[who])[0], (who, {r.question: r.points for r in results})
