"""Per-muscle accuracy of predicted forces: R², RMSE and MAE in N and in % of Fmax.

R² is per muscle over all frames of the evaluated set: 1 - SS_res / SS_tot. The % of Fmax
figures use the reference subject's maximum isometric force (personalised Fmax varies with body
mass by a few tens of percent; the reference makes muscles comparable with each other).

A muscle whose force barely varies over the evaluated frames (1st-99th percentile spread below 1%
of Fmax: it is nearly silent in that motion) has an R² that says nothing; ``r2_min_varying``
is the worst R² over the others, beside the plain ``r2_min`` over all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.accuracy import r2_per_column, varying_columns


def force_metrics(
    y_true: npt.NDArray[Any],
    y_pred: npt.NDArray[Any],
    muscles: Sequence[str],
    fmax_n: Sequence[float],
) -> dict[str, Any]:
    """Named per-muscle metrics and a summary naming the worst muscle."""
    t = np.asarray(y_true, dtype=np.float64)
    err = np.asarray(y_pred, dtype=np.float64) - t
    r2 = r2_per_column(t, y_pred)
    rmse = np.sqrt((err**2).mean(axis=0))
    mae = np.abs(err).mean(axis=0)
    max_abs = np.abs(err).max(axis=0)
    fmax = np.asarray(fmax_n, dtype=np.float64)
    worst = int(np.argmin(r2))
    varying = varying_columns(t, fmax)
    r2_varying = np.where(varying, r2, np.inf)
    worst_varying = int(np.argmin(r2_varying))
    rmse_pct = 100 * rmse / fmax

    def named(values: npt.NDArray[Any]) -> dict[str, float]:
        return {m: round(float(v), 6) for m, v in zip(muscles, values, strict=True)}

    return {
        "n_frames": len(t),
        "r2_per_muscle": named(r2),
        "rmse_n_per_muscle": named(rmse),
        "mae_n_per_muscle": named(mae),
        "rmse_pct_fmax_per_muscle": named(100 * rmse / fmax),
        "mae_pct_fmax_per_muscle": named(100 * mae / fmax),
        "max_abs_error_n_per_muscle": named(max_abs),
        "summary": {
            "n_frames": len(t),
            "r2_min": float(r2[worst]),
            "r2_median": float(np.median(r2)),
            "worst_muscle": muscles[worst],
            "muscles_varying": int(varying.sum()),
            "r2_min_varying": float(r2_varying[worst_varying]) if varying.any() else None,
            "worst_varying_muscle": muscles[worst_varying] if varying.any() else None,
            "rmse_pct_fmax_max": float(rmse_pct.max()),
            "worst_rmse_muscle": muscles[int(np.argmax(rmse_pct))],
            "worst_muscle_mae_n": float(mae[worst]),
            "worst_muscle_rmse_n": float(rmse[worst]),
            "rmse_n_mean": float(rmse.mean()),
            "mae_n_mean": float(mae.mean()),
            "rmse_pct_fmax_mean": float((100 * rmse / fmax).mean()),
            "mae_pct_fmax_mean": float((100 * mae / fmax).mean()),
            "max_abs_error_n": float(max_abs.max()),
            "max_abs_error_muscle": muscles[int(np.argmax(max_abs))],
        },
    }


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite number as None (undefined: R² of a muscle whose force
    never varies), so that the metrics files are JSON; ``json.dumps`` would write ``NaN``."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value
