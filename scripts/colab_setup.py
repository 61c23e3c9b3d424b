"""Write the Colab setup cell (``labkit.runner.colab_setup_source``) as the first cell of every notebook:
run it after changing ``labkit.STUDENT_REPOSITORY`` or ``labkit.REVISION``, then ``labkit tag``.
``tests/test_colab.py`` checks that the notebooks agree with it.

    python scripts/colab_setup.py
"""

from __future__ import annotations

import nbformat

from labkit import HOME
from labkit.atomic import atomic_open
from labkit.runner import colab_setup_source

MARK = "# Setup: inside Google Colab"


def main() -> None:
    source = colab_setup_source()
    for path in sorted((HOME / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0]
        if first.cell_type == "code" and first.source.startswith(MARK):
            if first.source == source:
                continue
            first.source = source
        else:
            cell = nbformat.v4.new_code_cell(source)
            cell.id = "colab-setup"
            nb.cells.insert(0, cell)
        with atomic_open(path, "w") as f:
            nbformat.write(nb, f)
        print(f"wrote the setup cell of {path.name}")


if __name__ == "__main__":
    main()
