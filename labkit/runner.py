"""Find the lab notebooks; execute notebooks top to bottom with papermill, parameters injected into the
``parameters`` cell; the Colab setup cell every notebook opens with."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from labkit import HOME

NOTEBOOKS = HOME / "notebooks"


def lab_notebooks() -> list[Path]:
    """The numbered lab notebooks (``NN_name.ipynb``) under ``labkit.HOME/notebooks``, in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def resolve_notebook(notebook: str | Path) -> Path:
    """A notebook given by path, or by name (``01_sparse_linear``, with or without ``.ipynb``) under
    ``NOTEBOOKS``; FileNotFoundError naming the lab notebooks otherwise, ValueError for a file that is not
    a ``.ipynb`` notebook."""
    path = Path(notebook)
    if path.is_file():
        if path.suffix != ".ipynb":
            raise ValueError(f"{str(notebook)!r} is not a notebook: allowed is a .ipynb file or one of "
                             f"{[p.stem for p in lab_notebooks()]}")
        return path
    named = NOTEBOOKS / (path.name if path.suffix == ".ipynb" else f"{path.name}.ipynb")
    if named.is_file():
        return named
    raise FileNotFoundError(f"no notebook {str(notebook)!r}: allowed is a notebook file or one of "
                            f"{[p.stem for p in lab_notebooks()]}")


def read_notebook(path: str | Path):
    """The notebook at ``path`` (nbformat v4); ValueError for a missing file, another suffix than
    ``.ipynb`` or a file nbformat cannot read."""
    import nbformat

    path = Path(path)
    if path.suffix != ".ipynb" or not path.is_file():
        raise ValueError(f"notebook {str(path)!r}: allowed is an existing .ipynb file")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several kinds of errors for a broken file
        raise ValueError(f"notebook {str(path)!r} cannot be read as a notebook: {exc}") from None


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


# Jupyter's own plotting backend: set for every kernel labkit starts, so an MPLBACKEND=Agg in the caller's
# environment (common on servers) does not leave the executed notebooks without their plots.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def execute_notebook(notebook: str | Path, out: str | Path, parameters: dict | None = None,
                     env: dict[str, str] | None = None, timeout: float | None = None,
                     progress: bool = False) -> Path:
    """Run every cell of ``notebook`` into ``out`` (created with its parents; it keeps the outputs, also of
    a failed run), on past a cell that raises as ``labkit grade`` does, so later checks still report; then
    raise ``NotebookFailed`` naming the first cell that raised. ``env`` is set for the kernel only for
    the duration of the run; ``timeout`` bounds each cell in seconds; ``progress`` copies what the
    kernel writes to stderr (training's per-epoch lines, warnings) to ours while it runs."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook, out = Path(notebook), Path(out)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial.ipynb")  # papermill writes as it goes; out appears whole
    failed = None
    try:
        with _environ({"MPLBACKEND": INLINE_BACKEND, **(env or {})}):
            try:
                pm.execute_notebook(str(notebook), str(partial), parameters=parameters or {},
                                    cwd=str(notebook.parent), execution_timeout=timeout, progress_bar=False,
                                    kernel_name="python3", stderr_file=sys.stderr if progress else None,
                                    allow_errors=True)
            except PapermillExecutionError as exc:
                failed = exc
        os.replace(partial, out)
    finally:  # a full disk, a kill: the earlier ``out`` stays as it was, no partial file is left
        partial.unlink(missing_ok=True)
    if failed is not None:
        raise NotebookFailed(f"{notebook.name}: cell {failed.exec_count}: {failed.ename}: {failed.evalue}"
                             ) from failed
    return out


def colab_setup_source() -> str:
    """The first cell of every notebook: inside Google Colab only, clone ``labkit.STUDENT_REPOSITORY`` (the
    student distribution, :mod:`labkit.distribution`: no answers in it) at ``labkit.REVISION``, install it
    and point ``LABKIT_HOME`` at the clone (its data, checkpoints and runs); anywhere else it does nothing.
    ``tests/test_colab.py`` keeps the notebooks' copies equal."""
    from labkit import REVISION, STUDENT_REPOSITORY

    return f"""# Setup: inside Google Colab, install labkit's student kit; elsewhere this does nothing.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    home = "/content/labkit"
    if not os.path.isdir(home):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", "{REVISION}",
                        "{STUDENT_REPOSITORY}", home], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", home], check=True)
    os.environ["LABKIT_HOME"] = home  # the clone's data/, checkpoints/ and runs/"""
