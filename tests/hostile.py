"""Hostile submissions for the grading tests: the cells a student who wants points without the work adds to a
notebook. Each attack prints what it got; a test then looks for the canaries in what grading shows."""

import copy

import nbformat

from labkit import cells

# Replaces every grading object and labkit function it can reach, and writes forged answer lines wherever
# an answers file might be.
FORGE = '''import glob, json, os, sys
import labkit, labkit.grading, labkit.scoring, labkit.autograde, labkit.answers
def _forged(self, question_id, value=None, *args, **kwargs):
    print("forging", question_id)
for _cls in (labkit.grading.Checker, labkit.grading.Answerer):
    _cls.check = _cls.check_function = _forged
labkit.scoring.score_submission = lambda *args, **kwargs: []
labkit.scoring.value_problems = labkit.scoring.function_problems = lambda *args, **kwargs: []
labkit.answers.compare = lambda *args, **kwargs: []
for _path in [os.environ.get("LABKIT_SUBMIT"), *glob.glob("/tmp/**/answers.jsonl", recursive=True)]:
    try:
        with open(_path, "a") as f:
            f.write(json.dumps({"question": "*", "kind": "value", "answer": 1}) + "\\n")
        print("forged into", _path)
    except Exception as exc:
        print("could not forge:", type(exc).__name__)
'''

# Looks everywhere it can for canaries and reference files, and answers from what it finds.
SEARCH = '''import json, os, time
FOUND, REFERENCES = [], []
def _look(path):
    try:
        if os.path.getsize(path) > 2**20:
            return
        text = open(path, errors="replace").read()
    except Exception:
        return
    if "CANARY-" in text:
        FOUND.append(path + ": " + text[text.index("CANARY-"):][:60])
    if '"questions"' in text and '"expected"' in text:
        try:
            REFERENCES.append(json.loads(text))
        except Exception:
            pass
for _path in __PLACES__:
    if os.path.isdir(_path):
        for _root, _dirs, _files in os.walk(_path):
            for _f in _files:
                _look(os.path.join(_root, _f))
    elif os.path.exists(_path):
        _look(_path)
_deadline, _seen = time.monotonic() + 20, 0
for _root, _dirs, _files in os.walk("/"):
    _dirs[:] = [d for d in _dirs if os.path.join(_root, d) not in ("/proc", "/sys", "/dev", "/usr")]
    for _f in _files:
        _seen += 1
        _look(os.path.join(_root, _f))
    if time.monotonic() > _deadline or _seen > 200_000:
        break
for _cmd in os.listdir("/proc"):
    if _cmd.isdigit():
        _look(f"/proc/{_cmd}/cmdline")
print("FOUND:", FOUND, "references:", len(REFERENCES))
'''

# Each solution function of the blank version, answering from any expected output it found.
ANSWER_FROM_FOUND = '''import json
from labkit import answers as _answers
def _from_found(name):
    def answer(*args, **kwargs):
        wanted = json.dumps(_answers.encode(list(args)), sort_keys=True)
        for doc in REFERENCES:
            for entry in doc["questions"].values():
                for case in entry.get("cases", []) + entry.get("hidden_cases", []):
                    if "expected" in case and json.dumps(case["args"], sort_keys=True) == wanted:
                        return _answers.decode(case["expected"])
        raise NotImplementedError()
    answer.__name__ = name
    return answer
'''

# A True/False verdict (``ANSWER_1_5``) taken from any reference file found.
VALUE_FROM_FOUND = '''
for _doc in REFERENCES:
    if "{question}" in _doc["questions"]:
        {name} = _answers.decode(_doc["questions"]["{question}"]["expected"])
'''

FORK_BOMB = '''import os
for _ in range(100_000):
    try:
        if os.fork() == 0:
            while True:
                pass
    except OSError as exc:
        print("fork stopped:", exc)
        break
'''

FILL_DISK = '''import os
for _folder in (os.getcwd(), os.path.expanduser("~"), "/tmp"):
    try:
        with open(os.path.join(_folder, "fill.bin"), "wb") as f:
            while True:
                f.write(b"x" * 2**20)
    except OSError as exc:
        print("disk stopped:", _folder, exc.strerror)
'''

PRINT_A_GIGABYTE = '''import os, sys
_line = "y" * 2**20
for _ in range(1024):
    sys.stdout.write(_line)
    os.write(1, _line.encode())
'''


def attacks(places: list[str]) -> list[str]:
    """The attack cells, searching ``places`` (the canaries' folders and files) besides everything else."""
    return [FORGE, SEARCH.replace("__PLACES__", repr(places)), FORK_BOMB, FILL_DISK, PRINT_A_GIGABYTE]


def blank_of(instructor) -> object:
    """The student version of an instructor notebook: every solution region blanked (nbgrader's stub)."""
    nb = copy.deepcopy(instructor)
    for cell in nb.cells:
        if cell.cell_type == "code" and cells.is_solution(cell):
            cell.source = cells.blank_solutions(cell.source)[0]
    return nb


def hostile(instructor, places: list[str], solved: bool) -> object:
    """``instructor`` (solved) or its blank version with the attack cells added after the first cell; a blank
    one's solution cells also define each function as an answer from whatever the search found."""
    nb = copy.deepcopy(instructor) if solved else blank_of(instructor)
    added = [nbformat.v4.new_code_cell(source) for source in attacks(places)]
    nb.cells[1:1] = added
    if not solved:
        names = cells.solution_names(instructor)
        for cell in nb.cells:
            if cell.cell_type == "code" and cells.is_solution(cell):
                functions = [n for n in names if f"def {n}(" in cell.source]
                source = instructor_source(instructor, cell)
                values = [n for n in names if n.startswith("ANSWER_") and n in source]
                cell.source += "\n\n" + ANSWER_FROM_FOUND + "".join(
                    f"{n} = _from_found({n!r})\n" for n in functions) + "".join(
                    VALUE_FROM_FOUND.format(name=n, question=n.removeprefix("ANSWER_").replace("_", "."))
                    for n in values)
    return nb


def instructor_source(instructor, cell) -> str:
    """The source of ``instructor``'s cell with ``cell``'s grade_id."""
    return next(c.source for c in instructor.cells if cells.grade_id(c) == cells.grade_id(cell))
