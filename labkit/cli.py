"""The ``labkit`` command: ``run`` the notebooks, ``grade`` submissions, ``release`` student versions,
make ``references``, ``train`` a pretrained checkpoint, export a student's ``report``.

Size (about 420 lines): one argparse parser and one short function per command; the work is done in the
modules they call.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from labkit import HOME, data, models
from labkit.device import PRECISIONS
from labkit.profiles import PROFILES
from labkit.runner import NotebookFailed, execute_notebook, lab_notebooks, resolve_notebook


def _train(args) -> int:
    from labkit.checkpoints import CHECKPOINT_DIR, load_checkpoint, pretrained_path
    from labkit.pretrain import pretrain

    _positive("--epochs", args.epochs, "a whole number >= 1: a checkpoint trained for 0 epochs is untrained")
    if args.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        raise ValueError(f"--device {args.device!r}: allowed are cpu, cuda and cuda:N")
    target = args.out or pretrained_path(args.model, args.dataset)
    committed = Path(target).is_file() and Path(target).resolve().parent == CHECKPOINT_DIR.resolve()
    if committed and not args.force:
        raise ValueError(f"{target} is a committed checkpoint (the labs' numbers come from it); allowed is "
                         "--out elsewhere, or --force to replace it")
    if Path(target).is_file():
        old = load_checkpoint(target)[1]
        print(f"replacing {target} (test accuracy {100 * old.get('accuracy', float('nan')):.2f}%, "
              f"recipe {old.get('recipe')})")
    overrides = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size),
                                   ("seed", args.seed)) if v is not None}
    _, meta = pretrain(args.model, args.dataset, out=args.out, device=args.device, **overrides)
    print(f"{args.model} on {args.dataset}: test accuracy {100 * meta['accuracy']:.2f}% "
          f"(best epoch {meta['best_epoch'] + 1}, {meta['train_seconds']:.0f} s on {meta['device']})")
    return 0


def find_notebooks(names: list[str]) -> list[Path]:
    """Notebook paths from names (``01_sparse_linear``) or paths; every lab notebook when empty."""
    return [resolve_notebook(name) for name in names] or lab_notebooks()


def _score(path: Path) -> tuple[float, float, list[str]]:
    from labkit.results import Result, Status, totals

    lines = path.read_text().splitlines() if path.is_file() else []
    results = [Result.from_row(json.loads(line)) for line in lines]
    return (*totals(results), [r.question for r in results if r.status in (Status.FAILED, Status.NOT_RUN)])


def _policy_env(args, precision: str) -> dict[str, str]:
    """LABKIT_DEVICE / LABKIT_PRECISION for the kernels: the options, else the command's defaults."""
    return {"LABKIT_DEVICE": args.device, "LABKIT_PRECISION": args.precision or precision}


def _positive(name: str, value, allowed: str = "a number > 0") -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} {value:g}: allowed is {allowed}")


def _run(args) -> int:
    from labkit.atomic import exclusive

    _positive("--timeout", args.timeout, "a number of seconds > 0 (leave it out for no limit)")
    out_dir = (args.out or HOME / "runs" / args.profile).resolve()  # kernels run in notebooks/, not here
    notebooks = find_notebooks(args.notebooks)
    for nb in notebooks:
        if (out_dir / nb.name).resolve() == nb.resolve():
            raise ValueError(f"--out {args.out}: the executed copy of {nb.name} would replace the notebook "
                             "itself; allowed is another folder")
    with exclusive(out_dir, "labkit run"):
        return _run_into(args, notebooks, out_dir)


