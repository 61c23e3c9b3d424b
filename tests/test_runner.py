import nbformat

from labkit.runner import execute_notebook


def test_progress_streams_the_kernels_stderr_while_it_runs(tmp_path, capfd):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys\nprint('epoch line', file=sys.stderr)\nprint('table')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "nb.ipynb")
    execute_notebook(tmp_path / "nb.ipynb", tmp_path / "quiet.ipynb")
    assert "epoch line" not in capfd.readouterr().err
    execute_notebook(tmp_path / "nb.ipynb", tmp_path / "out.ipynb", progress=True)
    captured = capfd.readouterr()
    assert "epoch line" in captured.err
    assert "table" not in captured.out + captured.err  # stdout stays in the notebook


def test_the_executed_copy_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """A disk that fills while papermill writes (or a kill) leaves the earlier executed copy as it was."""
    import errno

    import papermill
    import pytest

    nb = nbformat.v4.new_notebook()
    nbformat.write(nb, tmp_path / "nb.ipynb")
    out = tmp_path / "runs" / "nb.ipynb"
    out.parent.mkdir()
    out.write_text("the earlier run")

    def full_disk(source, target, **_):
        with open(target, "w") as f:
            f.write('{"cells": [')  # what papermill had written when the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill, "execute_notebook", full_disk)
    with pytest.raises(OSError, match="No space left"):
        execute_notebook(tmp_path / "nb.ipynb", out)
    assert out.read_text() == "the earlier run" and [p.name for p in out.parent.iterdir()] == ["nb.ipynb"]
