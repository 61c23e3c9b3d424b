"""Batch grading of student notebooks (``labkit grade``): isolated runs, time-outs, shards, CSV.

Each submission runs in its own process and its own kernel, in a temporary folder, with every cell
executed even after an error (a crashing cell costs only the checks that need it) and each cell
interrupted after ``timeout`` seconds (a hanging cell costs only itself). Its Grader runs in
submission mode (``LABKIT_SUBMIT``): it only writes down answers. Scoring happens here, against the
kit's references read before the submission starts, so nothing a submission does to files or to the
grader changes its score.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from labkit import grading

CSV_FIELDS = ("submission", "question", "points", "max_points", "message")


def find_submissions(paths: list[str | Path]) -> list[Path]:
    """Notebooks named directly, or found below folders (``.ipynb_checkpoints`` skipped), sorted."""
    found = set()
    for p in map(Path, paths):
        if p.is_dir():
            found |= {q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts}
        elif p.suffix == ".ipynb" and p.is_file():
            found.add(p)
        else:
            raise FileNotFoundError(f"submission {str(p)!r} is neither a notebook (.ipynb) nor a folder")
    return sorted(found)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 1 <= I <= N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: allowed is I/N with whole numbers, e.g. 2/8") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: allowed is I/N with 1 <= I <= N")
    return i, n


def in_shard(submission: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``submission`` (its name) belongs to shard I of N: by a hash of the name, so every
    machine of a Slurm array or CI matrix agrees without seeing the others' lists."""
    return shard is None or zlib.crc32(submission.encode()) % shard[1] == shard[0] - 1


def lab_of(path: Path, lab: str | None = None) -> str:
    """The lab a submission answers: ``lab`` if given, else the kit notebook whose name its file name
    contains (``jdoe_02_pruning_resnet20.ipynb`` -> ``02_pruning_resnet20``)."""
    known = sorted({p.name.split(".")[0] for p in grading.kit_references().glob("*.json")},
                   key=len, reverse=True)
    if lab is not None:
        if lab not in known:
            raise ValueError(f"--lab {lab!r}: allowed are {', '.join(sorted(known))}")
        return lab
    for name in known:
        if name in path.name:
            return name
    raise ValueError(f"cannot tell which lab {path.name!r} is: its name contains none of "
                     f"{', '.join(sorted(known))}; rename it or pass --lab")


def load_reference(lab: str, profile: str = "quick") -> dict:
    """The kit's reference document for a lab (read once, before any submission runs)."""
    return json.loads((grading.kit_references() / grading.reference_name(lab, profile, None)).read_text())


def grade_one(path: str | Path, lab: str, profile: str = "quick", timeout: float = 600.0,
              name: str | None = None, reference: dict | None = None) -> list[dict]:
    """Run one submission in an isolated kernel and score it: one row per reference question.
    The kernel gets its own copy of ``reference`` (default: the kit's), so a submission that
    rewrites reference files changes neither its score nor any other submission's."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from papermill.iorw import load_notebook_node  # papermill's reader adds the metadata it needs
    from papermill.parameterize import parameterize_notebook

    reference = reference or load_reference(lab, profile)
    name = name or str(path)
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
        answers, refs = Path(tmp) / "answers.jsonl", Path(tmp) / "references"
        grading.write_json_atomic(refs / grading.reference_name(lab, profile, None), reference)
        nb = parameterize_notebook(load_notebook_node(str(path)), {"PROFILE": profile, "DATASET": None})
        client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                                kernel_name="python3", resources={"metadata": {"path": tmp}})
        note = ""
        try:
            client.execute(env={**os.environ, grading.SUBMIT_ENV: str(answers),
                                grading.REFERENCES_ENV: str(refs)})
        except DeadKernelError as exc:  # e.g. os._exit in a cell: grade what was answered before
            note = f"the kernel died ({exc}); "
        lines = answers.read_text().splitlines() if answers.is_file() else []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line the submission mangled counts as no answer
    rows = grading.score_submission(reference["questions"], records)
    return [{"submission": name, "question": r["question"], "points": r["points"],
             "max_points": r["max_points"], "message": (note + r["message"]) if not r["passed"] else ""}
            for r in rows]


def grade(submissions: list[Path], *, lab: str | None = None, profile: str = "quick", jobs: int = 1,
          timeout: float = 600.0, shard: tuple[int, int] | None = None, root: Path | None = None
          ) -> list[dict]:
    """Grade the submissions of this shard, ``jobs`` at a time, each in its own process; rows are
    ordered by submission name, then by the reference's question order."""
    root = root or Path.cwd()
    named = [(p, _name(p, root)) for p in submissions]
    chosen = [(p, n, lab_of(p, lab)) for p, n in named if in_shard(n, shard)]
    references = {lab_name: load_reference(lab_name, profile) for _, _, lab_name in chosen}
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(grade_one, p, lab_name, profile, timeout, n, references[lab_name])
                   for p, n, lab_name in chosen]
        results = [f.result() for f in futures]
    return sorted((row for rows in results for row in rows), key=lambda r: r["submission"])


def _name(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def write_csv(rows: list[dict], out: str | Path) -> None:
    """Write grading rows as CSV (columns ``CSV_FIELDS``) atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    shutil.move(tmp, out)


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and set(rows[0]) != set(CSV_FIELDS):
        raise ValueError(f"{path} is not a labkit grade CSV: columns {list(rows[0])}, expected {CSV_FIELDS}")
    return [{**r, "points": float(r["points"]), "max_points": float(r["max_points"])} for r in rows]


def merge(paths: list[str | Path]) -> list[dict]:
    """Combine shard CSVs into the rows an unsharded run gives (a submission in two shards is an error)."""
    by_submission: dict[str, list[dict]] = {}
    for path in paths:
        rows = read_csv(path)
        for sub in {r["submission"] for r in rows}:
            if sub in by_submission:
                raise ValueError(f"submission {sub!r} appears in more than one shard CSV ({path})")
        for r in rows:
            by_submission.setdefault(r["submission"], []).append(r)
    return [r for sub in sorted(by_submission) for r in by_submission[sub]]


def summary(rows: list[dict]) -> str:
    """One line per submission: points, maximum and the failed questions."""
    totals: dict[str, list] = {}
    for r in rows:
        t = totals.setdefault(r["submission"], [0.0, 0.0, []])
        t[0] += float(r["points"])
        t[1] += float(r["max_points"])
        if r["message"]:
            t[2].append(r["question"])
    table = [{"submission": s, "points": f"{p:g}", "max": f"{m:g}", "failed": ", ".join(f) or "-"}
             for s, (p, m, f) in totals.items()]
    return grading.format_table(table)
