"""Files written whole: a crash or an error never leaves a half-written file under the final name, and one
writer at a time where several files belong together (a run's executed notebooks and results)."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb"):
    """Open a temporary file beside ``path`` (``mode`` "w" or "wb"); on a clean exit it becomes
    ``path`` (os.replace, readable by all: 0644), on an exception it is removed and ``path`` is left
    as it was. The parent folder is created. Temporaries that a killed writer of ``path`` left are
    removed first (their names carry the writer's pid)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}: allowed are 'w' and 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary, shareable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_orphans(path: Path) -> None:
    """Remove ``.<name>.<pid>.<random>.tmp`` files beside ``path`` whose writer is no longer alive
    (``kill -9`` leaves them; a live writer's file is kept)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def exclusive(folder: str | Path, what: str, lock: str = ".labkit.lock"):
    """Hold the writer lock ``folder/lock`` (created with the folder) while the block runs; if another
    process holds it, raise BlockingIOError naming ``what`` writes there. The lock goes with the process,
    so a killed writer never leaves the folder locked."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / lock, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BlockingIOError(f"another {what} is writing to {folder}: wait for it to end, or write "
                                  "elsewhere (--out)") from None
        yield
