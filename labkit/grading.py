"""Grading: compare a notebook's results with reference outputs stored as JSON data files.

``labkit/references/<notebook>.<profile>.json`` holds, per question, its maximum points, the comparison rule
(``"exact"`` or ``{"atol": a, "rtol": r}``) and the expected value, or for a function check the stored
inputs and expected outputs. :func:`Grader` returns the grader a run needs, chosen once from the
environment: a :class:`Recorder`, an :class:`Answerer` or a :class:`Checker`, each with the file's rules and
points; a question's outcome is a :class:`labkit.results.Result`.

- ``LABKIT_RECORD=<path>``: record mode (:class:`Recorder`). Checks compare nothing; they store values, rules
  and points into a reference file at ``<path>``. :func:`make_references` runs a whole notebook this way. With
  ``LABKIT_HIDDEN_SEED=<int>`` a function check also records hidden cases drawn with that seed
  (``labkit release`` does so for the instructor's references).
- ``LABKIT_SUBMIT=<path>``: submission mode (:class:`Answerer`, ``labkit grade``'s trusted kernel). Checks
  compare nothing and raise nothing; they append what the notebook produced (values, and the outputs of
  checked functions on the stored and hidden inputs) as JSON lines, which
  :func:`labkit.scoring.score_submission` scores in the grading process.
- otherwise (:class:`Checker`) a check is judged at once; with ``LABKIT_RESULTS=<path>`` each one also
  appends its result there as a JSON line.
- ``LABKIT_REFERENCES=<folder>``: read references there instead of the kit's ``labkit/references``.

Values are stored and compared as :mod:`labkit.answers` says; :mod:`labkit.scoring` judges them (the
same code scores a submission in ``labkit grade``).

Size (about 500 lines): the recorder, the answerer and the checker share the catalog, its rules and the
reference files; apart they would import each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from labkit import HOME, properties
from labkit.answers import Rule, compare, decode, describe, encode, encode_answer
from labkit.atomic import atomic_open
from labkit.checks import check_number
from labkit.results import Result, Status, table, totals
from labkit.scoring import function_problems, judged, ungraded_reason, unmet, value_basis, value_problems

REFERENCES_DIR = Path(__file__).resolve().parent / "references"
REFERENCES_ENV = "LABKIT_REFERENCES"
RECORD_ENV = "LABKIT_RECORD"
RESULTS_ENV = "LABKIT_RESULTS"
SUBMIT_ENV = "LABKIT_SUBMIT"
HIDDEN_SEED_ENV = "LABKIT_HIDDEN_SEED"


class MissingReferenceError(LookupError):
    """No reference file for a notebook and profile, or no entry for a question in it."""


class ReferenceConflictError(RuntimeError):
    """Newly recorded references differ from the existing reference file."""


class DamagedReferenceError(ValueError):
    """A reference file whose checksum does not match its content (a damaged disk, a hand edit)."""


# ---- the grader: recording references, answering in a submission, checking now ---------------------

def Grader(notebook: str, profile: str = "quick", dataset: str | None = None, *,  # the notebooks' name
           references_dir: str | Path | None = None) -> Recorder | Answerer | Checker:
    """The grader of one notebook's run, chosen once from the environment (see the module docstring): a
    :class:`Recorder` under ``LABKIT_RECORD``, an :class:`Answerer` under ``LABKIT_SUBMIT``, else a
    :class:`Checker`. All three take the same ``check`` / ``check_function`` calls and ``summary()``."""
    notebook, profile = _check_name("notebook", notebook), _check_name("profile", profile)
    dataset = None if dataset is None else _check_name("dataset", dataset)
    if os.environ.get(RECORD_ENV):
        return Recorder(notebook, profile, dataset, os.environ[RECORD_ENV], os.environ.get(HIDDEN_SEED_ENV))
    refs = Path(references_dir or kit_references())
    if os.environ.get(SUBMIT_ENV):
        return Answerer(notebook, profile, dataset, refs, os.environ[SUBMIT_ENV])
    return Checker(notebook, profile, dataset, refs, os.environ.get(RESULTS_ENV) or None)


class Recorder:
    """Record mode: checks compare nothing; they store values, rules and points (and, with a hidden seed,
    the function checks' hidden cases) into a reference file at ``path``."""

    def __init__(self, notebook: str, profile: str, dataset: str | None, path: str, hidden_seed: str | None):
        self.notebook, self.profile, self.dataset = notebook, profile, dataset
        self.path, self.hidden_seed = path, hidden_seed
        self._questions: dict[str, dict] = {}

    def check(self, question_id: str, value, *, points: float = 1, atol: float | None = None,
              rtol: float | None = None, expect: dict | None = None, data_independent: bool = False,
              sealed: bool = False, requires: tuple[str, ...] = ()) -> None:
        """Record ``value`` as question ``question_id``'s reference, with its rule (``atol``/``rtol``),
        ``points``, property (``expect``, from :mod:`labkit.properties`), ``data_independent`` flag,
        ``sealed`` flag (the value is the answer itself, e.g. a True/False verdict: the student
        distribution ships it without its expected value, and no message shows it) and ``requires``
        (earlier questions that check the model this value is about: its sparsity, bits, channels; the
        value counts only when they pass, :func:`labkit.scoring.unmet`)."""
        entry = {"kind": "value", "points": _check_points(points), "rule": Rule(atol, rtol).to_json(),
                 "expected": encode(value)}
        if expect is not None:
            entry["expect"] = properties.validate(expect)
        if requires:
            unknown = [q for q in requires if q not in self._questions]
            if isinstance(requires, str) or unknown:
                raise ValueError(f"requires={requires!r}: allowed is a list of questions checked before "
                                 f"{question_id!r} (not yet checked: {unknown})")
            entry["requires"] = list(requires)
        for flag, on in (("data_independent", data_independent), ("sealed", sealed)):
            if on:
                entry[flag] = True
        self._record(question_id, entry)

    def check_function(self, question_id: str, fn: Callable, *, inputs: list | None = None, points: float = 1,
                       atol: float | None = None, rtol: float | None = None,
                       hidden: Callable | None = None) -> None:
        """Record ``fn``'s outputs on ``inputs`` (cases: tuples of positional arguments or dicts of keyword
        arguments), and with a hidden seed on ``hidden(rng)``'s cases (default: :func:`hidden_cases`)."""
        _check_function(fn)
        if not inputs or not isinstance(inputs, (list, tuple)):
            raise ValueError(f"inputs={inputs!r}: allowed is a non-empty list of cases when recording")
        entry = {"kind": "function", "function": getattr(fn, "__name__", repr(fn)),
                 "points": _check_points(points), "rule": Rule(atol, rtol).to_json(),
                 "cases": _record_cases(fn, inputs)}
        if self.hidden_seed is not None:
            rng = np.random.default_rng([int(self.hidden_seed), zlib.crc32(question_id.encode())])
            made = hidden(rng) if hidden is not None else hidden_cases(inputs, rng)
            entry["hidden_cases"] = _record_cases(fn, made)
        self._record(question_id, entry)

    def summary(self) -> list[Result]:
        """Print and return what was recorded (every question passed, by definition)."""
        results = [Result(q, Status.PASSED, e["points"], e["points"], "recorded")
                   for q, e in self._questions.items()]
        print(format_table(table(results)))
        return results

    def _record(self, question_id: str, entry: dict) -> None:
        _check_name("question_id", question_id, pattern=r"[^\s]+")
        if question_id in self._questions:
            raise ValueError(f"question {question_id!r} is recorded twice; question ids must be unique")
        self._questions[question_id] = entry
        write_json_atomic(self.path, {"notebook": self.notebook, "profile": self.profile,
                                      "dataset": self.dataset, "questions": self._questions})
        print(f"recorded {question_id} ({entry['points']:g} points, rule {Rule.from_json(entry['rule'])})")


class _Catalog:
    """The references a run is judged against: the quick reference file ``<notebook>.quick.json`` is the
    catalog (every question's kind, points, rule, property and stored function cases); the file recorded
    for the run's profile / data set (``<notebook>.<profile>[.<dataset>].json``) holds its values."""

    def __init__(self, notebook: str, profile: str, dataset: str | None, refs: Path):
        self.notebook, self.profile, self.dataset = notebook, profile, dataset
        self.reference_path = refs / reference_name(notebook, profile, dataset)
        catalog_path = refs / reference_name(notebook, "quick", None)
        if not catalog_path.is_file():
            raise MissingReferenceError(
                f"no reference file {catalog_path} for notebook {notebook!r}; create it with "
                f"`labkit references {notebook} --profile quick`")
        self._questions: dict[str, dict] = read_references(catalog_path)["questions"]
        self._recorded = None
        if self.reference_path.is_file():
            self._recorded = read_references(self.reference_path)["questions"]
        else:
            where = f"profile {profile!r}" + (f", data set {dataset!r}" if dataset else "")
            how = f"labkit references {notebook} --profile {profile}"
            how += f" --dataset {dataset}" if dataset else ""
            print(f"NOTE: no recorded reference for {where} ({self.reference_path.name}): value checks are "
                  "judged by their properties on this run's own answers (data-independent ones against the "
                  f"quick references); a check with neither is UNGRADED (an instructor records references "
                  f"with `{how}`).")

    def _entry(self, question_id: str, kind: str) -> dict:
        if question_id not in self._questions:
            raise MissingReferenceError(
                f"no reference for question {question_id!r} in {self.reference_path}; regenerate it with "
                f"`labkit references {self.notebook} --profile {self.profile}`")
        entry = self._questions[question_id]
        if entry["kind"] != kind:
            method = "check_function" if entry["kind"] == "function" else "check"
            raise ValueError(f"question {question_id!r} is a {entry['kind']} check in the reference; "
                             f"use grader.{method}")
        return entry

    def _recorded_entry(self, question_id: str) -> dict | None:
        return None if self._recorded is None else self._recorded.get(question_id)

    def _outputs(self, fn: Callable, cases: list[dict]) -> list:
        _check_function(fn)
        outputs = []
        for case in cases:
            args, kwargs = decode(case["args"]), decode(case["kwargs"])
            try:
                outputs.append(encode_answer(fn(*args, **kwargs)))
            except Exception as e:  # a student's function may fail in any way; report it as a failed case
                outputs.append({"$raised": f"raised {type(e).__name__}: {e}"})
        return outputs


class Answerer(_Catalog):
    """Submission mode (``labkit grade``): checks compare nothing and raise nothing; they append what the
    notebook produced (values, and the outputs of checked functions on the stored and hidden inputs) as
    JSON lines to ``path``, which :func:`labkit.scoring.score_submission` scores in the grading process."""

    def __init__(self, notebook: str, profile: str, dataset: str | None, refs: Path, path: str):
        super().__init__(notebook, profile, dataset, refs)
        self.path = path

    def check(self, question_id: str, value, *, points: float = 1, atol: float | None = None,
              rtol: float | None = None, expect: dict | None = None, data_independent: bool = False,
              sealed: bool = False, requires: tuple[str, ...] = ()) -> None:
        """Append ``value`` as the answer to ``question_id`` (the options matter only when recording)."""
        self._entry(question_id, "value")
        self._answer(question_id, "value", encode_answer(value))

    def check_function(self, question_id: str, fn: Callable, *, inputs: list | None = None, points: float = 1,
                       atol: float | None = None, rtol: float | None = None,
                       hidden: Callable | None = None) -> None:
        """Append ``fn``'s outputs on the question's stored and hidden cases (the options matter only when
        recording)."""
        entry = self._entry(question_id, "function")
        cases = entry["cases"] + entry.get("hidden_cases", [])
        self._answer(question_id, "function", self._outputs(fn, cases))

    def summary(self) -> list[Result]:
        print("answers submitted: `labkit grade` scores them and writes the score table")
        return []

    def _answer(self, question_id: str, kind: str, answer) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"question": question_id, "kind": kind, "answer": answer}) + "\n")
        print(f"answered {question_id} (scored by `labkit grade`)")


