"""The student version ``labkit release`` writes gives nothing away, for every notebook (no kernel runs):
none of the solution's answer text (each solution markdown cell's sentences, each solution code region's
lines) appears anywhere in its JSON, and the prose it keeps quotes no number of a recorded run."""

import json
import re

import nbformat
import pytest

from labkit import cells, grading, release, runner

NOTEBOOKS = sorted((runner.NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))
_REGION = re.compile(rf"{re.escape(cells.BEGIN)}[^\n]*\n(.*?){re.escape(cells.END)}", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.]*\d)")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _strings(doc) -> list[str]:
    """Every string in a notebook's JSON (sources, metadata, outputs), each with whitespace collapsed; a
    list of strings is one text split into lines."""
    if isinstance(doc, str):
        return [_flat(doc)]
    if isinstance(doc, list) and doc and all(isinstance(s, str) for s in doc):
        return [_flat("".join(doc))]
    if isinstance(doc, dict):
        doc = list(doc.values())
    return [s for item in doc for s in _strings(item)] if isinstance(doc, list) else []


def answer_text(nb) -> list[str]:
    """The distinctive pieces of ``nb``'s answers: sentences of eight words or more of every solution
    markdown cell and lines of 12 characters or more of every solution code region, leaving out those
    that also occur outside the answers (a question the answer repeats is not the answer)."""
    pieces, outside = [], []
    for cell in nb.cells:
        regions = _REGION.findall(cell.source)
        if cell.cell_type == "markdown" and cells.is_solution(cell):
            pieces += [s for s in re.split(r"(?<=[.!?:])\s+", _flat(cell.source)) if len(s.split()) >= 8]
        elif regions:
            pieces += [line.strip() for region in regions for line in region.splitlines()
                       if len(line.strip()) >= 12]
            outside.append(_flat(_REGION.sub("", cell.source)))
        else:
            outside.append(_flat(cell.source))
    return sorted({p for p in map(_flat, pieces) if not any(p in o for o in outside)})


def leaks(answers: list[str], nb) -> list[str]:
    """The pieces of ``answers`` found anywhere in ``nb``'s JSON."""
    text = "\n".join(_strings(json.loads(nbformat.writes(nb))))
    return [a for a in answers if a in text]


def run_numbers(lab: str) -> set[str]:
    """The non-integer numbers of every recorded run of ``lab`` (the expected values of its references), as
    prose would quote them: a fraction with 3 or 4 decimals or as a percentage with 1 or 2. Left out: forms
    with only zeros after the point (0.700, 70.0: a target, not a measurement) or with fewer than two
    significant digits (0.04: a parameter as much as a result)."""
    found = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, float) and not value.is_integer():
            found.update(f for f in _forms(value) if f.split(".")[1].strip("0")
                         and len(f.replace(".", "").strip("0")) >= 2)

    for path in grading.kit_references().glob(f"{lab}.*.json"):
        for entry in json.loads(path.read_text())["questions"].values():
            if entry["kind"] == "value":
                walk(entry["expected"])
    return found


def _forms(value: float) -> list[str]:
    scaled = 100 * value if abs(value) < 1 else value  # a fraction is quoted as a percentage
    return [f"{value:.3f}", f"{value:.4f}", f"{scaled:.1f}", f"{scaled:.2f}"]


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=lambda p: p.stem)
def released(request):
    lab, _, instructor, student, _ = release.versions(request.param)
    return lab, instructor, student


def test_the_student_version_holds_none_of_the_answers(released):
    lab, instructor, student = released
    answers = answer_text(instructor)
    assert answers, f"{lab}: no answers found to look for"
    assert leaks(answers, instructor) == answers  # the search finds each answer where it is
    assert leaks(answers, student) == [], f"{lab}: the student version gives these away"
    stubs = [c for c in student.cells if c.cell_type == "markdown" and cells.is_solution(c)]
    assert all(c.source == cells.ANSWER_STUB for c in stubs)


def quoted(texts: list[str], numbers: set[str]) -> set[tuple[str, str]]:
    """(number, start of the text) for each of ``numbers`` that ``texts`` quote."""
    return {(n, text[:60]) for text in texts for n in _NUMBER.findall(text) if n in numbers}


def test_the_prose_left_to_students_quotes_no_run_numbers(released):
    lab, instructor, student = released
    numbers = run_numbers(lab)
    prose = [c.source for c in student.cells if c.cell_type == "markdown" and not cells.is_solution(c)]
    assert not quoted(prose, numbers), f"{lab}: prose quotes numbers of a recorded run"
    if lab.startswith(("02", "03")):  # model answers quote the quick reference run; the search finds them
        answers = [c.source for c in instructor.cells if c.cell_type == "markdown" and cells.is_solution(c)]
        assert quoted(answers, numbers)


def test_run_numbers_are_the_recorded_values_as_prose_quotes_them(tmp_path, monkeypatch):
    doc = {"questions": {"acc": {"kind": "value", "expected": {"q30": 0.914, "q70": 0.099}},
                         "sparsity": {"kind": "value", "expected": [0.7, 0.0004]},
                         "f": {"kind": "function", "cases": [{"expected": 0.1234}]}}}
    (tmp_path / "lab.quick.json").write_text(json.dumps(doc))
    monkeypatch.setenv(grading.REFERENCES_ENV, str(tmp_path))
    assert run_numbers("lab") == {"0.914", "0.9140", "91.4", "91.40", "0.099", "0.0990", "9.9", "9.90"}


def test_a_release_that_fails_midway_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    """The disk fills while the student version is written: the lab's instructor files are not there either
    (they were staged beside the folder), and an earlier lab's release is untouched."""
    import errno

    out = tmp_path / "dist"
    (out / "student").mkdir(parents=True)
    (out / "student" / "00_concepts.ipynb").write_text("an earlier release")
    monkeypatch.setattr(release, "_hidden_cases", lambda *a: {})  # no kernel: the writing is what is tested
    real = release.write_notebook

    def full_disk(nb, path):
        if path.parent.name == "student":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(nb, path)

    monkeypatch.setattr(release, "write_notebook", full_disk)
    with pytest.raises(OSError, match="No space left"):
        release.release_notebook(runner.resolve_notebook("01_sparse_linear"), out, seed=1)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert files == [".labkit.lock", "student", "student/00_concepts.ipynb"]  # the lock: no other writer
    assert (out / "student" / "00_concepts.ipynb").read_text() == "an earlier release"
    monkeypatch.setattr(release, "write_notebook", real)
    made = release.release_notebook(runner.resolve_notebook("01_sparse_linear"), out, seed=1)
    assert made.student.is_file()
    assert (made.instructor / "references" / "01_sparse_linear.quick.json").is_file()
