import numpy as np
import pytest

from labkit.checks import check_int, check_number


def test_check_int_returns_a_python_int_within_bounds():
    assert check_int("k", 3, 1) == 3
    value = check_int("k", np.int64(5), 0, 5)
    assert value == 5 and type(value) is int


@pytest.mark.parametrize("value, error, words", [
    (True, TypeError, "k=True (bool): allowed is an int in 1..4"),
    (2.0, TypeError, "k=2.0 (float): allowed is an int in 1..4"),
    ("2", TypeError, "k='2' (str)"),
    (0, ValueError, "k=0: allowed is an int in 1..4"),
    (5, ValueError, "k=5: allowed is an int in 1..4"),
])
def test_check_int_names_the_argument_the_value_and_the_range(value, error, words):
    with pytest.raises(error, match=f"^{words.replace('(', r'[(]').replace(')', r'[)]')}"):
        check_int("k", value, 1, 4)


def test_check_int_without_upper_bound_and_with_own_wording():
    with pytest.raises(ValueError, match=r"^n=-1: allowed is an int >= 0$"):
        check_int("n", -1, 0)
    assert check_int("n", 10**9, 0) == 10**9
    with pytest.raises(ValueError, match=r"^bit=17: allowed is None, 0 or an int in 1..16$"):
        check_int("bit", 17, 0, 16, "None, 0 or an int in 1..16")


@pytest.mark.parametrize("kwargs, value, error, words", [
    ({}, True, TypeError, "x=True (bool): allowed is a finite number"),
    ({}, "1", TypeError, "x='1' (str): allowed is a finite number"),
    ({}, float("nan"), ValueError, "x=nan: allowed is a finite number"),
    ({"low": 0}, -0.5, ValueError, "x=-0.5: allowed is a finite number >= 0"),
    ({"low": 0}, float("inf"), ValueError, "x=inf: allowed is a finite number >= 0"),
    ({"low": 0, "inf": True}, float("nan"), ValueError, "x=nan: allowed is a number >= 0"),
])
def test_check_number_names_the_argument_the_value_and_what_is_allowed(kwargs, value, error, words):
    with pytest.raises(error, match=f"^{words.replace('(', r'[(]').replace(')', r'[)]')}$"):
        check_number("x", value, **kwargs)


def test_check_number_returns_a_float_and_admits_inf_when_asked():
    assert check_number("x", np.float32(0.5), low=0) == 0.5 and type(check_number("x", 3)) is float
    assert check_number("x", float("inf"), low=0, inf=True) == float("inf")