def _run_into(args, notebooks: list[Path], out_dir: Path) -> int:
    params = {"PROFILE": args.profile, "DATASET": args.dataset}
    precision = "auto" if args.profile == "full" else "fp32"  # quick, tiny: the references' precision
    rows, failures = [], 0
    for nb in notebooks:
        # the kernel writes the results beside; they replace the earlier ones with the executed notebook,
        # so a killed or failed run leaves the earlier pair as it was
        results, partial = out_dir / f"{nb.stem}.results.jsonl", out_dir / f".{nb.stem}.results.partial.jsonl"
        partial.unlink(missing_ok=True)
        print(f"[labkit run] {nb.name} (profile {args.profile}) ...", flush=True)
        start = time.perf_counter()
        error, written = "", True
        try:
            env = {"LABKIT_RESULTS": str(partial), **_policy_env(args, precision)}
            execute_notebook(nb, out_dir / nb.name, params, env=env, timeout=args.timeout, progress=True)
        except NotebookFailed as exc:  # a failing cell: the executed notebook was written all the same
            error = str(exc)[:160]
        except Exception as exc:  # a kernel that died or timed out, a full disk: go on with the others
            error, written = f"{type(exc).__name__}: {exc}"[:160], False
        points, max_points, failed = _score(partial)
        if written and partial.exists():
            os.replace(partial, results)
        elif written:
            results.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        seconds = time.perf_counter() - start
        if error or failed:
            failures += 1
        rows.append((nb.stem, seconds, f"{points:g}/{max_points:g}", ", ".join(failed) or error or "-"))
        print(f"[labkit run] {nb.name}: {seconds:.0f} s, score {points:g}/{max_points:g}"
              + (f", FAILED: {rows[-1][3]}" if error or failed else ""), flush=True)
    width = max([len(r[0]) for r in rows] + [8])
    print(f"\n{'notebook':<{width}}  {'seconds':>7}  {'score':>9}  failures")
    for name, seconds, score, fail in rows:
        print(f"{name:<{width}}  {seconds:7.0f}  {score:>9}  {fail}")
    print(f"{'total':<{width}}  {sum(r[1] for r in rows):7.0f}")
    print(f"executed notebooks are in {out_dir}")
    return 1 if failures else 0


def _references(args) -> int:
    from labkit.grading import make_references

    os.environ.update(_policy_env(args, "fp32"))  # the kernels inherit it
    for nb in find_notebooks(args.notebooks):
        path = make_references(nb, args.profile, force=args.force, dataset=args.dataset)
        print(f"wrote {path}")
    return 0


def _tag(args) -> int:
    import nbformat

    from labkit import autograde, cells
    from labkit.atomic import atomic_open

    for nb_path in find_notebooks(args.notebooks):  # the catalog of the notebook given, wherever it lies
        catalog = autograde.load_material(nb_path.stem, source=nb_path).catalog()
        nb = nbformat.read(nb_path, as_version=4)
        before = nbformat.writes(nb)
        added = cells.tag(nb, {q: e["points"] for q, e in catalog.items()})
        if nbformat.writes(nb) != before:
            with atomic_open(nb_path, "w") as f:
                nbformat.write(nb, f)
        print(f"{nb_path.name}: {len(added)} new cell ids" + (f" ({', '.join(added)})" if added else ""))
    return 0


def _grade(args) -> int:
    from labkit.atomic import exclusive

    _positive("--timeout", args.timeout, "a number of seconds > 0")
    _positive("--jobs", args.jobs, "a whole number >= 1")
    if not args.memory >= 0.25:
        raise ValueError(f"--memory {args.memory:g}: allowed is a number of GiB >= 0.25 (per submission)")
    inputs = [Path(p) for p in args.submissions] + ([args.manual] if args.manual else [])
    for option, out in (("--csv", args.csv), ("--manual-template", args.manual_template),
                        ("--totals", args.totals)):
        if out is not None and (out.suffix == ".ipynb" or out.is_dir()
                                or any(out.resolve() == p.resolve() for p in inputs)):
            raise ValueError(f"{option} {out}: that is a notebook, a folder or one of the inputs; allowed "
                             "is a new or earlier CSV file, e.g. grades.csv")
    if args.resume and args.csv is None:
        raise ValueError("--resume: allowed only with --csv (its journal, CSV.journal, holds what was "
                         "graded)")
    os.environ.update(_policy_env(args, "fp32"))  # the kernels inherit it
    if args.csv is None:
        return _grade_into(args)
    with exclusive(args.csv.resolve().parent, f"labkit grade --csv {args.csv}", f".{args.csv.name}.lock"):
        return _grade_into(args)  # one writer of the CSV and its journal


