import subprocess
import sys

import nbformat
import pytest

import labkit
from labkit.runner import colab_setup_source

NOTEBOOKS = sorted((labkit.HOME / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_opens_with_the_colab_setup_cell(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "code" and first.source == colab_setup_source()


def test_setup_cell_names_the_repository_once_and_does_nothing_outside_colab(tmp_path):
    source = colab_setup_source()
    assert source.count(labkit.STUDENT_REPOSITORY) == 1 and f'"{labkit.REVISION}"' in source
    assert f'"{labkit.REPOSITORY}"' not in source  # never the instructor's kit, which holds the solutions
    done = subprocess.run([sys.executable, "-c", source + "\nprint(os.environ.get('LABKIT_HOME'))"],
                          capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "None"


def test_labkit_home_moves_data_and_checkpoints(tmp_path):
    code = ("from labkit import data, checkpoints; print(data.MINI_PATH); print(checkpoints.CHECKPOINT_DIR); "
            "print(data.data_root())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"LABKIT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout.split("\n")
    assert out[:3] == [str(tmp_path / "data" / "fashion-mnist-mini.npz"), str(tmp_path / "checkpoints"),
                       str(tmp_path / "data" / "cache")]


def test_missing_mini_set_says_where_to_get_it(tmp_path):
    code = "from labkit import data; data.load('fashion-mnist-mini')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"LABKIT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "LABKIT_HOME" in done.stderr and labkit.REPOSITORY in done.stderr
