"""Grading: compare a notebook's results with reference outputs stored as JSON data files.

``labkit/references/<notebook>.<profile>.json`` holds, per question, its maximum points, the comparison rule
(``"exact"`` or ``{"atol": a, "rtol": r}``) and the expected value, or for a function check the stored
inputs and expected outputs. :class:`Grader` compares against that file, always with the file's rule and
points. Environment variables change what a Grader does:

- ``LABKIT_RECORD=<path>``: record mode. Checks compare nothing; they store values, rules and points into a
  reference file at ``<path>``. :func:`make_references` runs a whole notebook this way. With
  ``LABKIT_HIDDEN_SEED=<int>`` a function check also records hidden cases drawn with that seed
  (``labkit release`` does so for the instructor's references).
- ``LABKIT_RESULTS=<path>``: every check also appends one JSON line with its outcome there.
- ``LABKIT_SUBMIT=<path>``: submission mode (``labkit grade``). Checks compare nothing and raise nothing;
  they append what the notebook produced (values, and the outputs of checked functions on the stored
  inputs) as JSON lines. :func:`score_submission` compares those, in the grading process, with
  references it read before the submission ran, so code in a submission cannot change its own score.
- ``LABKIT_REFERENCES=<folder>``: read references there instead of the kit's ``labkit/references``.

Values are stored and compared as :mod:`labkit.answers` says; :mod:`labkit.scoring` judges them (the
same code scores a submission in ``labkit grade``).
"""

from __future__ import annotations

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
from labkit.scoring import failure_text, function_problems, value_basis, value_problems

REFERENCES_DIR = Path(__file__).resolve().parent / "references"
REFERENCES_ENV = "LABKIT_REFERENCES"
RECORD_ENV = "LABKIT_RECORD"
RESULTS_ENV = "LABKIT_RESULTS"
SUBMIT_ENV = "LABKIT_SUBMIT"
HIDDEN_SEED_ENV = "LABKIT_HIDDEN_SEED"


class GradingError(AssertionError):
    """A result does not match its reference."""


class MissingReferenceError(LookupError):
    """No reference file for a notebook and profile, or no entry for a question in it."""


class ReferenceConflictError(RuntimeError):
    """Newly recorded references differ from the existing reference file."""


# ---- the grader --------------------------------------------------------------------------------------

