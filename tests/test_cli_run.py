import json

import nbformat
import pytest

from labkit import cli


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "quick"\nDATASET = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_run_executes_injects_parameters_scores_and_fails_on_error(tmp_path, capsys):
    good = _notebook(tmp_path / "01_good.ipynb", 'assert PROFILE == "full", PROFILE\nprint("ran", DATASET)')
    bad = _notebook(tmp_path / "02_bad.ipynb", 'raise RuntimeError("planted failure")')
    code = cli.main(["run", str(good), str(bad), "--profile", "full", "--dataset", "mnist",
                     "--out", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 1
    assert "01_good" in out and "02_bad" in out and "planted failure" in out
    executed = nbformat.read(tmp_path / "runs" / "01_good.ipynb", as_version=4)
    assert "ran mnist" in json.dumps(executed.cells[-1].outputs)


def test_run_exits_zero_when_all_pass(tmp_path):
    good = _notebook(tmp_path / "01_good.ipynb", "x = 1")
    assert cli.main(["run", str(good), "--out", str(tmp_path / "runs")]) == 0


def test_unknown_notebook_is_named():
    with pytest.raises(FileNotFoundError, match="no notebook 'nope': allowed is"):
        cli.find_notebooks(["nope"])


def test_a_relative_out_folder_still_reaches_the_kernel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the kernel runs in the notebook's folder, not here
    (tmp_path / "nbs").mkdir()
    body = ('import os, pathlib\np = pathlib.Path(os.environ["LABKIT_RESULTS"])\n'
            "assert p.is_absolute() and p.parent.is_dir()")
    nb = _notebook(tmp_path / "nbs" / "01_rel.ipynb", body)
    assert cli.main(["run", str(nb), "--out", "runs/x"]) == 0
    assert (tmp_path / "runs" / "x" / "01_rel.ipynb").is_file()


def test_default_notebooks_are_the_numbered_ones():
    names = [p.name for p in cli.find_notebooks([])]
    assert names == sorted(names) and all(n[:2].isdigit() for n in names) and names
