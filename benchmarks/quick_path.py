"""The quick path's time per notebook: ``labkit run`` of every notebook (quick profile, embedded data, with
grading) at one git revision against another, on this machine, in one process.

    .venv/bin/python benchmarks/quick_path.py [--baseline 73cb15a] [--candidate HEAD] [--notebooks 02_... ...]
                                              [--out runs/quick_path.json]

Each revision is checked out into its own temporary ``git worktree`` (so each starts as a clean checkout
does: no cached models, no executed notebooks) and run with this interpreter, ``PYTHONPATH`` and
``LABKIT_HOME`` pointing at it. The notebooks alternate between the two revisions (baseline, candidate,
next notebook), so a machine that slows down mid-run slows both. Prints seconds per notebook, the
candidate / baseline ratio and each run's score, and writes them as JSON with the CPU's name. Run it
alone: every core is in use. Issue 25's targets: the whole candidate run at most 300 s on a 2-core AVX2
CPU, notebooks 02 and 03 at most 90 s each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grading_cost import cpu_name  # benchmarks/ is on the path of a script run from it

from labkit import runner
from labkit.atomic import atomic_open

REPO = Path(__file__).resolve().parent.parent
SESSION_10 = "73cb15a"  # the last commit before issue 25 made the quick profile lighter


def checkout(revision: str, parent: Path) -> Path:
    """A clean worktree of ``revision`` under ``parent``."""
    path = parent / re.sub(r"[^A-Za-z0-9_.-]", "_", revision)
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), revision],
                   check=True)
    return path


def run_notebook(tree: Path, notebook: str) -> tuple[float, str]:
    """Seconds of ``labkit run NOTEBOOK`` in ``tree`` (the whole command: start-up, kernel, grading) and the
    score it printed."""
    env = {**os.environ, "PYTHONPATH": str(tree), "LABKIT_HOME": str(tree)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "labkit.cli", "run", notebook], cwd=tree, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    score = re.search(rf"^{notebook}\s+\d+\s+(\S+)", done.stdout, re.MULTILINE)
    return seconds, (score.group(1) if score else f"exit {done.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=SESSION_10,
                        help="git revision to compare against (default: session 10's quick profile)")
    parser.add_argument("--candidate", default="HEAD", help="git revision to time (default HEAD)")
    parser.add_argument("--notebooks", nargs="+", default=[path.stem for path in runner.lab_notebooks()])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "quick_path.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="quick-path-") as tmp:
        trees = {side: checkout(rev, Path(tmp) / side)
                 for side, rev in (("baseline", args.baseline), ("candidate", args.candidate))}
        try:
            rows = {}
            for notebook in args.notebooks:
                rows[notebook] = {side: run_notebook(tree, notebook) for side, tree in trees.items()}
                base, cand = rows[notebook]["baseline"], rows[notebook]["candidate"]
                print(f"{notebook:28s} baseline {base[0]:6.1f} s ({base[1]:>7s})  candidate {cand[0]:6.1f} s "
                      f"({cand[1]:>7s})  ratio {base[0] / cand[0]:.2f}x", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)])
    total = {side: sum(row[side][0] for row in rows.values()) for side in ("baseline", "candidate")}
    print(f"{'total':28s} baseline {total['baseline']:6.1f} s  candidate {total['candidate']:6.1f} s  "
          f"speed-up {total['baseline'] / total['candidate']:.2f}x")
    result = {"cpu": cpu_name(), "cores": os.cpu_count(), "baseline": args.baseline,
              "candidate": args.candidate,
              "seconds": {nb: {side: round(row[side][0], 1) for side in row} for nb, row in rows.items()},
              "scores": {nb: {side: row[side][1] for side in row} for nb, row in rows.items()},
              "total_s": {side: round(value, 1) for side, value in total.items()},
              "speedup": round(total["baseline"] / total["candidate"], 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
