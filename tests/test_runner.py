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
