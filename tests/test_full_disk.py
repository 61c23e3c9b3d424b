"""A full disk, as a TA meets it: each command that writes stops with one line, leaves every earlier file
as it was (or whole), no temporary behind, and a rerun once there is room gives the undisturbed result.

The disk is a small tmpfs mounted for the test (root only: CI and the course machines run these as root)."""

import copy
import json
import os
import subprocess
import sys

import nbformat
import pytest

from labkit import autograde, checkpoints
from labkit.results import totals

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]


@pytest.fixture
def disk(tmp_path):
    """A 16 MB tmpfs at ``tmp_path/disk``, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(disk, room: int = 0):
    """Fill ``disk`` up to ``room`` bytes free (tmpfs counts 4 KB pages)."""
    st = os.statvfs(disk)
    with open(disk / "filler", "ab") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - room))


def _labkit(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "labkit.cli", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def _leftovers(folder):
    """Temporaries and partial files under ``folder`` (the writer lock is not one)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if not p.name.endswith(".lock"))


def _state(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "filler"}


def test_run_on_a_full_disk_keeps_the_earlier_run_and_a_rerun_with_room_scores_the_same(disk, tmp_path):
    out = disk / "run"
    first = _labkit("run", "01_sparse_linear", "--out", out, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-2000:]
    before = _state(out)
    _fill(disk, room=16 * 1024)
    full = _labkit("run", "01_sparse_linear", "--out", out, cwd=tmp_path)
    assert full.returncode == 1 and "No space left on device" in full.stdout, full.stdout[-2000:]
    assert _state(out) == before and _leftovers(out) == []  # the earlier executed notebook and results
    (disk / "filler").unlink()
    again = _labkit("run", "01_sparse_linear", "--out", out, cwd=tmp_path)
    assert again.returncode == 0 and "score 23/23" in again.stdout and _leftovers(out) == []
    nbformat.validate(nbformat.read(out / "01_sparse_linear.ipynb", as_version=4))


def test_train_report_and_release_on_a_full_disk_write_nothing_and_say_so(disk, tmp_path):
    executed = tmp_path / "executed.ipynb"
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), executed)
    _fill(disk, room=8 * 1024)
    commands = {
        "train": ("train", "lenet-300-100", "--dataset", "fashion-mnist-mini", "--epochs", "1", "--out",
                  disk / "model.pt"),
        "report": ("report", executed, "--out", disk / "report"),
        "release": ("release", "01_sparse_linear", "--out", disk / "release", "--no-validate"),
    }
    for name, argv in commands.items():
        done = _labkit(*argv, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and lines[-1].startswith(f"labkit {name}: error:"), (name, done.stderr)
        assert "No space left on device" in lines[-1], (name, lines[-1])
        assert _leftovers(disk) == [], (name, _leftovers(disk))
        assert [p.name for p in disk.rglob("*") if p.is_file() and p.name not in ("filler", ".labkit.lock")
                ] == [], name
    (disk / "filler").unlink()
    done = _labkit(*commands["train"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoints.load_checkpoint(disk / "model.pt", arch="lenet-300-100")  # whole: its checksum verifies


def test_grade_on_a_full_disk_stops_keeps_what_was_graded_and_resumes(disk, tmp_path):
    subs = tmp_path / "class"
    subs.mkdir()
    nb = copy.deepcopy(autograde.load_material("01_sparse_linear").notebook)
    for who in ("alice", "bob"):
        nb.metadata["author"] = who
        nbformat.write(nb, subs / f"{who}_01_sparse_linear.ipynb")
    csv = disk / "grades.csv"
    argv = ("grade", subs, "--csv", csv, "--feedback", disk / "feedback", "--timeout", "120")
    _fill(disk, room=8 * 1024)
    full = _labkit(*argv, cwd=tmp_path)
    last = full.stderr.strip().splitlines()[-1]
    assert full.returncode == 2 and last.startswith("labkit grade: error:"), full.stderr[-2000:]
    assert "rerun with --resume" in last
    if csv.exists():
        autograde.read_csv(csv)  # whole
    assert _leftovers(disk) == []
    (disk / "filler").unlink()
    again = _labkit(*argv, "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = autograde.read_csv(csv)
    full_marks = sum(e["points"] for e in autograde.load_material("01_sparse_linear").catalog().values())
    for who in ("alice", "bob"):
        assert totals([r for r in rows if who in r.submission]) == (full_marks, full_marks)
    journal = (disk / "grades.csv.journal").read_text().splitlines()
    assert all(json.loads(line) for line in journal if line)  # every line whole after the resume
