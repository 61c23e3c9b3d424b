import numpy as np
import pytest

from labkit.checks import check_int


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
