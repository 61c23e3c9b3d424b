"""Grading works wherever the kit and its Python live: a checkout and virtual environment under /tmp (which
the sandbox replaces by an empty one of its own) and under a closed (0700) home directory, as with pyenv,
conda or uv. Each layout grades notebook 01's solution with ``labkit grade`` from its own interpreter: full
marks."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from labkit import HOME, sandbox

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sandbox.available() is not None, reason="bubblewrap is not installed")]


def _layout(top: Path) -> tuple[Path, Path]:
    """A copy of the kit's checkout at ``top/labkit`` and a virtual environment at ``top/venv`` whose
    site-packages reach the running environment's packages and the copy (not this checkout)."""
    checkout = top / "labkit"
    shutil.copytree(HOME, checkout,
                    ignore=shutil.ignore_patterns(".git", ".venv", "runs", "__pycache__", "cache"))
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "labkit-layout.pth").write_text(f"{checkout}\n{sysconfig.get_paths()['purelib']}\n")
    return checkout, python


@pytest.mark.parametrize("where", ["tmp", "home"])
def test_a_checkout_and_venv_anywhere_grade_the_solution_with_full_marks(where, tmp_path):
    if where == "tmp":
        top = Path(tempfile.mkdtemp(prefix="labkit-clone-", dir="/tmp"))
    else:
        top = Path("/home") / f"labkit-test-{os.getpid()}"
        top.mkdir(parents=True)
    try:
        if where == "home":
            top.chmod(0o700)
        checkout, python = _layout(top)
        out = tmp_path / "scores.csv"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "VIRTUAL_ENV"))}
        done = subprocess.run([str(python), "-m", "labkit.cli", "grade",
                               str(checkout / "notebooks" / "01_sparse_linear.ipynb"), "--csv", str(out),
                               "--timeout", "120"], capture_output=True, text=True, cwd=checkout, env=env,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        check = subprocess.run([str(python), "-c", "import labkit; print(labkit.__file__)"],
                               capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
        assert check.stdout.startswith(str(checkout))  # graded by the copy, not by this checkout
        from labkit import autograde
        from labkit.results import totals

        points, most = totals(autograde.read_csv(out))
        assert points == most == 23, done.stdout[-2000:]
    finally:
        shutil.rmtree(top, ignore_errors=True)
