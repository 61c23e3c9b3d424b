import os
import subprocess

import pytest

from labkit.atomic import atomic_open


def test_atomic_open_replaces_the_file_readable_by_all(tmp_path):
    path = tmp_path / "sub" / "out.json"
    with atomic_open(path, "w") as f:
        f.write("new")
    assert path.read_text() == "new" and os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(path.parent) == ["out.json"]


def test_atomic_open_keeps_the_old_file_and_no_temporary_on_error(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_open(path, "wb") as f:
            f.write(b"half")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_atomic_open_refuses_other_modes(tmp_path):
    with pytest.raises(ValueError, match="mode='a'"):
        with atomic_open(tmp_path / "x", "a"):
            pass


def test_a_killed_writers_temporary_is_removed_by_the_next_write_and_a_live_ones_kept(tmp_path):
    path = tmp_path / "grades.csv"
    dead = _dead_pid()
    orphan = tmp_path / f".grades.csv.{dead}.abc123.tmp"
    live = tmp_path / f".grades.csv.{os.getppid()}.def456.tmp"  # the test runner's parent: alive
    other = tmp_path / f".other.csv.{dead}.abc123.tmp"  # another file's: not ours to remove
    for p in (orphan, live, other):
        p.write_text("half")
    with atomic_open(path, "w") as f:
        f.write("whole")
    assert sorted(os.listdir(tmp_path)) == sorted(["grades.csv", live.name, other.name])


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
