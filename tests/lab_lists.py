"""Which labs the grading tests run, and in which profile: every numbered notebook, so a new lab is tested
without editing a list. The labs that train no model grade in seconds in ``quick`` (recorded references
decide; ``make test``); the others in ``tiny`` (properties decide; ``make test-grading``)."""

from labkit import runner

LABS = [path.stem for path in runner.lab_notebooks()]
FAST = ("00_concepts", "01_sparse_linear")
TRAINING = [lab for lab in LABS if lab not in FAST]
PROFILE = {lab: "quick" if lab in FAST else "tiny" for lab in LABS}
