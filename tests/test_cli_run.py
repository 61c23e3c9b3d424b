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


def test_run_goes_on_past_a_failing_cell_so_later_checks_still_report(tmp_path):
    nb = _notebook(tmp_path / "01_x.ipynb", 'raise RuntimeError("planted failure")')
    nb_doc = nbformat.read(nb, as_version=4)
    nb_doc.cells.append(nbformat.v4.new_code_cell('print("after the failure")'))
    nbformat.write(nb_doc, nb)
    assert cli.main(["run", str(nb), "--out", str(tmp_path / "runs")]) == 1
    executed = nbformat.read(tmp_path / "runs" / "01_x.ipynb", as_version=4)
    assert "after the failure" in json.dumps(executed.cells[-1].outputs)


def test_run_refuses_to_write_over_its_own_notebook_or_beside_another_run(tmp_path, capsys):
    nb = _notebook(tmp_path / "01_x.ipynb", "x = 1")
    before = nb.read_bytes()
    assert cli.main(["run", str(nb), "--out", str(tmp_path)]) == 2
    assert "would replace the notebook itself" in capsys.readouterr().err
    assert nb.read_bytes() == before
    from labkit.atomic import exclusive

    with exclusive(tmp_path / "runs", "labkit run"):  # another run holds the folder
        assert cli.main(["run", str(nb), "--out", str(tmp_path / "runs")]) == 2
    assert "another labkit run is writing to" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "01_x.ipynb").exists()
    assert cli.main(["run", str(nb), "--out", str(tmp_path / "runs")]) == 0  # the lock went with its holder


@pytest.mark.parametrize("argv, words", [
    (["run", "--timeout", "0"], "--timeout 0: allowed is a number of seconds > 0"),
    (["grade", "x.ipynb", "--timeout", "-1"], "--timeout -1: allowed is a number of seconds > 0"),
    (["grade", "x.ipynb", "--jobs", "0"], "--jobs 0: allowed is a whole number >= 1"),
    (["grade", "x.ipynb", "--csv", "x.ipynb"], "--csv x.ipynb: that is a notebook"),
    (["grade", "sub", "--csv", "sub"], "--csv sub: that is a notebook, a folder or one of the inputs"),
    (["train", "lenet5", "--dataset", "fashion-mnist-mini", "--epochs", "0"], "--epochs 0: allowed is"),
    (["train", "lenet5", "--dataset", "fashion-mnist-mini", "--epochs", "1"], "is a committed checkpoint"),
    (["train", "lenet5", "--dataset", "fashion-mnist-mini", "--device", "nosuch", "--out", "x.pt"],
     "--device 'nosuch': allowed are cpu, cuda and cuda:N"),
    (["grade", "x.ipynb", "--memory", "0.1"], "--memory 0.1: allowed is a number of GiB >= 0.25"),
    (["release", "grades.json", "--out", "dist"], "'grades.json' is not a notebook: allowed is a .ipynb"),
    (["references", "grades.json", "--profile", "quick"], "'grades.json' is not a notebook"),
    (["release", "y_01_sparse_linear.ipynb", "--out", "dist"], "cannot be read as a notebook"),
])
def test_bad_arguments_are_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys, argv,
                                                                          words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.ipynb").write_text("{}")
    (tmp_path / "grades.json").write_text('{"questions": {}}')
    (tmp_path / "y_01_sparse_linear.ipynb").write_text("not json")
    (tmp_path / "sub").mkdir()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_run_shows_plots_even_where_the_caller_set_a_headless_matplotlib_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _notebook(tmp_path / "01_plot.ipynb", "import matplotlib.pyplot as plt\nplt.plot([1, 2]);")
    assert cli.main(["run", str(nb), "--out", str(tmp_path / "runs")]) == 0
    executed = nbformat.read(tmp_path / "runs" / "01_plot.ipynb", as_version=4)
    assert any("image/png" in o.get("data", {}) for o in executed.cells[-1].outputs)
