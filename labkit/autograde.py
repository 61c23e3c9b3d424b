"""Batch grading of student notebooks (``labkit grade``): isolated runs, time-outs, shards, CSV.

Each submission is first merged into the instructor's notebook: every cell but the solution cells (and
cells the student added) is the instructor's (:mod:`labkit.cells`). That notebook then runs in a trusted
kernel that runs no student code: each cell the student wrote runs in the student's worker, a process in
a sandbox of its own, and the trusted kernel calls the student's functions there through a data-only
channel (:mod:`labkit.student_code`). Every cell is executed even after an error (a crashing cell costs
only the checks that need it) and interrupted after ``timeout`` seconds (a hanging cell costs only
itself). The trusted kernel's grader runs in submission mode (``LABKIT_SUBMIT``): its check cells write
down the values labkit's own loops and evaluations computed from the student's functions, and those
functions' outputs on the instructor's hidden cases. Scoring happens here, against the references read
before the submission starts. What a submission's code does to its own process (patching the grader,
labkit, numpy), to its files or to the answers file changes nothing but what its own functions return;
its worker cannot read the references, the instructor's or another student's files, or other processes.

Size (about 570 lines): one pipeline read top to bottom (find, merge, run sandboxed, score, journal,
CSV, shards); what stands alone lives in ``cells``, ``scoring``, ``journal``, ``sandbox`` and ``feedback``.
"""

from __future__ import annotations

import copy
import csv
import ctypes
import hashlib
import json
import math
import os
import signal
import tempfile
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import active_children, get_context
from pathlib import Path

from labkit import cells, grading, runner, scoring, student_code
from labkit import sandbox as sandbox_mod
from labkit.atomic import atomic_open
from labkit.feedback import write_page as feedback_page
from labkit.journal import Journal, submission_key
from labkit.results import FIELDS, NOTES, Result, Status, split_totals, totals
from labkit.runner import resolve_notebook
from labkit.sandbox import DEFAULT_MEMORY, kernel_manager


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
    """``"I/N"`` -> (I, N) with 0 <= I <= N: shard I of N, I taken modulo N, so an array counted from 0
    (``0/8`` .. ``7/8``) and one counted from 1 (``1/8`` .. ``8/8``) both cover every shard once."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: allowed is I/N with whole numbers, e.g. 2/8") from None
    if not (n >= 1 and 0 <= i <= n):
        raise ValueError(f"--shard {text!r}: allowed is I/N with N >= 1 and 0 <= I <= N (0 and N are the "
                         "same shard: count the array from 0 or from 1)")
    return i, n


def in_shard(submission: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``submission`` (its name) belongs to shard I of N: by a hash of the name, so every
    machine of a Slurm array or CI matrix agrees without seeing the others' lists."""
    return shard is None or zlib.crc32(submission.encode()) % shard[1] == shard[0] % shard[1]


def lab_of(path: Path, lab: str | None = None, instructor: Path | None = None) -> str:
    """The lab a submission answers: ``lab`` if given, else the lab whose name its file name contains
    (``jdoe_02_pruning_resnet20.ipynb`` -> ``02_pruning_resnet20``); labs are those with references in
    ``instructor``'s folder (default: the kit's)."""
    refs = references_dir(instructor)
    known = sorted({p.name.split(".")[0] for p in refs.glob("*.quick.json")}, key=len, reverse=True)
    if lab is not None:
        if lab not in known:
            raise ValueError(f"--lab {lab!r}: allowed are {', '.join(sorted(known))}")
        return lab
    for name in known:
        if name in path.name:
            return name
    raise ValueError(f"cannot tell which lab {path.name!r} is: its name contains none of "
                     f"{', '.join(sorted(known))}; rename it or pass --lab")


def references_dir(instructor: Path | None) -> Path:
    """``<instructor>/references`` (``labkit release``'s instructor folder), or the kit's references."""
    return Path(instructor) / "references" if instructor else grading.kit_references()


