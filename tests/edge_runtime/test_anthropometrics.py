from __future__ import annotations

import dataclasses
import math

import pytest

from edge_runtime.contracts.anthropometrics import PLAUSIBLE_RANGES, Anthropometrics
from edge_runtime.contracts.errors import InvalidAnthropometricsError

GOOD = {
    "sex": "female",
    "stature_m": 1.63,
    "body_mass_kg": 64.0,
    "neck_length_m": 0.105,
    "shoulder_width_m": 0.365,
    "head_mass_kg": 3.4,
}


def test_round_trips_through_a_dict() -> None:
    a = Anthropometrics.from_dict(GOOD)
    assert Anthropometrics.from_dict(a.to_dict()) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.stature_m = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("neck_length_m", -0.1, "positive"),
        ("head_mass_kg", math.nan, "finite"),
        ("body_mass_kg", math.inf, "finite"),
        ("stature_m", 175.0, "plausible"),  # cm for m
        ("shoulder_width_m", 0.0, "positive"),
        ("head_mass_kg", "4.3", "number"),
        ("sex", "x", "one of"),
    ],
)
def test_bad_values_name_the_field_and_value(field: str, value: object, reason: str) -> None:
    with pytest.raises(InvalidAnthropometricsError) as info:
        Anthropometrics.from_dict({**GOOD, field: value})
    assert info.value.field == field
    assert reason in str(info.value)
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_and_missing_fields_are_named() -> None:
    with pytest.raises(InvalidAnthropometricsError, match=r"neck_len_m.*unknown"):
        Anthropometrics.from_dict({**GOOD, "neck_len_m": 0.1})
    partial = {k: v for k, v in GOOD.items() if k != "head_mass_kg"}
    with pytest.raises(InvalidAnthropometricsError, match=r"head_mass_kg.*missing"):
        Anthropometrics.from_dict(partial)


def test_range_bounds_are_inclusive() -> None:
    lo, hi = PLAUSIBLE_RANGES["neck_length_m"]
    assert Anthropometrics.from_dict({**GOOD, "neck_length_m": lo}).neck_length_m == lo
    assert Anthropometrics.from_dict({**GOOD, "neck_length_m": hi}).neck_length_m == hi
    with pytest.raises(InvalidAnthropometricsError):
        Anthropometrics.from_dict({**GOOD, "neck_length_m": hi * 1.001})