def _grade_into(args) -> int:
    from labkit import autograde

    if args.merge:
        rows = autograde.merge(args.submissions)
    else:
        shard = autograde.parse_shard(args.shard) if args.shard else None
        submissions = autograde.find_submissions(args.submissions)
        if args.instructor is None:
            print("labkit grade: NOTE: no --instructor folder: grading with the kit's public references, "
                  "without hidden cases (`labkit release` writes the instructor folder)", file=sys.stderr)
        journal = on_graded = None
        if args.csv is not None:
            from labkit.journal import Journal

            journal = Journal(args.csv.with_name(args.csv.name + ".journal"), resume=args.resume)

            def on_graded(rows, left):  # the CSV is whole at every moment, and says when it is not final
                graded = len({r.submission for r in rows})
                try:
                    autograde.write_csv(rows + ([autograde.unfinished(left)] if left else []), args.csv)
                except OSError as exc:  # a full disk: the journal keeps what was graded
                    raise OSError(f"{args.csv} could not be written ({exc.strerror or exc}); the {graded} "
                                  f"graded submissions are kept in {journal.path}: make room and rerun with "
                                  "--resume") from exc
                print(f"[labkit grade] {graded} graded, {left} to go; {args.csv} is up to date",
                      file=sys.stderr, flush=True)
        rows = autograde.grade(submissions, lab=args.lab, profile=args.profile, jobs=args.jobs,
                               timeout=args.timeout, shard=shard, instructor=args.instructor,
                               sandbox=not args.no_sandbox, memory=int(args.memory * 2**30),
                               feedback=args.feedback, dataset=args.dataset, journal=journal,
                               on_graded=on_graded)
    if args.manual:
        rows = autograde.apply_manual(rows, args.manual)
        if args.feedback:  # the pages written while grading (or before --resume) had no manual marks yet
            _rebuild_feedback(rows, args.feedback)
    if args.manual_template:
        autograde.write_manual_template(rows, args.manual_template)
        print(f"wrote {args.manual_template}: fill in points (and comments), then pass it as --manual")
    if args.totals:
        autograde.write_totals(rows, args.totals)
        print(f"wrote {args.totals}")
    if args.csv:
        autograde.write_csv(rows, args.csv)
    print(autograde.summary(rows))
    if args.csv:
        print(f"wrote {args.csv}")
    return 0


def _rebuild_feedback(rows, folder: Path) -> None:
    from labkit import feedback

    written, missing = feedback.rebuild(rows, folder)
    print(f"wrote {len(written)} feedback pages in {folder}")
    if missing:
        raise ValueError(f"no executed notebook under {folder} for {len(missing)} submissions ({missing[0]}, "
                         "...): grade them with --feedback into this folder first")


def _feedback(args) -> int:
    from labkit import autograde

    rows = autograde.merge(args.grades)
    if args.manual:
        rows = autograde.apply_manual(rows, args.manual)
    _rebuild_feedback(rows, args.out)
    return 0


def _release(args) -> int:
    from labkit import release

    failed = False
    for source in find_notebooks(args.sources):
        start = time.perf_counter()
        print(f"{source.stem}: recording hidden cases (the solution, run once in the tiny profile) ...",
              flush=True)
        r = release.release_notebook(source, args.out, timeout=args.timeout)
        print(f"released {r.student} (blanked: {', '.join(r.blanked) or 'code outside functions'}); "
              f"instructor folder {r.instructor} [{time.perf_counter() - start:.0f} s]", flush=True)
        if args.no_validate:
            continue
        print(f"{source.stem}: validating: grading the solution and the blank student version "
              f"(profile {args.profile}, sandboxed) ...", flush=True)
        v = release.validate(r, profile=args.profile, timeout=args.timeout)
        print(f"  solution fails {v.solution_failures or 'nothing'}; blank student version scores "
              f"{v.student_points:g}/{v.max_points:g} (at most {100 * release.BLANK_SHARE:g}% allowed) and "
              f"fails {v.student_failures or 'nothing'} (must include {v.expected_student_failures}): "
              + ("OK" if v.ok else "INVALID") + f" [{time.perf_counter() - start:.0f} s]", flush=True)
        failed |= not v.ok
    return 1 if failed else 0


