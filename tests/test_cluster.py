"""The cluster recipe (scripts/cluster): the Slurm array script and the merge script, run with bash as Slurm
would run them (its variables set), on a small class of notebook 01; and the CI matrix's shard list."""

import csv
import os
import subprocess

import nbformat
import pytest

from labkit import HOME, release, runner

SCRIPTS = HOME / "scripts" / "cluster"


@pytest.mark.slow
def test_an_array_of_shards_then_a_merge_grades_every_submission_once(tmp_path):
    made = release.release_notebook(runner.resolve_notebook("01_sparse_linear"), tmp_path / "dist", seed=3)
    (tmp_path / "class").mkdir()
    source = nbformat.read(made.instructor / "01_sparse_linear.ipynb", as_version=4)
    for who, nb in (("ann", source), ("bob", nbformat.read(made.student, as_version=4)), ("cy", source)):
        nbformat.write(nb, tmp_path / "class" / f"{who}_01_sparse_linear.ipynb")

    def sbatch(script, task=None):
        env = {**os.environ, "LABKIT_KIT": str(HOME)}
        if task is not None:  # an array counted from 1, as --array=1-2 gives
            env |= {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "2"}
        done = subprocess.run(["bash", str(SCRIPTS / script), "class", str(made.instructor)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    for task in (1, 2):
        sbatch("grade_array.sbatch", task)
    first = (tmp_path / "grades" / "shard-1.csv").read_text()
    again = sbatch("grade_array.sbatch", 1)  # a requeued task: its journal is there, so --resume
    assert (tmp_path / "grades" / "shard-1.csv").read_text() == first and "0 to go" in again.stderr
    sbatch("merge.sbatch")
    totals = {r["submission"]: r for r in csv.DictReader((tmp_path / "grades" / "totals.csv").open())}
    assert sorted(totals) == [f"class/{w}_01_sparse_linear.ipynb" for w in ("ann", "bob", "cy")]
    assert totals["class/ann_01_sparse_linear.ipynb"]["automatic"] == "23"
    assert float(totals["class/bob_01_sparse_linear.ipynb"]["automatic"]) <= 2.3


def test_the_ci_matrix_covers_every_shard_once():
    import yaml

    workflow = yaml.safe_load((SCRIPTS / "github-actions.yml").read_text())
    shards = workflow["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    grade = next(s["run"] for s in workflow["jobs"]["shard"]["steps"] if "labkit grade" in s.get("run", ""))
    count = int(grade.split("--shard ${{ matrix.shard }}/")[1].split()[0])
    assert sorted(shards) == list(range(count))
    assert "--merge shard-*.csv" in str(workflow["jobs"]["merge"]["steps"])
