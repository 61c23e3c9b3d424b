"""Planted wrong answers for notebook 00 (the True/False quiz). Notebook 00 has no student functions, so
WRONG and DOWNSTREAM are empty: its solution cells each hold one verdict, ``ANSWER_1_x = True|False``.
WRONG_ANSWERS replaces such an assignment (a full statement, not a ``def``) with the wrong verdict, and
ANSWER_DOWNSTREAM names the one question it must lose (and nothing else may be lost: the experiments use
no student code and are not graded)."""

_VERDICTS = {"1.1": True, "1.2": False, "1.3": False, "1.4": False, "1.5": False,
             "1.6": False, "1.7": True, "1.8": True, "1.9": False, "1.10": True}

WRONG: dict[str, str] = {}
DOWNSTREAM: dict[str, list[str]] = {}
WRONG_ANSWERS = {f"ANSWER_{q.replace('.', '_')}": f"ANSWER_{q.replace('.', '_')} = {not v}\n"
                 for q, v in _VERDICTS.items()}
ANSWER_DOWNSTREAM = {f"ANSWER_{q.replace('.', '_')}": [q] for q in _VERDICTS}
