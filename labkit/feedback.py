"""Feedback pages: one HTML page per graded submission, with every mark where its question is.

``<folder>/<submission>.html`` shows the executed notebook (the student's cells with their own source and
outputs). At the top: the score as the totals file has it (automatic, written answers, pending). After each
check cell: the result of each question it checks (points, and what differed); after each written answer:
the instructor's mark and comment, or "score pending". At the end: the whole score table. The executed
notebook is kept beside the page (``<submission>.ipynb``), so :func:`rebuild` writes the pages again from a
grades CSV (with manual marks added later) without regrading: ``labkit feedback``.
"""

from __future__ import annotations

import copy
import html
import re
from pathlib import Path

from labkit import cells
from labkit.atomic import atomic_open
from labkit.results import Result, Status, split_totals


def page_path(folder: str | Path, submission: str) -> Path:
    """The page of ``submission`` under ``folder``: its folders kept (so no two share a page), every other
    character than letters, digits, ``_.-`` replaced, never outside ``folder``."""
    parts = [re.sub(r"[^A-Za-z0-9_.\-]", "_", part) for part in Path(submission.removesuffix(".ipynb")).parts
             if part not in ("", ".", "..", "/")] or ["submission"]
    return Path(folder).joinpath(*parts[:-1], parts[-1] + ".html")


def write_page(executed, results: list[Result], folder: str | Path) -> Path:
    """Write the page of one submission (``results`` all of it) and keep ``executed`` beside it; return
    the page's path."""
    import nbformat

    path = page_path(folder, results[0].submission if results else "submission")
    with atomic_open(path.with_suffix(".ipynb"), "w") as f:
        nbformat.write(executed, f)
    _render(executed, results, path)
    return path


def rebuild(results: list[Result], folder: str | Path) -> tuple[list[Path], list[str]]:
    """Write again the page of every submission in ``results`` from the executed notebook kept beside it;
    return (pages written, submissions whose executed notebook is not there)."""
    import nbformat

    by_submission: dict[str, list[Result]] = {}
    for r in results:
        by_submission.setdefault(r.submission, []).append(r)
    written, missing = [], []
    for submission, rows in by_submission.items():
        path = page_path(folder, submission)
        try:
            executed = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
        except FileNotFoundError:
            missing.append(submission)
            continue
        _render(executed, rows, path)
        written.append(path)
    return written, missing


def score_line(results: list[Result]) -> str:
    """``Score: T / M`` and its parts, as the totals file has them."""
    t = split_totals(results)
    line = (f"**Score: {t.total:g} / {t.most:g}** (automatic {t.automatic:g} / {t.automatic_max:g}, "
            f"written answers {t.manual:g} / {t.manual_max:g}")
    return line + (f"; {t.pending:g} points not marked yet)" if t.pending else ")")


def _render(executed, results: list[Result], path: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    by_question = {r.question: r for r in results}
    nb = nbformat.from_dict(copy.deepcopy(dict(executed)))
    shown = [nbformat.v4.new_markdown_cell(f"# Feedback: {results[0].submission if results else ''}\n\n"
                                           + score_line(results))]
    for cell in nb.cells:
        shown.append(cell)
        if cell.cell_type == "code" and not cells.is_solution(cell):
            marks = [by_question[q] for q in cells.questions_in(cell.source) if q in by_question]
        else:
            marks = [by_question[q] for q in [cells.grade_id(cell)] if q in by_question
                     and by_question[q].status is Status.MANUAL]
        if marks:
            shown.append(nbformat.v4.new_markdown_cell("\n\n".join(_mark(r) for r in marks)))
    table = ["| question | status | points | max | message |", "|---|---|---|---|---|"]
    for r in results:
        points = "" if r.points is None else f"{r.points:g}"
        table.append(f"| {r.question} | {r.status} | {points} | {r.max_points:g} | {_cell_text(r.message)} |")
    shown.append(nbformat.v4.new_markdown_cell(f"## Grading\n\n{score_line(results)}\n\n" + "\n".join(table)))
    nb.cells = shown
    page, _ = HTMLExporter().from_notebook_node(nb)
    with atomic_open(path, "w") as f:
        f.write(page)


def _mark(r: Result) -> str:
    """One question's mark under its cell, as a quoted block."""
    if r.status is Status.MANUAL:
        head = ("marked by hand: score pending" if r.points is None
                else f"marked by hand: **{r.points:g} / {r.max_points:g}**")
    else:
        points = "" if r.points is None else f"**{r.points:g} / {r.max_points:g}**, "
        head = f"{points}{r.status}"
    text = f"**{r.question}**: {head}"
    return text + (f"\n\n```\n{r.message}\n```" if r.message else "")


def _cell_text(message: str) -> str:
    """A message as one markdown table cell: escaped, its lines kept."""
    return html.escape(message).replace("|", "\\|").replace("\n", "<br>")