class Checker(_Catalog):
    """Checks a run now: a value against the reference recorded for the run's profile / data set where
    one exists, else against the catalog's if the question is data-independent, else by its property
    (:mod:`labkit.properties`) on this run's own answers; a question with none of these is ungraded. Each
    check reports on its own and returns its :class:`~labkit.results.Result`: a failure prints its diff
    (on stderr, which Jupyter shows in red) and the cell goes on, so the notebook's total is what
    ``labkit grade`` gives the same file. With ``results`` (a path) every check also appends its result
    there as a JSON line (``labkit run`` adds them up)."""

    def __init__(self, notebook: str, profile: str, dataset: str | None, refs: Path, results: str | None):
        super().__init__(notebook, profile, dataset, refs)
        self.results_path = results
        self._results: dict[str, Result] = {}
        self._answers: dict[str, object] = {}

    @property
    def ungraded(self) -> bool:
        """Whether some value checks of this run are ungraded (no reference and no property)."""
        return any(value_basis(e, self._recorded_entry(q)) is None
                   for q, e in self._questions.items() if e["kind"] == "value")

    def check(self, question_id: str, value, *, points: float = 1, atol: float | None = None,
              rtol: float | None = None, expect: dict | None = None, data_independent: bool = False,
              sealed: bool = False, requires: tuple[str, ...] = ()) -> Result:
        """Judge ``value`` as question ``question_id`` (see the class docstring; the options matter only
        when recording)."""
        entry = self._entry(question_id, "value")
        got = encode_answer(value)
        self._answers[question_id] = got
        recorded = self._recorded_entry(question_id)
        basis = value_basis(entry, recorded)
        if basis is None:
            why = ungraded_reason(entry)
            print(f"ungraded {question_id}: {describe(got)} ({why})")
            return self._keep(Result(question_id, Status.UNGRADED, 0, entry["points"], message=why))
        problems = value_problems(entry, recorded, got, self._answers) or unmet(entry, self._results)
        return self._judge(judged(question_id, entry["points"], problems, basis))

    def check_function(self, question_id: str, fn: Callable, *, inputs: list | None = None, points: float = 1,
                       atol: float | None = None, rtol: float | None = None,
                       hidden: Callable | None = None) -> Result:
        """Run ``fn`` on the stored cases of ``question_id`` and compare each output with the stored one (the
        options matter only when recording)."""
        entry = self._entry(question_id, "function")
        problems = function_problems(entry, self._outputs(fn, entry["cases"]), getattr(fn, "__name__", None))
        return self._judge(judged(question_id, entry["points"], problems, "reference"))

    def summary(self) -> list[Result]:
        """Print the score table (question, points, max, status, basis) and the total of the counted
        points, naming the ungraded ones; return the results, one per catalog question (a question whose
        check never ran is ``not run``, and so recorded in the results file)."""
        for q, e in self._questions.items():  # a check its cell never reached: 0 points, in the results too
            if q not in self._results:
                self._keep(Result(q, Status.NOT_RUN, 0, e["points"], message="its check did not run"))
        results = [self._results[q] for q in self._questions]
        print(format_table(table(results)))
        points, most = totals(results)
        print(f"total: {points:g} / {most:g}")
        ungraded = [r for r in results if r.status is Status.UNGRADED]
        for why in dict.fromkeys(r.message for r in ungraded):
            these = [r for r in ungraded if r.message == why]
            print(f"UNGRADED: {sum(r.max_points for r in these):g} more points in {len(these)} checks "
                  f"({', '.join(r.question for r in these)}): {why}")
        return results

    def _keep(self, result: Result) -> Result:
        self._results[result.question] = result
        if self.results_path:
            with open(self.results_path, "a") as f:
                f.write(json.dumps({"notebook": self.notebook, "profile": self.profile,
                                    **result.to_row()}) + "\n")
        return result

    def _judge(self, result: Result) -> Result:
        self._keep(result)
        if result.status is Status.FAILED:
            print(f"FAIL {result.question} (0/{result.max_points:g} points): {result.message}",
                  file=sys.stderr, flush=True)
        else:
            print(f"pass {result.question} ({result.points:g}/{result.max_points:g} points)")
        return result


