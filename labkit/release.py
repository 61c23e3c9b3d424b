"""Student versions of the lab notebooks (``labkit release``), with nbgrader's markers and output.

Code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` at the same indentation, outputs are stripped. ``validate`` then
checks the release the way nbgrader's ``validate`` / ``validate --invert`` do: the solution notebook
passes every check, and the student notebook fails exactly the function checks of the functions it
blanked (and passes the other function checks).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from labkit import autograde

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*$",
                     re.MULTILINE | re.DOTALL)


def blank_solutions(source: str) -> tuple[str, list[str]]:
    """The cell source with every solution region replaced, and the names of the functions whose
    bodies held one. An unmatched marker is an error (it would leak or lose code)."""
    names = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = None
    for m in _REGION.finditer(source):
        line = source.count("\n", 0, m.start()) + 1
        names += [node.name for node in ast.walk(tree or ast.Module(body=[], type_ignores=[]))
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.lineno <= line <= node.end_lineno]
    student = _REGION.sub(lambda m: f"{m[1]}# YOUR CODE HERE\n{m[1]}raise NotImplementedError()", source)
    if BEGIN in student or END in student:
        raise ValueError(f"unmatched {BEGIN!r} / {END!r} marker in cell:\n{source[:200]}")
    return student, sorted(set(names))


def release_notebook(source: str | Path, out_dir: str | Path) -> tuple[Path, list[str]]:
    """Write the student version of ``source`` into ``out_dir``; return its path and the blanked
    function names. A notebook without solution regions is refused (nothing for students to do)."""
    nb = nbformat.read(source, as_version=4)
    blanked = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source, names = blank_solutions(cell.source)
            blanked += names
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("papermill", None)
            cell.metadata.pop("execution", None)
    if not any("# YOUR CODE HERE" in c.source for c in nb.cells if c.cell_type == "code"):
        raise ValueError(f"{source} has no {BEGIN} / {END} region: nothing to release")
    out = Path(out_dir) / Path(source).name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out, sorted(set(blanked))


@dataclass
class Validation:
    """What ``validate`` found for one notebook; ``ok`` when the release behaves as it should."""

    notebook: str
    blanked_functions: list[str]
    function_checks: list[str]  # every function check of the notebook
    expected_student_failures: list[str]  # the function checks of blanked functions
    solution_failures: list[str]  # failed checks of the solution: must be none
    student_failures: list[str]  # failed checks of the student version (value checks may be among them)

    @property
    def ok(self) -> bool:
        failed_functions = sorted(q for q in self.student_failures if q in self.function_checks)
        return not self.solution_failures and failed_functions == self.expected_student_failures


def validate(source: Path, student: Path, blanked: list[str], profile: str = "quick",
             timeout: float = 600.0) -> Validation:
    """Grade the solution and the student version as submissions and compare with expectations."""
    lab = autograde.lab_of(Path(source))
    reference = autograde.load_reference(lab, profile)
    functions = {q: e.get("function") for q, e in reference["questions"].items() if e["kind"] == "function"}

    def failures(path):
        rows = autograde.grade_one(path, lab, profile, timeout, reference=reference)
        return [r["question"] for r in rows if r["message"]]

    expected = sorted(q for q, f in functions.items() if f in blanked)
    return Validation(lab, blanked, sorted(functions), expected, failures(source), failures(student))