class Grader:
    """Checks one notebook's results. The quick reference file ``<notebook>.quick.json`` is the catalog:
    every question's kind, points, rule, property and stored function cases. A value is compared with the
    reference recorded for the run's profile / data set (``<notebook>.<profile>[.<dataset>].json``) where
    one exists; else with the catalog's if the question is data-independent; else judged by its property
    (:mod:`labkit.properties`) on this run's own answers; a question with none of these is ungraded."""

    def __init__(self, notebook: str, profile: str = "quick", dataset: str | None = None, *,
                 references_dir: str | Path | None = None):
        self.notebook, self.profile = _check_name("notebook", notebook), _check_name("profile", profile)
        self.dataset = None if dataset is None else _check_name("dataset", dataset)
        refs = Path(references_dir or kit_references())
        self.reference_path = refs / reference_name(notebook, profile, dataset)
        catalog_path = refs / reference_name(notebook, "quick", None)
        self.record_path = os.environ.get(RECORD_ENV) or None
        self.results_path = os.environ.get(RESULTS_ENV) or None
        self.submit_path = os.environ.get(SUBMIT_ENV) or None
        self.hidden_seed = os.environ.get(HIDDEN_SEED_ENV) or None
        self._rows: dict[str, dict] = {}
        self._answers: dict[str, object] = {}
        self._recorded: dict | None = None
        if self.record_path:
            self._questions: dict[str, dict] = {}
            return
        if not catalog_path.is_file():
            raise MissingReferenceError(
                f"no reference file {catalog_path} for notebook {notebook!r}; create it with "
                f"`labkit references {notebook} --profile quick`")
        self._questions = json.loads(catalog_path.read_text())["questions"]
        if self.reference_path.is_file():
            self._recorded = json.loads(self.reference_path.read_text())["questions"]
        else:
            where = f"profile {profile!r}" + (f", data set {dataset!r}" if dataset else "")
            how = f"labkit references {notebook} --profile {profile}"
            how += f" --dataset {dataset}" if dataset else ""
            print(f"NOTE: no recorded reference for {where} ({self.reference_path.name}): value checks are "
                  "judged by their properties on this run's own answers (data-independent ones against the "
                  f"quick references); a check with neither is UNGRADED (an instructor records references "
                  f"with `{how}`).")

    @property
    def ungraded(self) -> bool:
        """Whether some value checks of this run are ungraded (no reference and no property)."""
        return any(value_basis(e, self._recorded_entry(q)) is None
                   for q, e in self._questions.items() if e["kind"] == "value")

    def check(self, question_id: str, value, *, points: float = 1, atol: float | None = None,
              rtol: float | None = None, expect: dict | None = None, data_independent: bool = False) -> None:
        """Judge ``value`` as question ``question_id`` (see the class docstring); raise GradingError with a
        diff when it fails. ``points``/``atol``/``rtol``/``expect`` (a property from
        :mod:`labkit.properties`)/``data_independent`` only matter when recording references."""
        if self.record_path:
            entry = {"kind": "value", "points": _check_points(points), "rule": Rule(atol, rtol).to_json(),
                     "expected": encode(value)}
            if expect is not None:
                entry["expect"] = properties.validate(expect)
            if data_independent:
                entry["data_independent"] = True
            self._record(question_id, entry)
            return
        entry = self._entry(question_id, "value")
        got = encode_answer(value)
        self._answers[question_id] = got
        if self.submit_path:
            self._submit(question_id, "value", got)
            return
        recorded = self._recorded_entry(question_id)
        basis = value_basis(entry, recorded)
        if basis is None:
            self._rows[question_id] = {"question": question_id, "points": 0, "max": 0, "status": "ungraded"}
            print(f"ungraded {question_id}: {describe(got)} (no reference for this profile / data set "
                  "and no property)")
            return
        self._score(question_id, entry, value_problems(entry, recorded, got, self._answers), basis)

    def check_function(self, question_id: str, fn: Callable, *, inputs: list | None = None, points: float = 1,
                       atol: float | None = None, rtol: float | None = None,
                       hidden: Callable | None = None) -> None:
        """Run ``fn`` on the stored cases of ``question_id`` and compare each output with the stored one.
        Each case is a tuple of positional arguments or a dict of keyword arguments. ``inputs``, ``points``,
        ``atol``, ``rtol`` and ``hidden`` only matter when recording (then ``inputs`` is required);
        ``hidden(rng)`` returns extra cases for the instructor's hidden tests (default: ``inputs`` with every
        float array redrawn, see :func:`hidden_cases`)."""
        if not callable(fn):
            raise TypeError(f"fn={fn!r}: allowed is a function")
        if self.record_path:
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
            return
        entry = self._entry(question_id, "function")
        cases = entry["cases"] + (entry.get("hidden_cases", []) if self.submit_path else [])
        outputs = []
        for case in cases:
            args, kwargs = decode(case["args"]), decode(case["kwargs"])
            try:
                outputs.append(encode_answer(fn(*args, **kwargs)))
            except Exception as e:  # a student's function may fail in any way; report it as a failed case
                outputs.append({"$raised": f"raised {type(e).__name__}: {e}"})
        if self.submit_path:
            self._submit(question_id, "function", outputs)
            return
        self._score(question_id, entry, function_problems(entry, outputs, getattr(fn, "__name__", None)),
                    "reference")

    def _recorded_entry(self, question_id: str) -> dict | None:
        return None if self._recorded is None else self._recorded.get(question_id)

    def summary(self) -> list[dict]:
        """Print the score table (question, points, max, status, basis) and the total of the graded
        points, naming the ungraded ones; return the rows."""
        rows = [self._rows.get(q, {"question": q, "points": 0, "max": e["points"], "status": "not run"})
                for q, e in self._questions.items()]
        rows += [r for q, r in self._rows.items() if q not in self._questions]
        rows = [{**r, "basis": r.get("basis", "")} for r in rows]
        print(format_table(rows))
        graded = [r for r in rows if r["status"] != "ungraded"]
        ungraded = [r for r in rows if r["status"] == "ungraded"]
        print(f"total: {sum(r['points'] for r in graded):g} / {sum(r['max'] for r in graded):g}")
        if ungraded:
            stake = sum(self._questions.get(r["question"], {}).get("points", 0) for r in ungraded)
            print(f"UNGRADED: {stake:g} more points in {len(ungraded)} checks "
                  f"({', '.join(r['question'] for r in ungraded)}): no reference for this profile / data set "
                  "and no property to judge them by")
        return rows

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

    def _record(self, question_id: str, entry: dict) -> None:
        _check_name("question_id", question_id, pattern=r"[^\s]+")
        if question_id in self._questions:
            raise ValueError(f"question {question_id!r} is recorded twice; question ids must be unique")
        self._questions[question_id] = entry
        self._rows[question_id] = {"question": question_id, "points": entry["points"], "max": entry["points"],
                                   "status": "recorded"}
        write_json_atomic(self.record_path, {"notebook": self.notebook, "profile": self.profile,
                                             "dataset": self.dataset, "questions": self._questions})
        print(f"recorded {question_id} ({entry['points']:g} points, rule {Rule.from_json(entry['rule'])})")

    def _submit(self, question_id: str, kind: str, answer) -> None:
        with open(self.submit_path, "a") as f:
            f.write(json.dumps({"question": question_id, "kind": kind, "answer": answer}) + "\n")
        self._rows[question_id] = {"question": question_id, "points": 0,
                                   "max": self._questions[question_id]["points"], "status": "submitted"}
        print(f"submitted {question_id} (scored by `labkit grade`)")

    def _score(self, question_id: str, entry: dict, problems: list[str], basis: str) -> None:
        passed, max_points = not problems, entry["points"]
        message = "" if passed else failure_text(question_id, problems, basis)
        self._rows[question_id] = {"question": question_id, "points": max_points if passed else 0,
                                   "max": max_points, "status": "pass" if passed else "FAIL", "basis": basis}
        if self.results_path:
            line = {"notebook": self.notebook, "profile": self.profile, "question": question_id,
                    "points": self._rows[question_id]["points"], "max_points": max_points, "passed": passed,
                    "message": message}
            with open(self.results_path, "a") as f:
                f.write(json.dumps(line) + "\n")
        if not passed:
            raise GradingError(message)
        print(f"pass {question_id} ({max_points:g}/{max_points:g} points)")


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
    """Write ``doc`` to ``path`` through a temporary file and os.replace; one line per question."""
    head = {k: v for k, v in doc.items() if k != "questions"}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    questions = [f"  {json.dumps(q)}: {json.dumps(e)}" for q, e in doc.get("questions", {}).items()]
    text = "{\n" + "\n".join(lines) + '\n "questions": {\n' + ",\n".join(questions) + "\n }\n}\n"
    with atomic_open(path, "w") as f:
        f.write(text)


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
        new = json.loads(record.read_text())
    if (new["notebook"], new["profile"], new.get("dataset")) != (name, profile, dataset):
        raise ValueError(f"{path} recorded references for notebook {new['notebook']!r}, profile "
                         f"{new['profile']!r}, dataset {new.get('dataset')!r}; its Grader must be "
                         f"Grader({name!r}, profile=PROFILE, dataset=DATASET)")
    if target.is_file():
        old = json.loads(target.read_text())["questions"]
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