def _check_function(fn) -> None:
    if not callable(fn):
        raise TypeError(f"fn={fn!r}: allowed is a function")


def hidden_cases(inputs: list, rng: np.random.Generator) -> list:
    """Cases for hidden tests made from public ``inputs``: every float array / tensor redrawn with the same
    shape, dtype and device, mean and spread, its zeros kept at zero (an array with fewer than two distinct
    nonzero values is kept as it is: a constant says something by being one); all else unchanged."""
    return [_redrawn(case, rng) for case in inputs]


def _redrawn(value, rng):
    torch = sys.modules.get("torch")
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return _redraw(value, rng)
    if torch is not None and isinstance(value, torch.Tensor) and value.is_floating_point():
        return torch.from_numpy(_redraw(value.detach().cpu().numpy(), rng)).to(value.dtype).to(value.device)
    if isinstance(value, (list, tuple)):
        return type(value)(_redrawn(v, rng) for v in value)
    if isinstance(value, dict):
        return {k: _redrawn(v, rng) for k, v in value.items()}
    return value


def _redraw(a: np.ndarray, rng) -> np.ndarray:
    nonzero = a != 0
    if np.unique(a[nonzero]).size < 2:
        return a.copy()
    values = a[nonzero].astype(float)
    fresh = rng.normal(values.mean(), values.std(), a.shape)
    return np.where(nonzero, fresh, 0.0).astype(a.dtype)


