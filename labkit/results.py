"""A question's result: one type from the notebook's grader and ``labkit grade``'s scoring to the CSV, the
feedback page, the summary and the tests. Its status is a field, never read back out of a message.

- ``passed`` / ``failed``: an automatic check, worth ``points`` of ``max_points`` (all or nothing);
- ``ungraded``: no reference for the run's profile / data set and no property; ``max_points`` is what was
  at stake, and the question counts in neither the points nor the maximum;
- ``manual``: a written answer, ``points`` None until the instructor's score arrives (``--manual``);
- ``not run``: the check never ran (an earlier cell failed or timed out): 0 points;
- ``notes``: the first row of a submission, 0 of 0, what grading put back or could not match.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from enum import Enum


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    UNGRADED = "ungraded"
    MANUAL = "manual"
    NOT_RUN = "not run"
    NOTES = "notes"

    def __str__(self) -> str:
        return self.value


NOTES = "(notebook)"  # the question of a submission's notes row
FIELDS = ("submission", "question", "status", "points", "max_points", "basis", "message")


@dataclass(frozen=True)
class Result:
    """One question of one submission (``submission`` empty inside a notebook)."""

    question: str
    status: Status
    points: float | None
    max_points: float
    basis: str = ""  # "reference" or "property": what decided an automatic check
    message: str = ""
    submission: str = ""

    def __post_init__(self):
        object.__setattr__(self, "status", Status(self.status))
        if not isinstance(self.max_points, (int, float)) or not math.isfinite(self.max_points) \
                or self.max_points < 0:
            raise ValueError(f"max_points={self.max_points!r}: allowed is a finite number >= 0")
        if self.points is None:
            if self.status is not Status.MANUAL:
                raise ValueError(f"points=None: allowed only for a manual question, not {self.status}")
        elif not isinstance(self.points, (int, float)) or not 0 <= self.points <= self.max_points:
            raise ValueError(f"points={self.points!r}: allowed is a number from 0 to {self.max_points:g}")

    @property
    def counted(self) -> bool:
        """Whether it counts toward a total: not ungraded, not notes, not a manual score still pending."""
        return self.status not in (Status.UNGRADED, Status.NOTES) and self.points is not None

    @property
    def pending(self) -> bool:
        return self.status is Status.MANUAL and self.points is None

    def with_(self, **changes) -> Result:
        return replace(self, **changes)

    def to_row(self) -> dict:
        """The CSV / JSON row: FIELDS, status as its text, pending points as an empty string."""
        row = asdict(self)
        row["status"] = self.status.value
        row["points"] = "" if self.points is None else self.points
        return {k: row[k] for k in FIELDS}

    @classmethod
    def from_row(cls, row: dict) -> Result:
        """A row :meth:`to_row` wrote (numbers may be text, as from a CSV); ValueError for anything else."""
        try:
            points = None if row["points"] in ("", None) else float(row["points"])
            return cls(question=str(row["question"]), status=Status(row["status"]), points=points,
                       max_points=float(row["max_points"]), basis=str(row.get("basis") or ""),
                       message=str(row.get("message") or ""), submission=str(row.get("submission") or ""))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a result row ({type(exc).__name__}: {exc})") from None


def totals(results: list[Result]) -> tuple[float, float]:
    """(points, max_points) over the results that count (:attr:`Result.counted`)."""
    counted = [r for r in results if r.counted]
    return sum(r.points for r in counted), sum(r.max_points for r in counted)


@dataclass(frozen=True)
class Totals:
    """A submission's points by kind: automatic checks, written answers marked so far, and the written
    answers' points not marked yet (counted in ``most``, not in ``total``)."""

    automatic: float
    automatic_max: float
    manual: float
    manual_max: float
    pending: float

    @property
    def total(self) -> float:
        return self.automatic + self.manual

    @property
    def most(self) -> float:
        return self.automatic_max + self.manual_max


def split_totals(results: list[Result]) -> Totals:
    """The :class:`Totals` of one submission's results."""
    manual = [r for r in results if r.status is Status.MANUAL]
    automatic, automatic_max = totals([r for r in results if r.status is not Status.MANUAL])
    return Totals(automatic, automatic_max, sum(r.points for r in manual if r.points is not None),
                  sum(r.max_points for r in manual), sum(r.max_points for r in manual if r.points is None))


def table(results: list[Result], with_submission: bool = False) -> list[dict]:
    """Rows for :func:`labkit.grading.format_table`: question, points, max, status, basis."""
    rows = []
    for r in results:
        row = {"submission": r.submission} if with_submission else {}
        row |= {"question": r.question, "points": "" if r.points is None else f"{r.points:g}",
                "max": f"{r.max_points:g}", "status": r.status.value, "basis": r.basis}
        rows.append(row)
    return rows
