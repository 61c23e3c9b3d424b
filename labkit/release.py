"""Releasing a lab (``labkit release``): a student folder and an instructor folder, as otter-grader's
``dist/student`` and ``dist/autograder``.

``<out>/student/<lab>.ipynb`` is the notebook students get: every solution region is nbgrader's
``# YOUR CODE HERE`` / ``raise NotImplementedError()``, outputs are stripped, cells keep their nbgrader
metadata (so their cells can be matched at grading). ``<out>/instructor/`` holds the source notebook and
its references with hidden cases added to every function check: inputs drawn with a fresh seed from the
public ones, expected outputs from the solution's own functions. Those exist nowhere else, so a function
that returns the public cases' stored outputs passes the notebook's own check and fails grading.
``validate`` grades the solution and the student version with the instructor folder: the solution must
score full marks, the blank student version at most ``BLANK_SHARE`` of the points, failing every
function check of the functions it blanked.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from labkit import autograde, cells, grading, runner
from labkit.atomic import atomic_open, exclusive
from labkit.results import Status, totals

BLANK_SHARE = 0.10  # the most a blank student version may score: only questions that need no student code


def student_version(nb) -> tuple[object, list[str]]:
    """A copy of ``nb`` with code solutions blanked, written answers (markdown solution cells) replaced by
    ``YOUR ANSWER HERE`` and outputs stripped, and the blanked function names. A notebook without solution
    regions is refused (nothing for students to do)."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    blanked = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source, names = cells.blank_solutions(cell.source)
            blanked += names
            _strip(cell)
        elif cells.is_solution(cell):  # a written answer: nbgrader's stub, as its ClearSolutions writes it
            cell.source = cells.ANSWER_STUB
    if not any("# YOUR CODE HERE" in c.source for c in nb.cells if c.cell_type == "code"):
        raise ValueError(f"no {cells.BEGIN} / {cells.END} region: nothing to release")
    return nb, sorted(set(blanked))


def _strip(cell) -> None:
    cell.outputs, cell.execution_count = [], None
    cell.metadata.pop("papermill", None)
    cell.metadata.pop("execution", None)


@dataclass
class Release:
    """Where ``release_notebook`` wrote a lab."""

    lab: str
    student: Path  # the student notebook
    instructor: Path  # the instructor folder (source notebook, references with hidden cases)
    blanked: list[str]


def versions(source: str | Path) -> tuple[str, autograde.Material, object, object, list[str]]:
    """What ``release_notebook`` writes for ``source``, without running it: the lab, its material, the
    instructor's notebook (nbgrader metadata from the references, outputs stripped), the student version
    and the blanked function names."""
    lab = autograde.lab_of(Path(source))
    nb = runner.read_notebook(source)  # first: a file that is no notebook is refused in one clear line
    material = autograde.load_material(lab, source=Path(source))
    cells.tag(nb, {q: e["points"] for q, e in material.catalog().items()})
    for cell in nb.cells:
        if cell.cell_type == "code":
            _strip(cell)
    return (lab, material, nb, *student_version(nb))


def release_notebook(source: str | Path, out_dir: str | Path, *, seed: int | None = None,
                     timeout: float = 600.0) -> Release:
    """Write ``<out_dir>/student/<lab>.ipynb`` and ``<out_dir>/instructor/`` for ``source`` (a kit
    notebook with references). Hidden cases come from running the source notebook once in record mode
    with the ``tiny`` profile (function checks do not depend on the data) and ``seed`` (default: fresh)."""
    source, out_dir = Path(source), Path(out_dir)
    lab, material, nb, student, blanked = versions(source)
    hidden = _hidden_cases(nb, lab, secrets.randbelow(2**31) if seed is None else seed, timeout)
    # every file is written beside the release first and moved in at the end: a full disk or a kill
    # leaves each file as it was or whole, never half a file; the next release clears what a killed one staged
    with exclusive(out_dir, "labkit release"):
        staged = out_dir / f".{lab}.staging"
        shutil.rmtree(staged, ignore_errors=True)
        try:
            for name, doc in material.references.items():
                questions = {q: {**e, **({"hidden_cases": hidden[q]} if q in hidden else {})}
                             for q, e in doc["questions"].items()}
                grading.write_json_atomic(staged / "instructor" / "references" / name,
                                          {**doc, "questions": questions})
            write_notebook(nb, staged / "instructor" / f"{lab}.ipynb")
            write_notebook(student, staged / "student" / f"{lab}.ipynb")
            for path in sorted(p for p in staged.rglob("*") if p.is_file()):
                target = out_dir / path.relative_to(staged)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return Release(lab, out_dir / "student" / f"{lab}.ipynb", out_dir / "instructor", blanked)


def write_notebook(nb, path: Path) -> Path:
    """Write ``nb`` to ``path`` atomically; return ``path``."""
    with atomic_open(path, "w") as f:
        nbformat.write(nb, f)
    return path


def _hidden_cases(nb, lab: str, seed: int, timeout: float) -> dict[str, list]:
    """``{question: hidden cases with expected outputs}`` for every function check of ``nb``."""
    from labkit.runner import execute_notebook

    with tempfile.TemporaryDirectory(prefix="labkit-release-") as tmp:
        path, record = Path(tmp) / f"{lab}.ipynb", Path(tmp) / "record.json"
        nbformat.write(nb, path)
        execute_notebook(path, Path(tmp) / "run.ipynb", {"PROFILE": "tiny", "DATASET": None}, timeout=timeout,
                         env={grading.RECORD_ENV: str(record), grading.HIDDEN_SEED_ENV: str(seed)})
        questions = grading.read_references(record)["questions"]
    return {q: e["hidden_cases"] for q, e in questions.items() if "hidden_cases" in e}


@dataclass
class Validation:
    """What ``validate`` found for one lab; ``ok`` when the release behaves as it should."""

    lab: str
    blanked_functions: list[str]
    expected_student_failures: list[str]  # the function checks of blanked functions
    solution_failures: list[str]  # failed checks of the solution: must be none
    student_failures: list[str]  # failed checks of the student version
    student_points: float
    max_points: float

    @property
    def ok(self) -> bool:
        blanks_fail = set(self.expected_student_failures) <= set(self.student_failures)
        small = self.student_points <= BLANK_SHARE * self.max_points
        return not self.solution_failures and blanks_fail and small


def validate(release: Release, profile: str = "quick", timeout: float = 600.0) -> Validation:
    """Grade the solution and the student version with the instructor folder and compare with what a
    release promises (see :class:`Validation`)."""
    material = autograde.load_material(release.lab, release.instructor)
    functions = {q: e.get("function") for q, e in material.catalog().items() if e["kind"] == "function"}
    autograde.check_sandbox()

    def grade(path):  # automatic points only: written answers wait for the instructor
        return [r for r in autograde.grade_one(path, material, profile, timeout) if r.counted]

    def lost(results):
        return [r.question for r in results if r.status in (Status.FAILED, Status.NOT_RUN)]

    solution, student = grade(release.instructor / f"{release.lab}.ipynb"), grade(release.student)
    expected = sorted(q for q, f in functions.items() if f in release.blanked)
    return Validation(release.lab, release.blanked, expected, lost(solution), lost(student), *totals(student))
