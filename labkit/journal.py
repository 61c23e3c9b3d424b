"""The grading journal: each submission's results, written to disk the moment it is graded, so a class
run that is killed, interrupted or fails at its last step loses nothing, and ``labkit grade --resume``
grades only the submissions that are new or changed.

One JSON line per graded submission: its name, its key (a digest of the submission's bytes, the
instructor material it was graded against and the run's settings), its result rows and their checksum.
Lines are appended and flushed to disk one at a time; a line cut short by a crash, or whose checksum does
not match (a damaged disk), is ignored when the journal is read: that submission is graded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from labkit.results import Result


def submission_key(path: Path, material_digest: str, settings: dict) -> str:
    """What a submission's grade depends on: its bytes, the material and the settings (profile, data set)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(Path(path).read_bytes())
    h.update(material_digest.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


class Journal:
    """A journal file at ``path``: :meth:`graded` reads what it holds, :meth:`append` adds one submission."""

    def __init__(self, path: str | Path, resume: bool = False):
        """A journal at ``path``: with ``resume``, what an earlier run wrote there counts and new lines are
        added to it; without, an earlier journal is replaced once the first submission is graded (not
        before: a run that stops at its start leaves it as it was)."""
        self.path, self.resume, self._started = Path(path), resume, resume

    def graded(self) -> dict[str, list[Result]]:
        """``{key: results}`` of every whole line (the last one wins for a key graded twice); nothing
        unless resumed."""
        found = {}
        if not self.resume or not self.path.is_file():
            return found
        for line in self.path.read_bytes().splitlines():
            try:
                entry = json.loads(line)
                if entry["digest"] != _digest(entry["key"], entry["rows"]):
                    continue  # a damaged line (a flipped bit): that submission is graded again
                found[entry["key"]] = [Result.from_row(row) for row in entry["rows"]]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
        return found

    def append(self, key: str, results: list[Result]) -> None:
        """Add one graded submission and flush it to disk before returning."""
        rows = [r.to_row() for r in results]
        line = json.dumps({"submission": results[0].submission if results else "", "key": key, "rows": rows,
                           "digest": _digest(key, rows)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab+" if self._started else "wb+", buffering=0) as f:  # unbuffered: one write
            self._started = True
            whole = _drop_cut_line(f)
            try:
                data = memoryview(line.encode() + b"\n")
                while data:  # a raw write may take part of it: the rest raises once the disk is full
                    data = data[f.write(data):]
                os.fsync(f.fileno())
            except OSError as exc:  # a full disk: no half line is left; say what is kept and how to go on
                f.truncate(whole)
                raise OSError(f"the grading journal {self.path} could not be written ({exc.strerror or exc})"
                              f": {results[0].submission if results else 'this submission'} is not kept, the "
                              "submissions before it are; make room and rerun with --resume") from exc


def _digest(key: str, rows: list[dict]) -> str:
    """A checksum of one line's content: a line whose bytes changed on disk is not believed."""
    return hashlib.blake2b(json.dumps([key, rows], sort_keys=True).encode(), digest_size=16).hexdigest()


def _drop_cut_line(f) -> int:
    """Cut a line that a killed writer left unfinished off the end of ``f`` (open for appending); return
    where the whole lines end."""
    end = f.seek(0, os.SEEK_END)
    if end == 0 or (f.seek(end - 1), f.read(1))[1] == b"\n":
        return end  # the usual case: one byte read, not the whole journal on every append
    f.seek(0)
    whole = f.read().rfind(b"\n") + 1
    f.truncate(whole)
    f.seek(whole)
    return whole