def _record_cases(fn: Callable, inputs) -> list[dict]:
    cases = []
    for case in inputs:
        args, kwargs = _split_case(case)
        stored = {"args": encode(args), "kwargs": encode(kwargs)}  # before fn can mutate them
        cases.append({**stored, "expected": encode(fn(*args, **kwargs))})
    return cases


def _split_case(case) -> tuple[list, dict]:
    if isinstance(case, dict):
        return [], case
    if isinstance(case, (list, tuple)):
        return list(case), {}
    raise TypeError(f"input case {case!r}: allowed is a tuple of arguments or a dict of keyword arguments")


def _check_name(name: str, value, pattern: str = r"[A-Za-z0-9_\-]+") -> str:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ValueError(f"{name}={value!r}: allowed is a non-empty string matching {pattern}")
    return value


def _check_points(points) -> float:
    if check_number("points", points, allowed="a finite number > 0") <= 0:
        raise ValueError(f"points={points!r}: allowed is a finite number > 0")
    return points


def format_table(rows: list[dict]) -> str:
    """Rows of equal keys as a fixed-width text table (floats with 4 significant digits)."""
    if not rows:
        return "(no rows)"
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()] for r in rows]
    header = [str(k) for k in rows[0]]
    widths = [max(len(c) for c in col) for col in zip(header, *cells, strict=True)]
    lines = [header, ["-" * w for w in widths], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


# ---- writing reference files -------------------------------------------------------------------------

def write_json_atomic(path: str | Path, doc: dict) -> None:
    """Write ``doc`` to ``path`` through a temporary file and os.replace; one line per question, and a
    checksum of the content that :func:`read_references` verifies."""
    head = {k: v for k, v in doc.items() if k not in ("questions", "checksum")} | {"checksum": _checksum(doc)}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    questions = [f"  {json.dumps(q)}: {json.dumps(e)}" for q, e in doc.get("questions", {}).items()]
    text = "{\n" + "\n".join(lines) + '\n "questions": {\n' + ",\n".join(questions) + "\n }\n}\n"
    with atomic_open(path, "w") as f:
        f.write(text)


def read_references(path: str | Path) -> dict:
    """The reference document at ``path`` (without its checksum); DamagedReferenceError when the checksum
    :func:`write_json_atomic` wrote is missing or does not match (a flipped bit is never a reference)."""
    try:
        doc = json.loads(Path(path).read_bytes())
        intact = isinstance(doc, dict) and doc.pop("checksum", None) == _checksum(doc)
    except ValueError:  # not JSON (or not UTF-8) any more
        intact = False
    if not intact:
        raise DamagedReferenceError(f"reference file {path} is damaged (its checksum does not match its "
                                    "content): restore it (git checkout, or labkit release / labkit "
                                    "references again)")
    return doc


def _checksum(doc: dict) -> str:
    content = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def changed_questions(old: dict, new: dict) -> list[str]:
    """Questions added, removed or changed from reference questions ``old`` to ``new``: a change is other
    points, rule, kind or inputs, or an expected value that fails the old rule."""
    changes = [f"{q} (removed)" for q in old if q not in new] + [f"{q} (added)" for q in new if q not in old]
    for q in old.keys() & new.keys():
        o, n = old[q], new[q]
        if _metadata(o) != _metadata(n):
            changes.append(f"{q} (points, rule or kind)")
            continue
        rule = Rule.from_json(o["rule"])
        if o["kind"] == "value":
            problems = compare(o["expected"], n["expected"], rule)
        elif [(c["args"], c["kwargs"]) for c in o["cases"]] != [(c["args"], c["kwargs"]) for c in n["cases"]]:
            problems = ["inputs"]
        else:
            problems = [p for oc, nc in zip(o["cases"], n["cases"], strict=True)
                        for p in compare(oc["expected"], nc["expected"], rule)]
        if problems:
            changes.append(f"{q} ({problems[0].splitlines()[0]})")
    return sorted(changes)


def _metadata(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in ("expected", "cases")}


def kit_references() -> Path:
    """The folder of the kit's reference files: ``$LABKIT_REFERENCES`` if set, else the package's."""
    return Path(os.environ.get(REFERENCES_ENV) or REFERENCES_DIR)


def reference_name(notebook: str, profile: str, dataset: str | None) -> str:
    """``<notebook>.<profile>.json``, or ``<notebook>.<profile>.<dataset>.json`` for a DATASET override."""
    return f"{notebook}.{profile}.json" if dataset is None else f"{notebook}.{profile}.{dataset}.json"


def make_references(notebook: str | Path, profile: str, force: bool = False, dataset: str | None = None, *,
                    references_dir: str | Path | None = None, runs_dir: str | Path | None = None) -> Path:
    """Run ``notebook`` with PROFILE=profile in record mode (the executed copy goes to ``runs_dir``, default
    ``<repo>/runs/references``) and write ``<references_dir>/<notebook>.<profile>.json``; return its path.
    Without ``force`` an existing file is kept when every new value passes its old rule (a rerun within
    tolerance is no change) and ReferenceConflictError is raised when something really changed; with
    ``force`` the new recording replaces the file whenever it differs at all."""
    from labkit.runner import execute_notebook, resolve_notebook

    path = resolve_notebook(notebook)
    name, profile = path.stem, _check_name("profile", profile)
    target = Path(references_dir or kit_references()) / reference_name(name, profile, dataset)
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "record.json"
        execute_notebook(path, Path(runs_dir or HOME / "runs" / "references") / f"{name}.{profile}.ipynb",
                         {"PROFILE": profile, "DATASET": dataset}, env={RECORD_ENV: str(record)})
        if not record.is_file():
            raise RuntimeError(f"{path} ran no checks, so there is nothing to record")
        new = read_references(record)
    if (new["notebook"], new["profile"], new.get("dataset")) != (name, profile, dataset):
        raise ValueError(f"{path} recorded references for notebook {new['notebook']!r}, profile "
                         f"{new['profile']!r}, dataset {new.get('dataset')!r}; its Grader must be "
                         f"Grader({name!r}, profile=PROFILE, dataset=DATASET)")
    if target.is_file():
        old = read_references(target)["questions"]
        if old == new["questions"]:
            return target
        if not force:
            changes = changed_questions(old, new["questions"])
            if not changes:
                return target
            raise ReferenceConflictError(f"{target} exists and these questions changed:\n  "
                                         + "\n  ".join(changes) + "\nrerun with --force to overwrite it")
    write_json_atomic(target, new)
    return target
