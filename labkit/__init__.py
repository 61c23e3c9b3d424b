"""labkit: a course lab kit on model compression (sparse optimization, pruning, quantization)."""

import os
from pathlib import Path

__version__ = "0.1.0"

# Where the kit is published (placeholders until the course has its own; README "Devices and Colab"):
# REPOSITORY holds the instructor's kit (solutions included); STUDENT_REPOSITORY what `labkit distribute`
# writes, which the notebooks' Colab setup cell clones at REVISION (labkit.runner.colab_setup_source).
REPOSITORY = "https://github.com/labkit-course/labkit"
STUDENT_REPOSITORY = "https://github.com/labkit-course/labkit-student"
REVISION = f"v{__version__}"

# The folder that holds data/, checkpoints/, notebooks/ and runs/: $LABKIT_HOME, else the checkout this
# package was imported from (an installed copy outside a checkout needs LABKIT_HOME, as in Colab).
HOME = Path(os.environ.get("LABKIT_HOME") or Path(__file__).resolve().parent.parent)
