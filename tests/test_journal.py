"""Nothing lost when grading stops: the journal keeps each graded submission, the CSV is whole and says when
it is incomplete, a killed run leaves no worker behind, and --resume grades only what is left."""

import copy
import random
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from processes import alive, descendants

from labkit import autograde
from labkit.journal import Journal, submission_key
from labkit.results import Result, Status, totals


def _rows(name: str, points: float) -> list[Result]:
    return [Result("(notebook)", Status.NOTES, 0, 0, submission=name),
            Result("a.q", Status.PASSED if points else Status.FAILED, points, 2, submission=name)]


def test_the_journal_keeps_whole_lines_and_starts_afresh_unless_resumed(tmp_path):
    journal = Journal(tmp_path / "scores.csv.journal")
    journal.append("k1", _rows("alice.ipynb", 2))
    journal.append("k2", _rows("bob.ipynb", 0))
    with open(journal.path, "a") as f:
        f.write('{"submission": "carol.ipynb", "key": "k3", "rows": [{"quest')  # cut short by a crash
    kept = {"k1": _rows("alice.ipynb", 2), "k2": _rows("bob.ipynb", 0)}
    assert Journal(journal.path, resume=True).graded() == kept
    resumed = Journal(journal.path, resume=True)
    resumed.append("k3", _rows("carol.ipynb", 2))  # in place of the cut line
    kept["k3"] = _rows("carol.ipynb", 2)
    assert Journal(journal.path, resume=True).graded() == kept
    assert len(journal.path.read_text().splitlines()) == 3
    fresh = Journal(journal.path)
    assert fresh.graded() == {} and Journal(journal.path, resume=True).graded() == kept  # kept until...
    fresh.append("k4", _rows("dave.ipynb", 2))
    assert Journal(journal.path, resume=True).graded() == {"k4": _rows("dave.ipynb", 2)}  # ...a run writes


def test_a_line_with_a_flipped_bit_is_not_believed_and_the_others_are(tmp_path):
    journal = Journal(tmp_path / "scores.csv.journal")
    journal.append("k1", _rows("alice.ipynb", 2))
    journal.append("k2", _rows("bob.ipynb", 2))
    data = bytearray(journal.path.read_bytes())
    rng = random.Random(0)
    first = data.index(b"\n")
    whole = {"k1": _rows("alice.ipynb", 2), "k2": _rows("bob.ipynb", 2)}
    dropped = 0
    for _ in range(40):  # a flip in alice's line: alice graded again (or, in a field unread, as she was)
        flipped = bytearray(data)
        at = rng.randrange(first)
        flipped[at] ^= 1 << rng.randrange(8)
        journal.path.write_bytes(flipped)
        read = Journal(journal.path, resume=True).graded()
        assert read in ({"k2": whole["k2"]}, whole), at
        dropped += read != whole
    assert dropped >= 30  # nearly every byte of the line is checked


def test_a_submission_key_changes_with_its_bytes_material_and_settings(tmp_path):
    path = tmp_path / "a.ipynb"
    path.write_text("one")
    key = submission_key(path, "m", {"profile": "quick"})
    assert key == submission_key(path, "m", {"profile": "quick"})
    assert key != submission_key(path, "other", {"profile": "quick"})
    assert key != submission_key(path, "m", {"profile": "tiny"})
    path.write_text("two")
    assert key != submission_key(path, "m", {"profile": "quick"})


def test_merge_refuses_a_csv_of_a_run_that_did_not_finish(tmp_path):
    autograde.write_csv(_rows("alice.ipynb", 2) + [autograde.unfinished(3)], tmp_path / "part.csv")
    with pytest.raises(ValueError, match="did not finish"):
        autograde.merge([tmp_path / "part.csv"])


