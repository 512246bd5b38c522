"""Per-output R², the accuracy measure shared by training, the int8 gate and bundle metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def r2_per_column(y_true: npt.NDArray[Any], y_pred: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """1 - SS_res / SS_tot per column over all rows. A constant column scores 1 only when it is
    predicted exactly, and -inf otherwise."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - ss_res / ss_tot
    return np.where(ss_tot > 0, r2, np.where(ss_res == 0, 1.0, -np.inf))