def _distribute(args) -> int:
    from labkit import distribution
    from labkit.runner import resolve_notebook

    labs = sorted(resolve_notebook(lab).stem for lab in args.labs)
    out = distribution.write_distribution(args.out, labs)
    print(f"wrote the student distribution {out} (open: {', '.join(labs)}): publish it at "
          "labkit.STUDENT_REPOSITORY, which the notebooks' Colab setup cell installs")
    return 0


def _policy_options(p: argparse.ArgumentParser, device: str, precision: str) -> None:
    """--device / --precision: the kernels' LABKIT_DEVICE / LABKIT_PRECISION (see labkit.device)."""
    p.add_argument("--device", default=device, help=f"auto, cpu, cuda or cuda:N (default: {device})")
    p.add_argument("--precision", choices=PRECISIONS,
                   help=f"training autocast: auto, fp32, bf16, fp16 where native (default: {precision})")


def _report(args) -> int:
    from labkit import handin

    for notebook in args.notebooks:
        try:
            r = handin.export(notebook, args.out, require_pdf=args.pdf)
        except handin.NoPdfEngine as exc:  # asked for, impossible: one line, as for a user error
            print(f"labkit report: error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {r.html}; " + (f"{r.pdf} (PDF engine: {r.engine})" if r.pdf else f"no PDF: {r.note}"))
        if r.errors:  # the report shows them where they happened; say so before it is handed in
            print(f"  NOTE: {len(r.errors)} cells of {notebook} raised an error (shown in the report): "
                  + "; ".join(r.errors[:3]) + (" ..." if len(r.errors) > 3 else ""), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset and save a pretrained checkpoint")
    p.add_argument("model", choices=models.ARCHITECTURES)
    p.add_argument("--dataset", required=True, choices=data.DATASETS)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", type=Path, help="checkpoint path (default: the registry's)")
    p.add_argument("--force", action="store_true", help="replace a committed checkpoint")
    p.set_defaults(func=_train)

    p = sub.add_parser("run", help="execute notebooks top to bottom with grading into runs/PROFILE/")
    p.add_argument("notebooks", nargs="*", help="names or paths (default: every notebook in notebooks/)")
    p.add_argument("--profile", choices=PROFILES, default="quick")
    p.add_argument("--dataset", choices=data.DATASETS, help="override the profile's dataset")
    p.add_argument("--timeout", type=float, help="seconds allowed per cell")
    p.add_argument("--out", type=Path, help="folder for executed notebooks (default: runs/PROFILE)")
    _policy_options(p, "auto", "fp32 (quick, tiny) or auto (full)")
    p.set_defaults(func=_run)

    p = sub.add_parser("grade", help="grade student notebooks, each isolated, into a CSV and a summary")
    p.add_argument("submissions", nargs="+", help="notebooks or folders (with --merge: shard CSVs)")
    p.add_argument("--lab", help="which lab they answer (default: from each file name)")
    p.add_argument("--profile", choices=PROFILES, default="quick")
    p.add_argument("--dataset", choices=data.DATASETS,
                   help="the data set the class ran on (default: the profile's); where the kit has no "
                        "reference for it, the property checks grade")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once (>= 1)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per cell before it is interrupted")
    p.add_argument("--shard", help="I/N: grade only this deterministic share of the submissions")
    p.add_argument("--csv", type=Path, help="write rows (submission, question, points, max_points, message)")
    p.add_argument("--merge", action="store_true", help="combine shard CSVs instead of grading")
    p.add_argument("--resume", action="store_true",
                   help="with --csv: keep what an earlier run of the same class wrote to CSV.journal and "
                        "grade only new or changed submissions")
    p.add_argument("--instructor", type=Path,
                   help="instructor folder from `labkit release` (source notebooks, references with hidden "
                        "cases); default: the kit's notebooks and public references")
    p.add_argument("--memory", type=float, default=6.0, help="GiB of memory per submission's kernel")
    p.add_argument("--feedback", type=Path, help="folder for one HTML page per submission: its notebook "
                   "with every mark (and the executed notebook, for labkit feedback)")
    p.add_argument("--manual", type=Path,
                   help="CSV of manual scores (submission, question, points[, comment]) merged into the rows")
    p.add_argument("--manual-template", type=Path,
                   help="write the CSV of every manually graded question to fill in for --manual")
    p.add_argument("--totals", type=Path, help="write one row per submission: automatic, manual, total, max")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run kernels unconfined (default: bubblewrap: no network, writes only in its folder)")
    _policy_options(p, "cpu", "fp32: the references' own")
    p.set_defaults(func=_grade)

    p = sub.add_parser("feedback", help="write the feedback pages again from grades (e.g. after manual "
                                        "marks), without regrading")
    p.add_argument("grades", nargs="+", type=Path, help="grade CSVs (labkit grade --csv; shards are merged)")
    p.add_argument("--out", type=Path, required=True, help="the --feedback folder the class was graded into")
    p.add_argument("--manual", type=Path, help="CSV of manual scores and comments (as labkit grade --manual)")
    p.set_defaults(func=_feedback)

    p = sub.add_parser("release", help="student versions: solutions blanked, outputs stripped, validated")
    p.add_argument("sources", nargs="+", help="solution notebooks (names or paths)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--profile", choices=PROFILES, default="quick", help="profile the validation grades with")
    p.add_argument("--no-validate", action="store_true", help="skip grading both versions")
    p.set_defaults(func=_release)

    p = sub.add_parser("distribute", help="the kit as students get it: the open labs' blanks a raise, "
                                          "no answer in its references, their student notebooks")
    p.add_argument("labs", nargs="+", help="the labs open now (names or paths)")
    p.add_argument("--out", type=Path, required=True, help="a new folder, or an earlier distribution")
    p.set_defaults(func=_distribute)

    p = sub.add_parser("report", help="export executed notebooks as the handout's report: HTML, and PDF "
                                      "where an engine (headless Chromium or xelatex) is installed")
    p.add_argument("notebooks", nargs="+", help="executed notebooks (.ipynb)")
    p.add_argument("--out", type=Path, help="folder for the reports (default: each notebook's folder)")
    p.add_argument("--pdf", action="store_true", help="fail (exit 2) when no PDF can be made")
    p.set_defaults(func=_report)

    p = sub.add_parser("tag", help="give code cells nbgrader metadata (ids kept, points from references)")
    p.add_argument("notebooks", nargs="*", help="names or paths (default: every notebook in notebooks/)")
    p.set_defaults(func=_tag)

    p = sub.add_parser("references", help="regenerate notebooks' grading references from the solution run")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--profile", choices=PROFILES, required=True)
    p.add_argument("--dataset", choices=data.DATASETS, help="references for a DATASET override")
    p.add_argument("--force", action="store_true", help="overwrite a reference file that differs")
    _policy_options(p, "cpu", "fp32")
    p.set_defaults(func=_references)

    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupted)  # a scheduler's kill: cleanup runs as for Ctrl-C
    try:
        return args.func(args)
    except (ValueError, TypeError, LookupError, OSError) as exc:  # a user error: one line, no traceback
        print(f"labkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"labkit {args.command}: stopped" + (f"; {args.csv} holds what was graded (rerun with --resume)"
                                                  if getattr(args, "csv", None) else ""), file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(*_):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
