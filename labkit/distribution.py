"""The student distribution (``labkit distribute``): the kit as students install it, with no answer in it.

``<out>/`` is a folder an instructor publishes (labkit.STUDENT_REPOSITORY, which the notebooks' Colab setup
cell installs): the ``labkit`` package, ``pyproject.toml``, the embedded data and the committed checkpoints,
and ``notebooks/`` with the student versions of the *open* labs (``labkit release``'s). In its package
every function students write in an open lab is a ``raise`` (:mod:`labkit.blanks`), and its references
hold no answer: a sealed question (a True/False verdict) has no expected value, and no function check has
hidden cases. Labs that are not open keep labkit's implementations (their deadline has passed), which is
how a later lab may run on an earlier one's functions: a lab opens only together with labs none of whose
blanks its runs use (``@student_writes(..., used_by=...)``).

The folder is built beside ``out`` and moved into place at the end: a failure leaves no half-written
distribution, and an existing folder is replaced only when it is an earlier distribution.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import labkit
from labkit import HOME, blanks, grading
from labkit.scoring import is_sealed

MANIFEST = "DISTRIBUTION.json"
SHIPPED = ("pyproject.toml", "data/README.md", "data/fashion-mnist-mini.npz")  # with checkpoints/*.pt
README = """# labkit: the student distribution

Labs open now: {labs}.

    python3 -m venv .venv && .venv/bin/pip install -e '.[runner]'
    .venv/bin/jupyter lab notebooks/          # write your code where it says YOUR CODE HERE
    .venv/bin/labkit run notebooks/{first}.ipynb --out mine/   # every cell, every check, a total
    .venv/bin/labkit report mine/{first}.ipynb                  # the report you hand in (HTML)

In Google Colab the first cell of each notebook installs this folder. A check in the notebook tells you at
once whether a function or value is right; True/False verdicts are sealed (no check shows their answer) and
count when your instructor grades the notebook with `labkit grade`.
"""


def conflicts(open_labs: list[str], package: Path | None = None) -> list[str]:
    """Why ``open_labs`` cannot open together: each blank of an open lab that another open lab's runs
    call (empty: they can)."""
    package = package or Path(labkit.__file__).resolve().parent
    found = []
    for module in sorted(package.glob("*.py")):
        for name, mark in blanks.marked(module.read_text()).items():
            users = [lab for lab in mark.used_by if lab in open_labs]
            if mark.notebook in open_labs and users:
                found.append(f"{module.stem}.{name} (written in {mark.notebook}) is run by labkit in "
                             f"{', '.join(users)}")
    return found


def public_references(doc: dict) -> dict:
    """A reference document as students may see it: sealed questions without their expected value, no
    hidden cases."""
    def public(entry: dict) -> dict:
        drop = {"hidden_cases"} | ({"expected"} if is_sealed(entry) else set())
        return {k: v for k, v in entry.items() if k not in drop}

    return {**doc, "questions": {q: public(e) for q, e in doc["questions"].items()}}


def write_distribution(out: str | Path, open_labs: list[str]) -> Path:
    """Write the student distribution for ``open_labs`` (lab names, e.g. ``01_sparse_linear``) to ``out``
    (see the module docstring) and return it. ValueError for an unknown lab, labs that cannot open
    together (:func:`conflicts`), or an ``out`` that exists and is not an earlier distribution."""
    from labkit import release
    from labkit.runner import lab_notebooks

    labs = {p.stem: p for p in lab_notebooks()}
    unknown = [lab for lab in open_labs if lab not in labs]
    if not open_labs or unknown:
        raise ValueError(f"open labs {unknown or open_labs!r}: allowed are one or more of {sorted(labs)}")
    if problems := conflicts(open_labs):
        raise ValueError("these labs cannot open together (open the first after the others' deadline):\n  "
                         + "\n  ".join(problems))
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ValueError(f"--out {out} exists and is not a student distribution: choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _package(build / "labkit", open_labs)
        for rel in SHIPPED:
            _copy(HOME / rel, build / rel)
        for ckpt in sorted((HOME / "checkpoints").glob("*.pt")):
            _copy(ckpt, build / "checkpoints" / ckpt.name)
        ordered = sorted(open_labs)
        for lab in ordered:
            *_, student, _ = release.versions(labs[lab])
            release.write_notebook(student, build / "notebooks" / f"{lab}.ipynb")
        (build / "README.md").write_text(README.format(labs=", ".join(ordered), first=ordered[0]))
        # plain writes: the whole build folder is swapped in at once
        manifest = {"labkit": labkit.__version__, "open_labs": ordered}
        (build / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _swap(build, out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out


def _package(target: Path, open_labs: list[str]) -> None:
    """The labkit package with the open labs' blanks a raise and only their public references."""
    package = Path(labkit.__file__).resolve().parent
    target.mkdir(parents=True)
    for module in sorted(package.glob("*.py")):
        text = module.read_text()
        (target / module.name).write_text(blanks.blanked_source(text, open_labs) or text)
    for ref in sorted(grading.REFERENCES_DIR.glob("*.json")):
        doc = grading.read_references(ref)
        if doc["notebook"] in open_labs:
            grading.write_json_atomic(target / "references" / ref.name, public_references(doc))


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _swap(build: Path, out: Path) -> None:
    """Move ``build`` to ``out``; an earlier distribution there is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old-{build.name}")
        out.rename(old)
    build.rename(out)
    if old is not None:
        shutil.rmtree(old)
