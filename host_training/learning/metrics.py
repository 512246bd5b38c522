"""Per-muscle accuracy of predicted forces: R², RMSE and MAE in N and in % of Fmax.

R² is per muscle over all frames of the evaluated set: 1 - SS_res / SS_tot. The % of Fmax
figures use the reference subject's maximum isometric force (personalised Fmax varies with body
mass by a few tens of percent; the reference makes muscles comparable with each other).

A muscle whose force barely varies over the evaluated frames (1st-99th percentile spread below 1%
of Fmax: it is nearly silent in that motion) has an R² that says nothing; ``r2_min_varying``
is the worst R² over the others, beside the plain ``r2_min`` over all. Its RMSE and the standard
deviation of its force over the same frames (both in % of Fmax) come with it: R² is
1 - (RMSE / SD)², so on a motion that moves a muscle little a small error is a low R², and the
reader needs both to tell a wrong force from a strict ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.accuracy import varying_columns

PERCENTILE_SAMPLE_ROWS = 50_000  # truth rows kept to find the muscles that vary (below)


class ForceMetricsAccumulator:
    """``force_metrics`` over rows that arrive in chunks, in memory independent of their number.

    Per muscle it keeps the count, mean and sum of squared deviations of the truth (merged chunk
    by chunk, Chan et al.'s pairwise update, so R² does not lose digits to cancellation), the sums
    of squared and absolute errors and the largest error. Which muscles vary (1st-99th percentile
    spread, ``varying_columns``) needs percentiles: those come from a uniform sample of up to
    ``PERCENTILE_SAMPLE_ROWS`` truth rows (every row while there are fewer, so small sets are
    exact), drawn by keeping the rows with the smallest seeded random keys."""

    def __init__(self, n_columns: int, seed: int = 0, sample_rows: int = PERCENTILE_SAMPLE_ROWS):
        self.n = 0
        self.mean = np.zeros(n_columns)
        self.m2 = np.zeros(n_columns)
        self.sse = np.zeros(n_columns)
        self.sae = np.zeros(n_columns)
        self.max_abs = np.zeros(n_columns)
        self._rng = np.random.default_rng([seed, 0x5A3])
        self._sample_rows = sample_rows
        self._keys = np.empty(0)
        self._sample = np.empty((0, n_columns))

    def add(self, y_true: npt.NDArray[Any], y_pred: npt.NDArray[Any]) -> None:
        t = np.asarray(y_true, dtype=np.float64)
        if not len(t):
            return
        err = np.asarray(y_pred, dtype=np.float64) - t
        n_b, mean_b = len(t), t.mean(axis=0)
        m2_b = ((t - mean_b) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / n
        self.mean = self.mean + delta * n_b / n
        self.n = n
        self.sse += (err**2).sum(axis=0)
        self.sae += np.abs(err).sum(axis=0)
        self.max_abs = np.maximum(self.max_abs, np.abs(err).max(axis=0))
        keys = np.concatenate([self._keys, self._rng.random(n_b)])
        sample = np.concatenate([self._sample, t])
        if len(keys) > self._sample_rows:
            keep = np.argpartition(keys, self._sample_rows)[: self._sample_rows]
            keys, sample = keys[keep], sample[keep]
        self._keys, self._sample = keys, sample

    def r2(self) -> npt.NDArray[np.float64]:
        """Per column, as ``r2_per_column`` computes it over every row added."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = 1.0 - self.sse / self.m2
        return np.where(self.m2 > 0, r2, np.where(self.sse == 0, 1.0, -np.inf))

    def result(self, muscles: Sequence[str], fmax_n: Sequence[float]) -> dict[str, Any]:
        """Named per-muscle metrics and a summary naming the worst muscle."""
        if not self.n:
            raise ValueError("no rows to judge")
        r2 = self.r2()
        rmse = np.sqrt(self.sse / self.n)
        mae = self.sae / self.n
        max_abs = self.max_abs
        fmax = np.asarray(fmax_n, dtype=np.float64)
        worst = int(np.argmin(r2))
        varying = varying_columns(self._sample, fmax)
        r2_varying = np.where(varying, r2, np.inf)
        worst_varying = int(np.argmin(r2_varying))
        rmse_pct = 100 * rmse / fmax
        sd_pct = 100 * np.sqrt(self.m2 / self.n) / fmax

        def named(values: npt.NDArray[Any]) -> dict[str, float]:
            return {m: round(float(v), 6) for m, v in zip(muscles, values, strict=True)}

        return {
            "n_frames": self.n,
            "r2_per_muscle": named(r2),
            "rmse_n_per_muscle": named(rmse),
            "mae_n_per_muscle": named(mae),
            "rmse_pct_fmax_per_muscle": named(rmse_pct),
            "mae_pct_fmax_per_muscle": named(100 * mae / fmax),
            "max_abs_error_n_per_muscle": named(max_abs),
            "summary": {
                "n_frames": self.n,
                "r2_min": float(r2[worst]),
                "r2_median": float(np.median(r2)),
                "worst_muscle": muscles[worst],
                "muscles_varying": int(varying.sum()),
                "r2_min_varying": float(r2_varying[worst_varying]) if varying.any() else None,
                "worst_varying_muscle": muscles[worst_varying] if varying.any() else None,
                "worst_varying_muscle_rmse_pct_fmax": (
                    float(rmse_pct[worst_varying]) if varying.any() else None
                ),
                "worst_varying_muscle_sd_pct_fmax": (
                    float(sd_pct[worst_varying]) if varying.any() else None
                ),
                "rmse_pct_fmax_max": float(rmse_pct.max()),
                "worst_rmse_muscle": muscles[int(np.argmax(rmse_pct))],
                "worst_muscle_mae_n": float(mae[worst]),
                "worst_muscle_rmse_n": float(rmse[worst]),
                "rmse_n_mean": float(rmse.mean()),
                "mae_n_mean": float(mae.mean()),
                "rmse_pct_fmax_mean": float(rmse_pct.mean()),
                "mae_pct_fmax_mean": float((100 * mae / fmax).mean()),
                "max_abs_error_n": float(max_abs.max()),
                "max_abs_error_muscle": muscles[int(np.argmax(max_abs))],
            },
        }


def force_metrics(
    y_true: npt.NDArray[Any],
    y_pred: npt.NDArray[Any],
    muscles: Sequence[str],
    fmax_n: Sequence[float],
) -> dict[str, Any]:
    """Named per-muscle metrics and a summary naming the worst muscle (all rows at once)."""
    t = np.asarray(y_true)
    acc = ForceMetricsAccumulator(t.shape[1], sample_rows=max(len(t), 1))
    acc.add(t, y_pred)
    return acc.result(muscles, fmax_n)


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
