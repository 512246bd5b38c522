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


VARYING_FRACTION_OF_FMAX = 0.01


def varying_columns(y_true: npt.NDArray[Any], fmax_n: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Muscles whose force varies over the rows: 1st-99th percentile spread above 1% of Fmax.
    The R² of a muscle that is nearly silent in a motion says nothing about the model."""
    t = np.asarray(y_true, dtype=np.float64)
    if not len(t):
        return np.zeros(t.shape[1], dtype=bool)
    spread = np.percentile(t, 99, axis=0) - np.percentile(t, 1, axis=0)
    return np.asarray(spread > VARYING_FRACTION_OF_FMAX * np.asarray(fmax_n, dtype=np.float64))
