"""The wearer's anthropometrics: one frozen, validated record, the same on hub and host.

Definitions (ANSUR II terms, Gordon et al. 2014):
- ``neck_length_m``: vertical distance from the cervicale (C7 spinous process) level to the tragion
  level, i.e. (stature - cervicale height) - tragion-to-top-of-head. Measurable on a wearer with a
  tape and a level; the model's cervical geometry scales with it.
- ``shoulder_width_m``: biacromial breadth (acromion to acromion).
- ``head_mass_kg``: mass of the head above C1 (the model's skull body, jaw included).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from edge_runtime.common.files import read_text
from edge_runtime.common.numbers import is_finite_number
from edge_runtime.contracts.errors import InvalidAnthropometricsError

Sex = Literal["female", "male"]
SEXES: tuple[Sex, ...] = ("female", "male")

PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    # Adults; wide enough for the 0.1..99.9th percentiles of ANSUR II and beyond, narrow enough
    # to catch unit mistakes (cm for m, g for kg).
    "stature_m": (1.35, 2.15),
    "body_mass_kg": (35.0, 200.0),
    "neck_length_m": (0.05, 0.18),
    "shoulder_width_m": (0.28, 0.52),
    "head_mass_kg": (2.0, 7.5),
}


@dataclass(frozen=True)
class Anthropometrics:
    """Adult anthropometrics that personalise the head–neck model (SI units in every name)."""

    sex: Sex
    stature_m: float
    body_mass_kg: float
    neck_length_m: float
    shoulder_width_m: float
    head_mass_kg: float

    def __post_init__(self) -> None:
        if self.sex not in SEXES:
            raise InvalidAnthropometricsError("sex", self.sex, f"must be one of {SEXES}")
        for name, (lo, hi) in PLAUSIBLE_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidAnthropometricsError(name, value, "must be a number")
            if not is_finite_number(value):
                raise InvalidAnthropometricsError(name, value, "must be finite")
            if value <= 0:
                raise InvalidAnthropometricsError(name, value, "must be positive")
            if not lo <= value <= hi:
                raise InvalidAnthropometricsError(
                    name, value, f"outside the plausible adult range [{lo}, {hi}]"
                )

    def to_dict(self) -> dict[str, str | float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Anthropometrics:
        """Build from a mapping; unknown or missing keys are errors naming the key."""
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                raise InvalidAnthropometricsError(key, data[key], "unknown field")
        for name in names:
            if name not in data:
                raise InvalidAnthropometricsError(name, None, "missing")
        return cls(**data)  # type: ignore[arg-type]


NUMERIC_FIELDS: tuple[str, ...] = tuple(PLAUSIBLE_RANGES)


def read_profile(path: Path) -> Anthropometrics:
    """The wearer's profile from a TOML file of the record's fields (top level), e.g.::

        sex = "female"
        stature_m = 1.64
        body_mass_kg = 61.0
        neck_length_m = 0.105
        shoulder_width_m = 0.36
        head_mass_kg = 4.1

    Errors name the file and the field.
    """

    def refused(message: str) -> Exception:
        return InvalidAnthropometricsError("profile", str(path), message)

    try:
        data = tomllib.loads(read_text(path, refused, max_bytes=1024**2))
    except tomllib.TOMLDecodeError as e:
        raise InvalidAnthropometricsError("profile", str(path), f"not valid TOML: {e}") from e
    try:
        return Anthropometrics.from_dict(data)
    except InvalidAnthropometricsError as e:
        raise InvalidAnthropometricsError(e.field, e.value, f"{e.reason} (in {path})") from e


def write_profile(profile: Anthropometrics, path: Path) -> None:
    lines = [f"{k} = {json.dumps(v)}" for k, v in profile.to_dict().items()]
    path.write_text("\n".join(lines) + "\n")
