"""Scoring: the problems of one answer and the points of a whole submission, judged against the catalog (the
quick references: points, rule, property, function cases) and the references recorded for the run's profile
/ data set. The notebook's grader uses it for its instant feedback, ``labkit grade`` for the score that
counts: there the answers were written by the submission, and the references read before it ran.
"""

from __future__ import annotations

from labkit import properties
from labkit.answers import Rule, compare, decode, describe
from labkit.results import Result, Status

_MAX_PROBLEMS_SHOWN = 5
SEALED = "sealed: its reference is not shown to students; `labkit grade` judges it"


NO_BASIS = "no reference for this profile / data set and no property"


def ungraded_reason(entry: dict) -> str:
    """Why a value question with no basis (:func:`value_basis` None) is ungraded."""
    return SEALED if is_sealed(entry) else NO_BASIS


def is_sealed(entry: dict) -> bool:
    """Whether a value question's answer is its reference itself (a True/False verdict): the student
    distribution ships it without its expected value and no message ever shows that value."""
    return bool(entry.get("sealed"))


def value_basis(entry: dict, recorded: dict | None) -> str | None:
    """What decides a value question: ``"reference"`` (a reference recorded for the run's profile / data
    set, or the catalog's for a data-independent question), ``"property"``, or None (ungraded; also a
    sealed question whose expected value was left out, as in the student distribution)."""
    if is_sealed(entry) and "expected" not in entry:
        return None
    if recorded is not None or entry.get("data_independent"):
        return "reference"
    return "property" if "expect" in entry else None


def value_problems(entry: dict, recorded: dict | None, got, answers: dict) -> list[str]:
    """Problems of an encoded answer to a value question (empty when it is right) on the basis
    :func:`value_basis` names; ``answers`` holds the run's other answers, for properties that read them."""
    if isinstance(got, dict) and "$raised" in got:
        return [got["$raised"]]
    if value_basis(entry, recorded) == "property":
        return properties.problems(entry["expect"], got, answers)
    reference = recorded if recorded is not None else entry
    problems = compare(reference["expected"], got, Rule.from_json(reference["rule"]))
    if problems and is_sealed(entry):  # right or wrong, never the answer
        return [f"not the reference's answer (got {describe(got)}; a sealed question does not show it)"]
    return problems


def unmet(entry: dict, results: dict) -> list[str]:
    """Why a value question does not count although its value may be right: a question it ``requires``
    (the property of the model it measures: its sparsity, bit width or channel count) did not pass, so the
    value is not about the model the question sets. ``results``: the run's results so far, by question."""
    problems = []
    for q in entry.get("requires", ()):
        status = results[q].status if q in results else Status.NOT_RUN
        if status is not Status.PASSED:
            problems.append(f"counts only when {q!r} passes (the model it measures must be the one the "
                            f"question sets), and {q!r} is {status}")
    return problems


def function_problems(entry: dict, outputs: list, name: str | None = None) -> list[str]:
    """Problems of a function's encoded outputs on a function question's stored cases, then its hidden
    cases where the entry has them (``name``: the function's, for the messages; default the reference
    function's). A hidden case is reported without its inputs or expected output."""
    cases, rule, problems = entry["cases"], Rule.from_json(entry["rule"]), []
    hidden = entry.get("hidden_cases", [])
    name = name or entry.get("function", "fn")
    if not isinstance(outputs, list) or len(outputs) != len(cases) + len(hidden):
        return [f"expected outputs for {len(cases) + len(hidden)} cases, got {outputs!r:.80}"]
    for i, (case, got) in enumerate(zip(cases, outputs, strict=False), 1):
        where = (f"case {i} of {len(cases)}, "
                 f"{_call_text(name, decode(case['args']), decode(case['kwargs']))}")
        if isinstance(got, dict) and "$raised" in got:
            problems.append(f"{where}: {got['$raised']}")
        else:
            problems += [f"{where}: {p}" for p in compare(case["expected"], got, rule)]
    failed_hidden = [i for i, (case, got) in enumerate(zip(hidden, outputs[len(cases):], strict=True), 1)
                     if (isinstance(got, dict) and "$raised" in got) or compare(case["expected"], got, rule)]
    if failed_hidden:
        problems.append(f"hidden cases {failed_hidden} of {len(hidden)} differ from the reference "
                        "implementation's outputs")
    return problems


