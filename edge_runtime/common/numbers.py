"""What every reader of a user's numbers asks: is this a real, finite number? (A bool is not;
a 400-digit integer is not either: it fits no float, and ``math.isfinite`` raises on it.)"""

from __future__ import annotations

import math


def is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
