"""Properties: what each form accepts and rejects, and the messages it gives."""

import numpy as np
import pytest

from labkit import properties as P
from labkit.answers import encode


def judge(spec, value, **answers):
    return P.problems(spec, encode(value), {q: encode(v) for q, v in answers.items()})


@pytest.mark.parametrize("spec, good, bad", [
    (P.between(0, 1), {"a": 0.0, "b": [1.0, 0.5]}, {"a": 0.0, "b": [1.01, 0.5]}),
    (P.equals(0.7, atol=0.01), np.array([0.695, 0.705]), np.array([0.695, 0.72])),
    (P.equals(True), {"layer1": True, "layer2": True}, {"layer1": True, "layer2": False}),
    (P.ordered("decreasing", slack=0.01), {"30": 0.9, "50": 0.905, "70": 0.4}, {"30": 0.9, "50": 0.95}),
    (P.ordered("increasing"), [1, 2, 2, 3], [1, 3, 2]),
    (P.at_least(0.5, margin=0.1), [0.4, 0.9], [0.39, 0.9]),
    (P.at_most(2), 2, 2.5),
    (P.all_of(P.between(0, 1), P.ordered("increasing")), [0.1, 0.2], [0.2, 0.1]),
])
def test_each_form_accepts_the_good_and_rejects_the_bad(spec, good, bad):
    assert judge(spec, good) == []
    assert judge(spec, bad) != []


def test_a_bound_may_be_another_answer_scalar_or_key_by_key():
    assert judge(P.at_least("dense", margin=0.03), 0.88, dense=0.9) == []
    assert "0.86" in judge(P.at_least("dense", margin=0.03), 0.86, dense=0.9)[0]
    after, before = {"2": 0.8, "4": 0.9}, {"2": 0.5, "4": 0.91}
    assert judge(P.at_least("before", margin=0.02), after, before=before) == []
    assert judge(P.at_least("before"), after, before=before) != []  # "4" fell by 0.01
    assert judge(P.at_least("before"), {"3": 0.9}, before=before) != []  # no counterpart for key "3"


def test_same_as_compares_structure_and_values():
    assert judge(P.same_as("b"), {"x": 0.7, "y": 0.5}, b={"x": 0.7, "y": 0.5}) == []
    assert judge(P.same_as("b"), {"x": 0.7, "y": 0.6}, b={"x": 0.7, "y": 0.5}) != []
    assert "structures differ" in judge(P.same_as("b"), {"x": 0.7}, b={"z": 0.7})[0]


def test_a_missing_referenced_answer_or_a_non_number_is_a_problem_not_a_crash():
    assert "was not given" in judge(P.at_least("dense"), 0.9)[0]
    assert "expected numbers" in judge(P.between(0, 1), "abc")[0]
    assert judge(P.between(0, 1), float("nan")) != []
    assert judge(P.equals(True), {}) != [] and judge(P.ordered("increasing"), []) != []  # nothing measured
    assert P.referenced(P.all_of(P.at_least("a"), P.same_as("b"), P.between(0, 1))) == ["a", "b"]


@pytest.mark.parametrize("make, error", [
    (lambda: P.between(0, "1"), TypeError), (lambda: P.equals(0.5, atol=-1), ValueError),
    (lambda: P.ordered("up"), ValueError), (lambda: P.all_of(), TypeError),
    (lambda: P.at_least(""), ValueError),
    (lambda: P.validate({"bigger": 1}), TypeError), (lambda: P.validate({"all_of": [{"x": 1}]}), TypeError),
])
def test_bad_arguments_are_refused(make, error):
    with pytest.raises(error):
        make()


def test_describe_reads_as_words():
    assert P.describe(P.at_least("dense", margin=0.03)) == "every value >= 'dense''s answer - 0.03"
    assert P.describe(P.between(0, 1)) == "every value in [0, 1]"
