"""labkit: a course lab kit on model compression (sparse optimization, pruning, quantization)."""

import os
from pathlib import Path

__version__ = "0.1.0"

# Where the kit is published (a placeholder until the course has its own; README "Devices and Colab"):
# the notebooks' Colab setup cell clones it at REVISION (labkit.runner.colab_setup_source writes that cell).
REPOSITORY = "https://github.com/labkit-course/labkit"
REVISION = f"v{__version__}"

# The folder that holds data/, checkpoints/, notebooks/ and runs/: $LABKIT_HOME, else the checkout this
# package was imported from (an installed copy outside a checkout needs LABKIT_HOME, as in Colab).
HOME = Path(os.environ.get("LABKIT_HOME") or Path(__file__).resolve().parent.parent)
