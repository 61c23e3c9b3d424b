"""A student's report (``labkit report``): an executed lab notebook exported with nbconvert as the handout
asks for it (answers, results, plots and code in one file): HTML always, and PDF where an engine is
installed. PDF engines, tried in this order:

- ``webpdf``: nbconvert's WebPDFExporter, which prints the HTML with a headless Chromium (the Python
  package ``playwright`` and its browser);
- ``latex``: nbconvert's PDFExporter (``xelatex``, and ``pandoc`` for the markdown cells).

An engine that is installed but fails (e.g. playwright without its browser) gives way to the next, and
the report says why.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from labkit.atomic import atomic_open
from labkit.runner import read_notebook

HOW_TO_GET_ONE = ("for PDF install an engine: TeX (Debian: `apt-get install texlive-xetex "
                  "texlive-fonts-recommended texlive-plain-generic pandoc`) or a headless browser "
                  "(`pip install 'nbconvert[webpdf]' && playwright install chromium`, which downloads "
                  "Chromium); or open the HTML in a browser and print it to PDF")


def _webpdf():
    from nbconvert import WebPDFExporter

    return WebPDFExporter()


def _latex():
    from nbconvert import PDFExporter

    return PDFExporter()


EXPORTERS = {"webpdf": _webpdf, "latex": _latex}  # engine -> a factory of its nbconvert exporter


def installed_engines() -> list[str]:
    """The PDF engines whose programs are installed here, in the order they are tried."""
    found = []
    if importlib.util.find_spec("playwright") is not None:
        found.append("webpdf")
    if shutil.which("xelatex") and shutil.which("pandoc"):
        found.append("latex")
    return found


class NoPdfEngine(RuntimeError):
    """A PDF was required and no engine could make it."""


@dataclass
class Report:
    """What :func:`export` wrote for one notebook."""

    html: Path
    pdf: Path | None
    engine: str | None  # the PDF engine that made ``pdf``
    note: str  # why there is no PDF ("" when there is one)
    errors: list[str]  # the cells that raised, as "cell N: Error: message" (the report shows them)


def cell_errors(nb) -> list[str]:
    """``cell N: Error: message`` for each code cell whose run raised (N: its place in the notebook)."""
    found = []
    for n, cell in enumerate(nb.cells, 1):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                found.append(f"cell {n}: {out.get('ename')}: {str(out.get('evalue'))[:120]}")
    return found


def read_executed(path: str | Path):
    """The notebook at ``path``; ValueError if it is not a notebook or none of its code cells has run."""
    nb = read_notebook(path)
    if not any(c.cell_type == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb.cells):
        raise ValueError(f"notebook {str(path)!r} has not been executed (no code cell has run): run it "
                         f"first (`labkit run {path}` or Run All in Jupyter) and save it")
    return nb


def export(notebook: str | Path, out_dir: str | Path | None = None, *, engines: list[str] | None = None,
           require_pdf: bool = False) -> Report:
    """Write ``<out_dir>/<name>.html`` (default ``out_dir``: the notebook's folder) and, with the first of
    ``engines`` (default: :func:`installed_engines`) that works, ``<name>.pdf``. With ``require_pdf`` a
    missing PDF is a :class:`NoPdfEngine` error naming why and how to get an engine."""
    from nbconvert import HTMLExporter

    path = Path(notebook)
    nb = read_executed(path)
    out = Path(out_dir) if out_dir is not None else path.parent
    out.mkdir(parents=True, exist_ok=True)
    html = out / f"{path.stem}.html"
    with atomic_open(html, "wb") as f:  # a full disk leaves no half page
        f.write(HTMLExporter().from_notebook_node(nb)[0].encode("utf-8"))
    errors = cell_errors(nb)
    engines = installed_engines() if engines is None else engines
    failures = []
    for engine in engines:
        try:
            data = EXPORTERS[engine]().from_notebook_node(nb)[0]
        except Exception as exc:  # an engine's own failure (no browser, a TeX error): try the next one
            failures.append(f"{engine} failed: {(str(exc).strip() or type(exc).__name__).splitlines()[0]}")
            continue
        pdf = out / f"{path.stem}.pdf"
        with atomic_open(pdf, "wb") as f:
            f.write(data)
        return Report(html, pdf, engine, "", errors)
    note = "; ".join(failures) if failures else "no PDF engine is installed"
    note = f"{note}; {HOW_TO_GET_ONE}"
    if require_pdf:
        raise NoPdfEngine(f"no PDF for {path.name}: {note}")
    return Report(html, None, None, note, errors)