def score_submission(questions: dict, answers: list[dict], recorded: dict | None = None) -> list[Result]:
    """Score a submission's answers (the JSON lines of submission mode; the last answer to a question
    counts) against the catalog ``questions`` and the ``recorded`` reference questions of the run's profile
    / data set (None where there is none): one :class:`~labkit.results.Result` per catalog question. A
    question without an answer (its cell never ran, or an earlier error or time-out stopped it) is
    ``not run`` with 0 points; one with neither a reference nor a property is ``ungraded``."""
    latest = {a["question"]: a for a in answers if isinstance(a, dict) and isinstance(a.get("question"), str)}
    given = {q: a.get("answer") for q, a in latest.items()}
    results = []
    for q, entry in questions.items():
        answer, basis = latest.get(q), "reference"
        rec = None if recorded is None else recorded.get(q)
        if entry["kind"] == "value":
            basis = value_basis(entry, rec)
        if basis is None:
            results.append(Result(q, Status.UNGRADED, 0, entry["points"], message=ungraded_reason(entry)))
            continue
        if answer is None:
            results.append(Result(q, Status.NOT_RUN, 0, entry["points"], basis,
                                  "no answer: the check did not run (an earlier cell failed or timed out)"))
            continue
        if answer.get("kind") != entry["kind"]:
            problems = [f"answered as a {answer.get('kind')} check; the reference is a {entry['kind']} check"]
        elif entry["kind"] == "value":
            problems = value_problems(entry, rec, answer.get("answer"), given)
        else:
            problems = function_problems(entry, answer.get("answer"))
        results.append(judged(q, entry["points"], problems, basis))
    done = {r.question: r for r in results}
    for i, r in enumerate(results):  # a second pass: the questions a value requires may come after it
        missing = unmet(questions[r.question], done) if r.status is Status.PASSED else []
        if missing:
            results[i] = judged(r.question, r.max_points, missing, r.basis)
    return results


def judged(question: str, points: float, problems: list[str], basis: str) -> Result:
    """The result of an automatic check with ``problems`` (none: passed)."""
    if problems:
        return Result(question, Status.FAILED, 0, points, basis, failure_text(question, problems, basis))
    return Result(question, Status.PASSED, points, points, basis)


def failure_text(question_id: str, problems: list[str], basis: str = "reference") -> str:
    """The message of a failed check: its first problems, one per line."""
    shown = problems[:_MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    what = "its reference" if basis == "reference" else "its property"
    return (f"question {question_id!r} does not match {what}:\n  " + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else ""))


def _call_text(name: str, args: list, kwargs: dict) -> str:
    """The call on one line: small arrays as lists, larger ones as their shape, dicts key by key."""
    def show(v):
        if isinstance(v, dict):
            text = "{" + ", ".join(f"{k!r}: {show(x)}" for k, x in v.items()) + "}"
        elif hasattr(v, "shape") and _numel(v) > 8:
            text = f"<{type(v).__name__} of shape {tuple(v.shape)}>"
        else:
            text = " ".join(repr(v.tolist() if hasattr(v, "tolist") else v).split())
        return text if len(text) <= 80 else text[:77] + "..."

    parts = [show(a) for a in args] + [f"{k}={show(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _numel(v) -> int:
    size = v.size() if callable(v.size) else v.size  # torch: a method; numpy: an int
    return int(size.numel()) if hasattr(size, "numel") else int(size)