def _grade_until(argv: list[str], journal, lines: int, sig: int, cwd) -> tuple[set[int], int]:
    """Start ``labkit grade``, send ``sig`` once the journal holds ``lines`` submissions; the grader's child
    processes at that moment and its exit status."""
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", *argv], cwd=cwd, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 600
    while not (journal.is_file() and len(journal.read_text().splitlines()) >= lines):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.2)
    children = descendants(proc.pid)
    proc.send_signal(sig)
    return children, proc.wait(timeout=60)


@pytest.mark.slow
def test_a_stopped_or_killed_class_run_loses_nothing_and_resumes(tmp_path):
    subs = tmp_path / "class"
    subs.mkdir()
    nb = copy.deepcopy(autograde.load_material("01_sparse_linear").notebook)
    for who in ("alice", "bob", "carol"):  # three files (the same bytes would share one grade)
        nb.metadata["author"] = who
        nbformat.write(nb, subs / f"{who}_01_sparse_linear.ipynb")
    csv, journal = tmp_path / "scores.csv", tmp_path / "scores.csv.journal"
    argv = ["grade", str(subs), "--csv", str(csv), "--timeout", "120"]

    children, status = _grade_until(argv, journal, 1, signal.SIGTERM, tmp_path)
    assert status == 130 and children
    time.sleep(1)
    assert not alive(children)  # the pool's worker went with it (its kernel and sandbox with that)
    rows = autograde.read_csv(csv)  # whole, with the graded submission and a row saying it is incomplete
    assert any(r.submission == autograde.UNFINISHED for r in rows) and len({r.submission for r in rows}) == 2

    children, status = _grade_until([*argv, "--resume"], journal, 2, signal.SIGKILL, tmp_path)
    assert status == -signal.SIGKILL
    time.sleep(1)
    assert not alive(children)  # kill -9 too: the worker dies with the grader (PR_SET_PDEATHSIG)

    done = subprocess.run([sys.executable, "-m", "labkit.cli", *argv, "--resume"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2 graded, 1 to go" in done.stderr  # only carol was graded again
    rows = autograde.read_csv(csv)
    assert not any(r.submission == autograde.UNFINISHED for r in rows)
    full = sum(e["points"] for e in autograde.load_material("01_sparse_linear").catalog().values())
    for who in ("alice", "bob", "carol"):
        assert totals([r for r in rows if who in r.submission]) == (full, full)


def test_a_feedback_page_that_cannot_be_written_is_a_note_not_the_end_of_the_class(tmp_path, monkeypatch):
    def no_template(*args):
        raise ValueError("No template sub-directory with name 'lab' found")

    monkeypatch.setattr(autograde, "_run_trusted", lambda *args: ([], None))  # no kernels: nothing answered
    monkeypatch.setattr(autograde, "feedback_page", no_template)
    material = autograde.load_material("01_sparse_linear")
    path = tmp_path / "dave_01_sparse_linear.ipynb"
    nbformat.write(material.notebook, path)
    results = autograde.grade_one(path, material, feedback=tmp_path / "feedback")
    assert results[0].status == Status.NOTES
    assert "feedback page not written (ValueError: No template sub-directory" in results[0].message
    assert len(results) > 1 and {r.status for r in results[1:]} <= {Status.NOT_RUN, Status.MANUAL}


def test_a_second_grader_of_the_same_csv_is_refused_and_one_of_another_csv_is_not(tmp_path, capsys):
    import fcntl

    from labkit import cli

    tmp_path.joinpath("x.ipynb").write_text("{}")
    with open(tmp_path / ".grades.csv.lock", "a") as held:  # as the first grader holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main(["grade", str(tmp_path / "x.ipynb"), "--csv", str(tmp_path / "grades.csv")]) == 2
        assert "another labkit grade --csv" in capsys.readouterr().err
        assert not (tmp_path / "grades.csv").exists() and not (tmp_path / "grades.csv.journal").exists()
        assert cli.main(["grade", str(tmp_path / "x.ipynb"), "--csv", str(tmp_path / "other.csv"),
                         "--lab", "01_sparse_linear", "--no-sandbox", "--timeout", "60"]) == 0
    assert autograde.read_csv(tmp_path / "other.csv")
