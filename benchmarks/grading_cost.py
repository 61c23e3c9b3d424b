"""What grading a class costs: seconds per submission for each notebook, a class of 100 on one machine and
on a Slurm array of shards, and whether ``--jobs N`` on N cores is slower than one job.

    .venv/bin/python benchmarks/grading_cost.py [--labs 00_concepts ...] [--profile quick] [--class-size 100]
                                                [--shards 10] [--jobs-lab 05_lenet5_pruning] [--out FILE]

Each lab is released (``labkit release``: student and instructor folders) and its solution graded the way
an instructor grades (``autograde.grade``: instructor folder, sandbox, one job with every core), timed
from the call to the rows; the solution runs every cell, so it is the slowest honest submission (a blank
one stops training early). A class of N costs N x the sum over the labs on one machine; on S shards it
costs that / S (each shard's machine grades its share). The models labkit makes from its own code alone
(pretrained ones, Lab 2 (e)'s model for Lab 3) are cached by a class's first submission and reused by the
rest: they are made here before the timing and not counted. ``--jobs-lab``: two copies of that lab's
solution graded with ``--jobs 1`` and then ``--jobs 2``; their ratio says what sharing the cores buys.
Run it alone: every core is in use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from labkit import autograde, labs, profiles, release, runner
from labkit.atomic import atomic_open
from labkit.results import totals

LABS = [path.stem for path in runner.lab_notebooks()]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def timed_grade(submissions: list[Path], instructor: Path, profile: str, jobs: int) -> tuple[float, list]:
    start = time.perf_counter()
    rows = autograde.grade(submissions, profile=profile, jobs=jobs, instructor=instructor,
                           root=submissions[0].parent)
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", nargs="+", default=list(LABS))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--class-size", type=int, default=100)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--jobs-lab", default="05_lenet5_pruning")
    parser.add_argument("--out", type=Path, default=Path("runs/grading_cost.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="labkit-grading-cost-"))
    result = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "profile": args.profile,
              "seconds_per_submission": {}, "score": {}}
    profile = profiles.get_profile(args.profile)
    for arch in ("resnet20", "lenet5"):
        profiles.lab_model(profile, arch)
    if "03_quantization_resnet20" in args.labs:
        labs.global_pruned_resnet20(profile)
    try:
        for lab in args.labs:
            made = release.release_notebook(runner.resolve_notebook(lab), work / lab / "dist", seed=1)
            submission = work / lab / f"solution_{lab}.ipynb"
            shutil.copy(made.instructor / f"{lab}.ipynb", submission)
            seconds, rows = timed_grade([submission], made.instructor, args.profile, jobs=1)
            result["seconds_per_submission"][lab] = round(seconds, 1)
            points, most = totals(rows)
            result["score"][lab] = f"{points:g}/{most:g}"
            print(f"{lab}: {seconds:.1f} s per submission, solution {result['score'][lab]}", flush=True)
        one_student = sum(result["seconds_per_submission"].values())
        result["one_student_all_labs_s"] = round(one_student, 1)
        result[f"class_of_{args.class_size}_one_machine_h"] = round(args.class_size * one_student / 3600, 2)
        result[f"class_of_{args.class_size}_{args.shards}_shards_h"] = round(
            args.class_size * one_student / args.shards / 3600, 2)
        if args.jobs_lab:
            lab = args.jobs_lab
            instructor = work / lab / "dist" / "instructor"
            pair = []
            for who in ("a", "b"):
                pair.append(work / lab / "pair" / f"{who}_{lab}.ipynb")
                pair[-1].parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(instructor / f"{lab}.ipynb", pair[-1])
            for jobs in (1, 2):
                seconds, _ = timed_grade(pair, instructor, args.profile, jobs)
                result[f"two_submissions_{lab}_jobs{jobs}_s"] = round(seconds, 1)
                print(f"two {lab} submissions, --jobs {jobs}: {seconds:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
