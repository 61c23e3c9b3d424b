"""Atomic file writes: a crash or an error never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb"):
    """Open a temporary file beside ``path`` (``mode`` "w" or "wb"); on a clean exit it becomes
    ``path`` (os.replace, readable by all: 0644), on an exception it is removed and ``path`` is left
    as it was. The parent folder is created."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}: allowed are 'w' and 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary, shareable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
