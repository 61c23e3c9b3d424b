"""A lab notebook's cells by role, in nbgrader's metadata, and an instructor's cells put back into a
submission.

Every code cell of a source notebook carries ``metadata.nbgrader`` (schema 3, as nbgrader writes it) with
a stable ``grade_id``:

- a *solution* cell (``solution: true``) holds the code a student writes, between ``### BEGIN SOLUTION``
  and ``### END SOLUTION``;
- a *check* cell (``grade: true, locked: true, points``) holds ``grader.check...`` calls, worth the
  points of its questions in the reference catalog;
- every other code cell is *locked* (``locked: true``): setup and the runs that call the student's code.

:func:`restore` is what makes grading measure the student: the graded notebook is the instructor's,
cell by cell, with only the solution cells (and any cells the student added) taken from the submission,
so an edited, emptied or deleted check or run cell changes nothing.
"""

from __future__ import annotations

import ast
import copy
import re

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*$",
                     re.MULTILINE | re.DOTALL)
_QUESTION = re.compile(r"grader\.check(?:_function)?\(\s*[\"']([^\"']+)[\"']")
_SCHEMA = 3
ANSWER_STUB = "YOUR ANSWER HERE"  # what nbgrader puts in a written answer's cell


def grade_id(cell) -> str | None:
    """The cell's nbgrader ``grade_id``, or None."""
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def is_solution(cell) -> bool:
    return bool((cell.get("metadata", {}).get("nbgrader") or {}).get("solution"))


STUDENT = "labkit_student"  # metadata key :func:`restore` sets on the code cells the student wrote


def is_student(cell) -> bool:
    """Whether :func:`restore` took this code cell from the submission (a solution cell or an added one)."""
    return cell.get("cell_type") == "code" and cell.get("metadata", {}).get(STUDENT) is True


def solution_names(instructor) -> list[str]:
    """The names the instructor's solution cells define at top level (functions, ``ANSWER_1_1 = ...``):
    the names a submission's cells answer with."""
    return sorted(set().union(*[_defined(c.source) for c in instructor.cells
                                if c.cell_type == "code" and is_solution(c)]))


def questions_in(source: str) -> list[str]:
    """The question ids a cell's ``grader.check`` / ``grader.check_function`` calls name, in order."""
    return _QUESTION.findall(source)


def blank_solutions(source: str) -> tuple[str, list[str]]:
    """The cell source with every solution region replaced by nbgrader's ``# YOUR CODE HERE`` /
    ``raise NotImplementedError()``, and the names of the functions whose bodies held one. An unmatched
    marker is an error (it would leak or lose code)."""
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


def tag(nb, points: dict[str, float], prefix: str = "cell") -> list[str]:
    """Give every code cell of ``nb`` its nbgrader metadata (in place), keeping existing ``grade_id``s;
    ``points`` maps question ids to points (a check cell is worth the sum of its questions'). Return the
    ids given to cells that had none."""
    taken = {grade_id(c) for c in nb.cells} - {None}
    added = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cid = grade_id(cell)
        questions = questions_in(cell.source)
        if cid is None:
            if BEGIN in cell.source:
                stem = "solution-" + "-".join(blank_solutions(cell.source)[1] or ["code"])
            else:
                stem = f"check-{questions[0]}" if questions else prefix
            cid = _unique(re.sub(r"[^A-Za-z0-9_\-]", "-", stem), taken)
            taken.add(cid)
            added.append(cid)
        meta = {"grade": False, "grade_id": cid, "locked": True, "schema_version": _SCHEMA, "solution": False}
        if BEGIN in cell.source:
            meta["locked"], meta["solution"] = False, True
        elif questions:
            meta["grade"], meta["points"] = True, sum(points.get(q, 0) for q in questions)
        cell.metadata["nbgrader"] = meta
    return added


def _unique(stem: str, taken: set) -> str:
    if stem not in taken:
        return stem
    n = 2
    while f"{stem}-{n}" in taken:
        n += 1
    return f"{stem}-{n}"


def restore(instructor, submission) -> tuple[object, list[str]]:
    """The notebook to grade: ``instructor``'s code cells in order, each locked one as the instructor wrote
    it, each solution cell as the submission has it (matched by ``grade_id``, else by the functions it
    defines; a missing one runs blank), and the cells the student added after the instructor cell they
    follow; the student's code cells (solution and added) carry ``metadata[STUDENT] = True``, no other
    cell does. Return it and notes on what was put back or could not be matched."""
    known = {grade_id(c) for c in instructor.cells if c.cell_type == "code"} - {None}
    mine, extras, anchor, duplicates = {}, {None: []}, None, []
    for cell in submission.cells:
        cid = grade_id(cell)
        if cid in known and cid not in mine:
            mine[cid], anchor = cell, cid
        else:
            if cid in known:
                duplicates.append(cid)
            extras.setdefault(anchor, []).append(cell)
    notes = [f"cell {cid!r} appears more than once; the first copy counts" for cid in sorted(set(duplicates))]
    by_name = not mine  # no cell ids at all (e.g. copied into a new notebook): match solutions by function
    if by_name:
        notes.append("the submission's cells carry no ids: solution cells matched by the functions and "
                     "names they define; cells the student added were not run")
    graded = copy.deepcopy(instructor)
    cells = [] if by_name else list(extras[None])
    student = {id(c) for c in cells}  # the cells the student wrote: added ones and solution cells
    restored, missing = [], []
    for cell in instructor.cells:
        if cell.cell_type != "code" or grade_id(cell) is None:
            continue
        cid = grade_id(cell)
        if is_solution(cell):
            theirs = _by_functions(cell, submission) if by_name else mine.get(cid)
            if theirs is None:
                missing.append(cid)
                theirs = copy.deepcopy(cell)
                theirs.source = blank_solutions(cell.source)[0]
            cells.append(_as_code(theirs, cell))
            student.add(id(cells[-1]))
        else:
            if not by_name and cid not in mine:
                restored.append(f"{cid} (deleted)")
            elif not by_name and mine[cid].source != cell.source:
                restored.append(f"{cid} (edited)")
            cells.append(copy.deepcopy(cell))
        if not by_name:
            cells += extras.get(cid, [])
            student |= {id(c) for c in extras.get(cid, [])}
    if restored:
        notes.append("instructor cells put back: " + ", ".join(restored))
    if missing:
        notes.append("solution cells missing, run blank: " + ", ".join(missing))
    graded.cells = [copy.deepcopy(c) for c in cells]
    for cell, theirs in zip(graded.cells, cells, strict=True):
        cell.metadata.pop(STUDENT, None)
        if cell.cell_type == "code" and id(theirs) in student:
            cell.metadata[STUDENT] = True
    return graded, notes


def _as_code(theirs, instructor_cell):
    """The student's solution cell with the instructor's metadata (so a changed cell type or role in the
    submission cannot turn it into something else)."""
    cell = copy.deepcopy(instructor_cell)
    cell.source = theirs.source if theirs.cell_type == "code" else blank_solutions(instructor_cell.source)[0]
    cell.outputs, cell.execution_count = [], None
    return cell


def _by_functions(instructor_cell, submission):
    """The last code cell of ``submission`` that defines every function and name ``instructor_cell``
    defines at top level (``def f``, ``ANSWER_1_1 = ...``), or None."""
    wanted = _defined(instructor_cell.source)
    found = None
    for cell in submission.cells:
        if cell.cell_type == "code" and wanted and wanted <= _defined(cell.source):
            found = cell
    return found


def _defined(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return names | {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                    if isinstance(t, ast.Name)}