@dataclass(frozen=True)
class Material:
    """What grading one lab needs from the instructor, read once before any submission runs: the source
    notebook (cells put back into every submission) and its reference documents by file name."""

    lab: str
    notebook: object
    references: dict

    def catalog(self) -> dict:
        return self.references[grading.reference_name(self.lab, "quick", None)]["questions"]

    def digest(self) -> str:
        """A digest of the notebook and references: a grade made against other material is not reused."""
        import nbformat

        text = nbformat.writes(self.notebook) + json.dumps(self.references, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def manual(self) -> dict[str, float]:
        """``{grade_id: points}`` of the manually graded answer cells (nbgrader's: markdown cells with
        ``grade`` and ``solution`` set), in notebook order."""
        found = {}
        for cell in self.notebook.cells:
            meta = cell.get("metadata", {}).get("nbgrader") or {}
            if cell.cell_type == "markdown" and meta.get("grade") and meta.get("solution"):
                found[meta["grade_id"]] = float(meta.get("points", 0))
        return found

    def recorded(self, profile: str, dataset: str | None) -> dict | None:
        doc = self.references.get(grading.reference_name(self.lab, profile, dataset))
        return None if doc is None else doc["questions"]


def load_material(lab: str, instructor: Path | None = None, source: Path | None = None) -> Material:
    """The lab's source notebook and references from ``instructor``'s folder (default: the kit's
    notebooks and public references, which hold no hidden cases; ``source``: this notebook instead, e.g.
    a new lab outside the kit's notebooks/). Code cells without an id get the one
    :func:`labkit.cells.tag` gives them, as ``labkit release`` does."""
    import nbformat

    if source is None:
        source = (Path(instructor) / f"{lab}.ipynb") if instructor else resolve_notebook(lab)
    refs = references_dir(instructor)
    docs = {p.name: grading.read_references(p) for p in refs.glob(f"{lab}.*.json")}
    catalog = grading.reference_name(lab, "quick", None)
    if catalog not in docs:
        raise FileNotFoundError(f"no reference catalog {catalog} in {refs}")
    nb = nbformat.read(source, as_version=4)
    cells.tag(nb, {q: e["points"] for q, e in docs[catalog]["questions"].items()})
    return Material(lab, nb, docs)


def kernel_copy(doc: dict) -> dict:
    """A reference document as a submission's kernel may see it: questions, points and case inputs,
    without any expected value (hidden cases keep only their inputs)."""
    def strip(entry):
        entry = {k: v for k, v in entry.items() if k != "expected"}
        for key in ("cases", "hidden_cases"):
            if key in entry:
                entry[key] = [{k: v for k, v in c.items() if k != "expected"} for c in entry[key]]
        return entry

    return {**doc, "questions": {q: strip(e) for q, e in doc["questions"].items()}}


def threads_per_job(jobs: int) -> int:
    """Torch threads for each of ``jobs`` concurrent submissions: this machine's cores shared out, so
    N jobs on N cores do not oversubscribe them (two 2-thread jobs on 2 cores run ~10x slower)."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, jobs))


def grade_one(path: str | Path, material: Material, profile: str = "quick", timeout: float = 600.0,
              name: str | None = None, threads: int | None = None, sandbox: bool = True,
              memory: int = DEFAULT_MEMORY, feedback: Path | None = None, dataset: str | None = None
              ) -> list[Result]:
    """Grade one submission run with ``profile`` on ``dataset`` (None: the profile's own): put the
    instructor's cells back (:func:`labkit.cells.restore`), run the instructor's notebook in a trusted
    kernel in which every cell the student wrote runs in the student's worker (:mod:`labkit.student_code`),
    each in its own sandbox (:mod:`labkit.sandbox`: no network, writes only in its folder, ``memory`` bytes
    at most) with ``threads`` torch threads, and score the answers the trusted kernel's check cells wrote
    here against ``material``: one :class:`~labkit.results.Result` per catalog question, after a ``notes``
    one (question ``(notebook)``) whose message says what was put back or could not be matched. Manually
    graded answer cells get a ``manual`` result each, its points pending. With ``feedback`` (a folder)
    the executed notebook (the student's cells shown with their own source) and its marks are written
    there (:func:`labkit.feedback.write_page`). The trusted kernel sees only a stripped copy of the
    references (:func:`kernel_copy`)."""
    import nbformat

    name = name or str(path)
    threads = threads or threads_per_job(1)
    try:
        submission = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook: graded as no answers at all
        submission, notes = None, [f"not a readable notebook ({type(exc).__name__}: {str(exc)[:80]})"]
    records, executed = [], None
    if submission is not None:
        graded, notes = cells.restore(material.notebook, submission)
        with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
            records, executed = _run_trusted(graded, material, Path(tmp), profile, dataset, timeout, threads,
                                             sandbox, memory, notes)
    scored = scoring.score_submission(material.catalog(), records, material.recorded(profile, dataset))
    results = [Result(NOTES, Status.NOTES, 0, 0, message="; ".join(notes))] + scored
    results += [Result(q, Status.MANUAL, None, p) for q, p in material.manual().items()]
    results = [r.with_(submission=name) for r in results]
    if feedback is not None:
        try:
            shown = executed if executed is not None else nbformat.v4.new_notebook()
            feedback_page(shown, results, feedback)
        except Exception as exc:  # a full disk, a missing nbconvert template: a note, not the class's end
            results[0] = results[0].with_(message="; ".join(
                [m for m in (results[0].message, f"feedback page not written ({type(exc).__name__}: {exc})")
                 if m]))
    return results


def _run_trusted(graded, material: Material, tmp: Path, profile: str, dataset: str | None, timeout: float,
                 threads: int, sandbox: bool, memory: int, notes: list[str]):
    """Run ``graded`` as the trusted notebook in ``tmp``; return the answers its check cells wrote and the
    executed notebook with the student's sources shown."""
    import nbformat
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from papermill.iorw import load_notebook_node  # papermill's reader adds the metadata it needs
    from papermill.parameterize import parameterize_notebook

    kernel_dir, worker_dir, channel_dir = tmp / "kernel", tmp / "worker", tmp / "channel"
    for folder in (kernel_dir, worker_dir, channel_dir):
        folder.mkdir(mode=0o755)
    answers, refs = kernel_dir / "answers.jsonl", kernel_dir / "references"
    for file_name, doc in material.references.items():
        grading.write_json_atomic(refs / file_name, kernel_copy(doc))
    trusted, sources = student_cells_replaced(graded, cells.solution_names(material.notebook))
    (worker_dir / "cells.json").write_text(json.dumps(sources))
    merged = kernel_dir / "graded.ipynb"
    nbformat.write(trusted, merged)
    nb = parameterize_notebook(load_notebook_node(str(merged)), {"PROFILE": profile, "DATASET": dataset})
    collect = _AnswerCollector(answers)
    socket_path = channel_dir / "student.sock"
    worker = start_worker(worker_dir, socket_path, timeout, sandbox, memory) if sources else None
    km = kernel_manager(kernel_dir, sandbox, memory, channel_dir)
    client = NotebookClient(nb, km=km, timeout=math.ceil(timeout), allow_errors=True,  # whole seconds
                            interrupt_on_timeout=True, kernel_name="python3",
                            resources={"metadata": {"path": str(kernel_dir)}}, on_cell_executed=collect)
    env = {**os.environ, "MPLBACKEND": runner.INLINE_BACKEND,  # plots in the feedback, whatever the TA set
           grading.SUBMIT_ENV: str(answers), grading.REFERENCES_ENV: str(refs),
           student_code.SOCKET_ENV: str(socket_path), **_thread_env(threads)}
    env.pop(grading.RECORD_ENV, None)
    env.pop(grading.HIDDEN_SEED_ENV, None)
    try:
        client.execute(env=env)
    except DeadKernelError as exc:  # e.g. the kernel ran out of memory: grade what was answered before
        notes.append(f"the kernel died ({exc})")
    finally:
        if km is not None and km.has_kernel:  # nbclient shuts down only kernels it started itself
            run_sync(km.shutdown_kernel)(now=True)
        if worker is not None:
            worker.stop()
        if sandbox:
            sandbox_mod.keep_new_cache(kernel_dir)
    if collect.foreign:
        notes.append(f"answers written outside their check cells were ignored: "
                     f"{', '.join(sorted(set(collect.foreign)))}")
    executed = client.nb
    for cell in executed.cells:
        if cells.is_student(cell):
            cell.source = cell.metadata.pop("labkit_source")
    return collect.records, executed


def student_cells_replaced(graded, names: list[str]) -> tuple[object, list[dict]]:
    """The trusted notebook: ``graded`` with each student code cell (:func:`labkit.cells.is_student`)
    replaced by a call that runs it in the worker (its source kept in ``metadata.labkit_source``), and the
    cells the worker runs: ``[{"id", "source", "names"}]`` in order, ``names`` those the cell may answer
    with."""
    trusted, sources = copy.deepcopy(graded), []
    for cell in trusted.cells:
        if cells.is_student(cell):
            cell.metadata["labkit_source"] = cell.source
            sources.append({"id": cells.grade_id(cell) or f"added-{len(sources)}", "source": cell.source,
                            "names": names})
            cell.source = (f"__import__('labkit.student_code').student_code.run_cell({len(sources) - 1}, "
                           "globals())  # your cell runs in its own process (labkit grade)")
    return trusted, sources


def start_worker(folder: Path, socket_path: Path, timeout: float, sandbox: bool,
                 memory: int) -> sandbox_mod.Confined:
    """The student's worker (:mod:`labkit.student_worker`) listening on ``socket_path``, sandboxed unless
    ``sandbox`` is False, with its watchdog; its own output goes nowhere. It computes with one thread: the
    labs' functions are small, and a second thread pool beside the trusted kernel's made every call and
    the kernel's training between calls slower (notebook 04 graded in 79 s with ``threads`` in both, 55 s
    with one thread in the worker, on 2 cores)."""
    prefix = sandbox_mod.worker_command(folder, socket_path.parent, memory) if sandbox else []
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp" if sandbox else str(folder),
           "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", **_thread_env(1)}
    for key in ("LABKIT_DEVICE", "LABKIT_PRECISION", "LANG"):
        if key in os.environ:
            env[key] = os.environ[key]
    env["LABKIT_DEVICE"] = "cpu"  # the worker never sees a GPU
    call_seconds = max(1.0, 0.9 * timeout)  # below the cell's time-out, so an honest endless loop is reported
    return sandbox_mod.Confined([*prefix, sandbox_mod.python(), "-m", "labkit.student_worker",
                                 str(socket_path), str(folder / "cells.json"), f"{call_seconds:g}"], env)


def _thread_env(threads: int) -> dict[str, str]:
    return {v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def apply_manual(results: list[Result], path: str | Path) -> list[Result]:
    """``results`` with the manual scores of a CSV (columns submission, question, points, and optionally
    comment; :func:`write_manual_template` writes one) filled into their ``manual`` results; a row with no
    points yet leaves its question pending. ValueError for a submission or question that has no manual
    result, or points outside 0..max_points."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        scores = list(reader)
        columns = set(reader.fieldnames or ())
    if not {"submission", "question", "points"} <= columns:
        raise ValueError(f"{path}: allowed is a CSV with columns submission, question, points (and "
                         f"optionally comment), got {sorted(columns)}")
    index = {(r.submission, r.question): i for i, r in enumerate(results) if r.status is Status.MANUAL}
    out = list(results)
    for line, s in enumerate(scores, 2):
        key = (s["submission"], s["question"])
        if key not in index:
            raise ValueError(f"{path} line {line}: {key[0]!r} has no manually graded question {key[1]!r}")
        if not (s["points"] or "").strip():  # a template row not scored yet: still pending
            continue
        row = out[index[key]]
        try:
            points = float(s["points"])
        except ValueError:
            raise ValueError(f"{path} line {line}: points={s['points']!r}: allowed is a number") from None
        if not 0 <= points <= row.max_points:
            raise ValueError(f"{path} line {line}: points={points:g}: allowed is 0 to {row.max_points:g}")
        out[index[key]] = row.with_(points=points, message=(s.get("comment") or "").strip())
    return out


def write_manual_template(results: list[Result], out: str | Path) -> None:
    """The CSV an instructor fills in for :func:`apply_manual`: one row per manually graded question of
    every submission (submission, question, max_points, points, comment), scores kept where already given."""
    with atomic_open(out, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "question", "max_points", "points", "comment"])
        for r in results:
            if r.status is Status.MANUAL:
                writer.writerow([r.submission, r.question, f"{r.max_points:g}",
                                 "" if r.points is None else f"{r.points:g}", r.message])


def write_totals(results: list[Result], out: str | Path) -> None:
    """One row per submission: submission, student, lab, automatic, manual (scored so far), total, max
    (automatic and manual), manual_pending (points not scored yet); every number in ``%g``."""
    with atomic_open(out, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "student", "lab", "automatic", "manual", "total", "max",
                         "manual_pending"])
        for sub in sorted({r.submission for r in results}):
            t = split_totals([r for r in results if r.submission == sub])
            lab = _lab_name(sub)
            numbers = (t.automatic, t.manual, t.total, t.most, t.pending)
            writer.writerow([sub, student_of(sub, lab), lab, *(f"{v:g}" for v in numbers)])


class _AnswerCollector:
    """nbclient's ``on_cell_executed`` hook: after each cell, the answer lines it appended, kept only if
    the cell is the instructor's check cell that names their question (a cell the student added cannot
    answer for a check cell)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.records, self.foreign = path, 0, [], []

    def __call__(self, cell, **_):
        if not self.path.is_file():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        check_cell = cells.grade_id(cell) and not cells.is_solution(cell)
        allowed = set(cells.questions_in(cell.source)) if check_cell else set()
        for line in chunk.decode(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line the submission mangled counts as no answer
            if isinstance(record, dict) and record.get("question") in allowed:
                self.records.append(record)
            elif isinstance(record, dict):
                self.foreign.append(str(record.get("question"))[:40])


def grade(submissions: list[Path], *, lab: str | None = None, profile: str = "quick", jobs: int = 1,
          timeout: float = 600.0, shard: tuple[int, int] | None = None, root: Path | None = None,
          instructor: Path | None = None, sandbox: bool = True, memory: int = DEFAULT_MEMORY,
          feedback: Path | None = None, dataset: str | None = None, journal: Journal | None = None,
          on_graded: Callable[[list[Result], int], None] | None = None) -> list[Result]:
    """Grade the submissions of this shard (run with ``profile`` on ``dataset``), ``jobs`` at a time, each
    in its own process with its share of the cores; results are ordered by submission name, then by the
    catalog's question order. With a ``journal``, each submission's results go there as soon as it is graded,
    and a submission the journal already holds with the same key (bytes, material, settings) is not graded
    again. ``on_graded(results so far, submissions left)`` runs before the first and after each one. An
    interrupt (Ctrl-C, SIGTERM through :func:`labkit.cli.main`) stops every worker at once."""
    root = root or Path.cwd()
    named = [(p, _name(p, root)) for p in submissions]
    chosen = [(p, n, lab_of(p, lab, instructor)) for p, n in named if in_shard(n, shard)]
    material = {lab_name: load_material(lab_name, instructor) for _, _, lab_name in chosen}
    settings = {"profile": profile, "dataset": dataset, "sandbox": sandbox}
    digests = {lab_name: m.digest() for lab_name, m in material.items()} if journal is not None else {}
    keys = {n: submission_key(p, digests[lab_name], settings) for p, n, lab_name in chosen} if digests else {}
    earlier = journal.graded() if journal is not None else {}
    done = {n: [r.with_(submission=n) for r in earlier[keys[n]]]
            for _, n, _ in chosen if keys.get(n) in earlier}
    todo = [(p, n, lab_name) for p, n, lab_name in chosen if n not in done]

    def report():
        if on_graded is not None:
            on_graded(sorted((r for rs in done.values() for r in rs), key=lambda r: r.submission),
                      len(chosen) - len(done))

    if sandbox and todo:
        check_sandbox(memory)
    report()
    threads = threads_per_job(jobs)
    pool = ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=get_context("spawn"),
                               initializer=_die_with_parent)
    try:
        futures = {pool.submit(grade_one, p, material[lab_name], profile, timeout, n, threads, sandbox,
                               memory, feedback, dataset): n for p, n, lab_name in todo}
        for future in as_completed(futures):
            name = futures[future]
            done[name] = future.result()
            if journal is not None:
                journal.append(keys[name], done[name])
            report()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for child in active_children():  # the workers of running submissions: stopped now, not awaited
            child.kill()
        raise
    pool.shutdown()
    return sorted((r for rs in done.values() for r in rs), key=lambda r: r.submission)


def _die_with_parent() -> None:
    """In each grading worker: SIGKILL when the process that started it ends, however it ends (kill -9
    included), so no worker is left holding a kernel and its memory. Linux's prctl(PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent ended before the call above
        os._exit(1)


def check_sandbox(memory: int = DEFAULT_MEMORY) -> None:
    """SandboxError, in one line, unless both sandboxes start here (:func:`labkit.sandbox.preflight`)."""
    why = sandbox_mod.available()
    if why:
        raise sandbox_mod.SandboxError(f"{why}; or grade without it: --no-sandbox")
    with tempfile.TemporaryDirectory(prefix="labkit-preflight-") as tmp:
        sandbox_mod.preflight(Path(tmp), memory)


def _name(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


CSV_FIELDS = ("submission", "student", "lab", *FIELDS[1:])  # student and lab: read off the submission


def student_of(submission: str, lab: str) -> str:
    """Who handed ``submission`` in: its file name without the lab's name
    (``class/jdoe_01_sparse_linear.ipynb`` -> ``jdoe``); for a file named after the lab alone, nbgrader's
    ``submitted/<student>/<assignment>/`` folder; else the file name."""
    path = Path(submission)
    stem = path.name.removesuffix(".ipynb")
    if lab and lab in stem:
        rest = stem.replace(lab, "").strip("_-. ")
        if rest:
            return rest
        if len(path.parts) >= 3:
            return path.parts[-3]
    return stem


def _lab_name(submission: str) -> str:
    try:
        return lab_of(Path(submission))
    except ValueError:  # a file named after no lab (graded with --lab)
        return ""


def write_csv(results: list[Result], out: str | Path) -> None:
    """Write results as CSV (columns :data:`CSV_FIELDS`) atomically, every number in ``%g`` (a result read
    back from the journal writes as it did the first time)."""
    labs = {sub: _lab_name(sub) for sub in {r.submission for r in results}}

    def row(r: Result) -> dict:
        lab = labs[r.submission]
        out = r.to_row() | {"student": student_of(r.submission, lab), "lab": lab}
        return out | {k: f"{out[k]:g}" for k in ("points", "max_points") if out[k] != ""}

    with atomic_open(out, "w") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(row(r) for r in results)


def read_csv(path: str | Path) -> list[Result]:
    """The results of a CSV that ``write_csv`` wrote; ValueError for any other file."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames
        if tuple(columns or ()) != CSV_FIELDS:
            raise ValueError(f"columns {columns}")
        return [Result.from_row(r) for r in rows]
    except (UnicodeDecodeError, csv.Error, ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a labkit grade CSV ({exc}); allowed is a CSV with the columns "
                         f"{', '.join(CSV_FIELDS)}, as `labkit grade --csv` writes it") from None


UNFINISHED = "(unfinished)"  # the submission column of the row that marks a CSV written mid-run


def unfinished(left: int) -> Result:
    """The row that marks a CSV as written while ``left`` submissions were still to grade."""
    return Result("(partial)", Status.NOTES, 0, 0, submission=UNFINISHED,
                  message=f"{left} submission(s) not graded yet: this CSV is incomplete; the same command "
                          "with --resume grades only those")


def merge(paths: list[str | Path]) -> list[Result]:
    """Combine shard CSVs into the results an unsharded run gives (a submission in two shards, or a shard
    CSV written by a run that did not finish, is an error)."""
    by_submission: dict[str, list[Result]] = {}
    for path in paths:
        results = read_csv(path)
        if any(r.submission == UNFINISHED for r in results):
            raise ValueError(f"{path} was written by a grading run that did not finish; finish it with "
                             "--resume")
        for sub in {r.submission for r in results}:
            if sub in by_submission:
                raise ValueError(f"submission {sub!r} appears in more than one shard CSV ({path})")
        for r in results:
            by_submission.setdefault(r.submission, []).append(r)
    return [r for sub in sorted(by_submission) for r in by_submission[sub]]


def summary(results: list[Result]) -> str:
    """One line per submission: points, maximum, manual points still pending, points no check could grade
    (no reference for the run's profile / data set and no property) and the questions not passed."""
    by_submission: dict[str, list[Result]] = {}
    for r in results:
        by_submission.setdefault(r.submission, []).append(r)
    table = []
    for sub, rs in by_submission.items():
        points, most = totals(rs)
        lost = [r.question for r in rs if r.status in (Status.FAILED, Status.NOT_RUN)]
        table.append({"submission": sub, "points": f"{points:g}", "max": f"{most:g}",
                      "manual pending": f"{sum(r.max_points for r in rs if r.pending):g}",
                      "ungraded": f"{sum(r.max_points for r in rs if r.status is Status.UNGRADED):g}",
                      "failed": ", ".join(lost) or "-"})
    return grading.format_table(table)
