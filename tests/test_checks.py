"""The option checks at the floor: integers as torch takes them, ranges, fractions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import densitykit as dk
from densitykit.checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_index,
    check_int,
    check_optional_int,
    check_positive_int,
)


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3), torch.tensor(3)])
def test_integer_like_numbers_are_integers(value) -> None:
    result = check_int(value, "size")
    assert result == 3 and type(result) is int


@pytest.mark.parametrize("value", [3.0, True, "3", None, np.float64(3), torch.tensor([3, 4])])
def test_everything_else_is_refused_with_a_type_error(value) -> None:
    with pytest.raises(TypeError, match="size must be an integer, got"):
        check_int(value, "size")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_positive_int(0, "epochs"), "epochs must be a positive integer, got 0"),
        (lambda: check_int(-1, "seed", minimum=0), "seed must be a non-negative integer, got -1"),
        (lambda: check_int(7, "size", minimum=8), "size must be an integer >= 8, got 7"),
        (lambda: check_int(9, "size", minimum=2, maximum=8), "size must be an integer in 2..8"),
        (lambda: check_index(-1, 3, "mask"), "mask must be an integer in 0..2, got -1"),
        (lambda: check_fraction(1.0, "val_fraction"), r"in \[0, 1\), got 1.0"),
        (lambda: check_fraction(float("nan"), "val_fraction"), "nan"),
        (lambda: check_choice("x", "mode", ("a", "b")), "mode must be one of 'a', 'b', got 'x'"),
    ],
)
def test_out_of_range_values_say_what_was_expected(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_good_values_pass_through() -> None:
    assert check_optional_int(None, "max_train", minimum=1) is None
    assert check_optional_int(np.int32(4), "max_train", minimum=1) == 4
    assert check_index(2, 3, "mask") == 2
    assert check_fraction(0, "val_fraction") == 0.0
    assert check_choice("a", "mode", ("a", "b")) == "a"
    assert check_bool(False, "download") is False
    with pytest.raises(TypeError, match="download must be True or False, got int 1"):
        check_bool(1, "download")


# The positive half of test_reliability's data set fuzz test: options that pass the
# checks load.
@given(
    name=st.sampled_from(["1d-gaussian", "1d-bimodal", "2d-smiley", "shapes"]),
    seed=st.integers(0, 40),
    val_fraction=st.sampled_from([0.0, 0.1, 0.25]),
)
def test_data_sets_load_with_every_good_option(name, seed, val_fraction) -> None:
    options = {"seed": seed, "val_fraction": val_fraction}
    if name == "2d-smiley":
        options.update(grid_size=16, num_samples=200)
    if name == "shapes":
        options.update(size=8, num_samples=20)
    dataset = dk.load_dataset(name, **options)
    assert dataset.train.dtype == torch.int64 and len(dataset.train) > 0
    assert int(dataset.train.max()) < dataset.num_values
