# `make run`: every notebook, quick profile, with grading.  `make test`: every test but the harness: unit
# tests and the ones that grade notebooks 00/01 in Jupyter kernels (minutes); `make test-unit`: the unit
# tests alone (under a minute); `make test-grading`: the release/grade harness of the training notebooks.
# Both create the virtual environment on first use.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-unit test-grading full data-full lint bench sandbox kernel

$(BIN)/labkit: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

run: $(BIN)/labkit
	$(BIN)/labkit run --profile quick

# Grading in Jupyter kernels (sandboxed), nbgrader, notebooks 00 and 01 through the release/grade harness,
# and the unit tests.
test: $(BIN)/labkit sandbox kernel
	$(BIN)/pytest -m "not harness"

# The unit tests alone: no Jupyter kernel, no nbgrader (marker ``slow`` excluded).
test-unit: $(BIN)/labkit sandbox
	$(BIN)/pytest -m "not slow and not harness"

# Release and grade the model-training notebooks' solution, blank, hostile, planted versions
# (tests/test_student_grading.py, tiny profile) and every lab's solution on CIFAR-10 / MNIST stand-ins
# (tests/test_standin_grading.py, quick profile).
test-grading: $(BIN)/labkit sandbox
	$(BIN)/pytest -m harness

# A Jupyter kernel named "labkit" that runs this environment's Python, for tools that live elsewhere (an
# nbgrader installed in its own environment: c.ExecutePreprocessor.kernel_name = "labkit").
kernel: $(BIN)/labkit
	$(BIN)/python -m ipykernel install --user --name labkit --display-name "Python (labkit)" >/dev/null

# labkit grade confines each submission's kernel with bubblewrap (Debian's package).
sandbox:
	command -v bwrap >/dev/null || (apt-get update && apt-get install -y bubblewrap)

lint: $(BIN)/labkit
	$(BIN)/ruff check labkit tests benchmarks scripts

# The full profile on full Fashion-MNIST, offline: Debian ships the data set.
data-full:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)

full: $(BIN)/labkit data-full
	$(BIN)/labkit run --profile full --dataset fashion-mnist

bench: $(BIN)/labkit
	for b in benchmarks/[!_]*.py; do $(BIN)/python $$b || exit 1; done
