"""Execute notebooks top to bottom with papermill, parameters injected into the ``parameters`` cell."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

PROFILES = ("quick", "full", "tiny")


class NotebookFailed(RuntimeError):
    """A cell raised; the message names the notebook, the cell and the exception."""


@contextmanager
def _environ(extra: dict[str, str] | None):
    """Set environment variables for the kernel papermill starts (it inherits ours), then restore."""
    saved = {k: os.environ.get(k) for k in (extra or {})}
    os.environ.update(extra or {})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute_notebook(notebook: str | Path, out: str | Path, parameters: dict | None = None,
                     env: dict[str, str] | None = None, timeout: float | None = None) -> Path:
    """Run ``notebook`` into ``out`` (created with its parents; it keeps the outputs, also of a
    failed run); raise ``NotebookFailed`` if a cell raises. ``env`` is set for the kernel only for
    the duration of the run; ``timeout`` bounds each cell in seconds."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook, out = Path(notebook), Path(out)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    with _environ(env):
        try:
            pm.execute_notebook(str(notebook), str(out), parameters=parameters or {},
                                cwd=str(notebook.parent), execution_timeout=timeout, progress_bar=False,
                                kernel_name="python3")
        except PapermillExecutionError as exc:
            where = f"{notebook.name}: cell {exc.exec_count}"
            raise NotebookFailed(f"{where}: {exc.ename}: {exc.evalue}") from exc
    return out
