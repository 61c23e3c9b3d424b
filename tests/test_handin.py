"""``labkit report``: an executed notebook as HTML, and as PDF with the first engine that works; refusals."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit import cli, handin


@pytest.fixture
def executed(tmp_path):
    cell = new_code_cell("print(acc)", execution_count=1,
                         outputs=[new_output("stream", name="stdout", text="test accuracy 0.9123\n")])
    answer = new_markdown_cell("**Your answer (c)**: fine-tuning wins back 81.5 points.")
    nb = new_notebook(cells=[answer, cell])
    path = tmp_path / "jdoe_02_pruning_resnet20.ipynb"
    nbformat.write(nb, path)
    return path


class Engine:
    """A stand-in nbconvert exporter: makes ``data`` or raises ``error``."""

    def __init__(self, data=b"%PDF-1.4 stand-in", error=None):
        self.data, self.error = data, error

    def from_notebook_node(self, nb):
        if self.error:
            raise self.error
        return self.data, {}


def test_the_html_report_holds_the_answers_and_the_outputs(executed, tmp_path):
    report = handin.export(executed, tmp_path / "out", engines=[])
    html = report.html.read_text()
    assert report.html == tmp_path / "out" / "jdoe_02_pruning_resnet20.html"
    assert "test accuracy 0.9123" in html and "wins back 81.5 points" in html
    assert report.pdf is None and report.engine is None
    assert "no PDF engine is installed" in report.note and "texlive-xetex" in report.note


def test_the_first_engine_that_works_makes_the_pdf(executed, monkeypatch):
    broken = RuntimeError("No suitable chromium executable found on the system.\nmore")
    monkeypatch.setitem(handin.EXPORTERS, "webpdf", lambda: Engine(error=broken))
    monkeypatch.setitem(handin.EXPORTERS, "latex", lambda: Engine(b"%PDF-1.4 from latex"))
    report = handin.export(executed, engines=["webpdf", "latex"])
    assert report.engine == "latex" and report.note == ""
    assert report.pdf == executed.with_suffix(".pdf") and report.pdf.read_bytes() == b"%PDF-1.4 from latex"
    with pytest.raises(handin.NoPdfEngine, match="webpdf failed: No suitable chromium executable found"):
        handin.export(executed, engines=["webpdf"], require_pdf=True)


def test_installed_engines_follow_the_programs_found(monkeypatch):
    monkeypatch.setattr(handin.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(handin.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert handin.installed_engines() == ["latex"]
    monkeypatch.setattr(handin.shutil, "which", lambda name: None if name == "pandoc" else f"/usr/bin/{name}")
    assert handin.installed_engines() == []


def test_a_notebook_that_never_ran_or_is_no_notebook_is_refused(tmp_path):
    blank = tmp_path / "blank.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), blank)
    with pytest.raises(ValueError, match="has not been executed"):
        handin.export(blank)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="allowed is an existing .ipynb file"):
        handin.export(tmp_path / "notes.txt")
    (tmp_path / "broken.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read as a notebook"):
        handin.export(tmp_path / "broken.ipynb")


def test_the_command_says_which_engine_or_why_none_and_exits_2_only_when_pdf_was_asked(
        executed, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(handin, "installed_engines", lambda: [])
    assert cli.main(["report", str(executed), "--out", str(tmp_path / "r")]) == 0
    assert "no PDF: no PDF engine is installed" in capsys.readouterr().out
    assert cli.main(["report", str(executed), "--out", str(tmp_path / "r"), "--pdf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labkit report: error: no PDF for") and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(handin, "installed_engines", lambda: ["latex"])
    monkeypatch.setitem(handin.EXPORTERS, "latex", Engine)
    assert cli.main(["report", str(executed), "--out", str(tmp_path / "r"), "--pdf"]) == 0
    assert "(PDF engine: latex)" in capsys.readouterr().out
    assert (tmp_path / "r" / f"{executed.stem}.pdf").is_file()


def test_a_report_with_failed_cells_shows_them_and_the_command_says_so(tmp_path, capsys):
    failing = new_code_cell("prune_by_percentage(layer)", execution_count=1, outputs=[new_output(
        "error", ename="NotImplementedError", evalue="", traceback=["NotImplementedError"])])
    later = new_code_cell("print('later check')", execution_count=2,
                          outputs=[new_output("stream", name="stdout", text="pass c.W (2/2 points)\n")])
    path = tmp_path / "mine_02_pruning_resnet20.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("intro"), failing, later]), path)
    report = handin.export(path, engines=[])
    assert report.errors == ["cell 2: NotImplementedError: "]
    assert "pass c.W" in report.html.read_text()  # the cells after the error are in the report
    assert cli.main(["report", str(path)]) == 0
    assert "1 cells of" in capsys.readouterr().err
