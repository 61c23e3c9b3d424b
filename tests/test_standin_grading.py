"""Grading a class that ran on the handouts' own data sets, for which the kit has no references: every lab
with data is released and its solution graded with ``labkit grade --dataset`` on small CIFAR-10 / MNIST
stand-ins in torchvision's on-disk formats (tests/standins.py). The property checks decide there, so the
solution, run in the quick profile (which pretrains its models on the stand-in first), must score full
marks on at least 80% of each notebook's points, and the summary must say how many points no check could
grade. Each kernel runs in the sandbox, so the models it pretrains on the
stand-in stay in its own folder (marker ``harness``: ``make test-grading``)."""

import pytest
import standins

from labkit import autograde, release, runner, sandbox
from labkit.results import Status, totals

DATASET = {"00_concepts": "cifar10", "02_pruning_resnet20": "cifar10", "03_quantization_resnet20": "cifar10",
           "04_lenet5_lsq": "mnist", "05_lenet5_pruning": "mnist", "06_deep_compression": "mnist"}

pytestmark = pytest.mark.harness


@pytest.fixture(scope="module")
def standin_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin-data")
    standins.cifar10(root, n_train=1000, n_test=500)  # the quick profile's ResNet-20 subset
    standins.mnist(root, n_train=4000, n_test=1000)
    return root


@pytest.mark.parametrize("lab", DATASET)
def test_the_solution_on_a_data_set_without_references_is_graded_by_its_properties(
        lab, standin_root, tmp_path, monkeypatch):
    assert sandbox.available() is None, "make test installs bubblewrap: stand-in models must stay sandboxed"
    standins.kernel_environment(monkeypatch, standin_root)
    dataset = DATASET[lab]
    made = release.release_notebook(runner.resolve_notebook(lab), tmp_path / "dist", seed=1)
    catalog = autograde.load_material(lab, made.instructor).catalog()
    assert autograde.load_material(lab, made.instructor).recorded("quick", dataset) is None
    # a cell may pretrain a model on the stand-in first: minutes, more than a student cell is given
    rows = autograde.grade([made.instructor / f"{lab}.ipynb"], profile="quick", dataset=dataset,
                           timeout=1800, root=tmp_path, instructor=made.instructor)
    failed = {r.question: r.message for r in rows if r.status in (Status.FAILED, Status.NOT_RUN)}
    assert not failed, failed
    total = sum(e["points"] for e in catalog.values())
    graded = totals(rows)[1]
    assert graded >= 0.8 * total, (dataset, graded, total)
    assert sum(r.max_points for r in rows if r.status is Status.UNGRADED) == total - graded
