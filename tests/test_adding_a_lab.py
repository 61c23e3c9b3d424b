"""docs/ADDING_A_LAB.md, followed on docs/lab_template.ipynb: a newcomer's lab is recorded, tagged, released
and graded by the kit's own commands, with nothing in the kit changed for it."""

from pathlib import Path

import nbformat
import pytest

from labkit import autograde, cells, cli, grading, release
from labkit.results import Status
from labkit.runner import colab_setup_source

TEMPLATE = Path(__file__).parent.parent / "docs" / "lab_template.ipynb"
LAB = "98_template"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The template as ``notebooks/98_template.ipynb`` of a scratch folder, through the guide's steps:
    ``labkit references --profile quick``, ``labkit tag``, ``labkit release``."""
    root = tmp_path_factory.mktemp("new-lab")
    notebook = root / "notebooks" / f"{LAB}.ipynb"
    notebook.parent.mkdir()
    notebook.write_text(TEMPLATE.read_text().replace("NN_name", LAB))
    refs = root / "references"
    refs.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(grading.REFERENCES_ENV, str(refs))
        grading.make_references(notebook, "quick", runs_dir=root / "runs")
        assert cli.main(["tag", str(notebook)]) == 0
        made = release.release_notebook(notebook, root / "dist", seed=1)
        source = nbformat.read(made.instructor / f"{LAB}.ipynb", as_version=4)
        student = nbformat.read(made.student, as_version=4)
        subs = root / "subs"
        subs.mkdir()
        for who, nb in {"solution": source, "blank": student}.items():
            nbformat.write(nb, subs / f"{who}_{LAB}.ipynb")
        rows = autograde.grade(autograde.find_submissions([subs]), profile="quick", timeout=120, root=subs,
                               instructor=made.instructor)
    by_sub = {}
    for row in rows:
        by_sub.setdefault(row.submission.split(f"_{LAB}")[0], {})[row.question] = row
    return notebook, refs, by_sub


def test_the_template_opens_with_the_colab_setup_and_has_a_parameters_cell():
    nb = nbformat.read(TEMPLATE, as_version=4)
    assert nb.cells[0].source == colab_setup_source()
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_references_hold_every_question_of_the_template(lab):
    notebook, refs, _ = lab
    catalog = grading.read_references(refs / f"{LAB}.quick.json")["questions"]
    asked = {q for c in nbformat.read(notebook, as_version=4).cells for q in cells.questions_in(c.source)}
    assert set(catalog) == asked == {"a.scale", "a.total"}


def test_the_solution_scores_full_marks_and_the_blank_nothing(lab):
    _, _, subs = lab
    auto = {who: {q: r for q, r in rows.items() if r.counted and r.status is not Status.MANUAL}
            for who, rows in subs.items()}
    assert {q: r.status for q, r in auto["solution"].items()} == dict.fromkeys(("a.scale", "a.total"),
                                                                                 Status.PASSED)
    assert sum(r.points for r in auto["solution"].values()) == 2
    assert sum(r.points for r in auto["blank"].values()) == 0
    assert subs["solution"]["answer-a"].status is Status.MANUAL  # the written answer waits for a person


def test_the_new_labs_references_stay_out_of_the_kit(lab):
    _, refs, _ = lab
    assert (refs / f"{LAB}.quick.json").is_file()
    assert not (grading.REFERENCES_DIR / f"{LAB}.quick.json").exists()
