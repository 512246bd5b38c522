"""Muscle forces on the hub: batched int8 inference with an out-of-range flag, and streaming
force statistics per muscle and per muscle group.

Inputs outside the training range (the feature spec's ``input_range``) still get forces (the
network extrapolates smoothly), but the frames are flagged OUT_OF_RANGE and counted per feature.

Statistics must hold for sessions of any length in a few kB, so percentiles come from a fixed
histogram per series on a square-root force scale (fine near zero where most frames are, and a
constant relative resolution on the peaks); mean and peak are exact. A group's force is the sum
of its members' forces in each frame (a muscle may belong to several groups).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.feature_spec import FeatureSpec, feature_matrix
from edge_runtime.contracts.force_model import ForceModel
from edge_runtime.contracts.record_payloads import FORCE_PERCENTILES, ForceStats, ForceSummary

FloatArray = npt.NDArray[np.float64]
PERCENTILES = FORCE_PERCENTILES
HISTOGRAM_BINS = 256


class ForceEstimator:
    def __init__(self, model: bytes, spec: FeatureSpec, profile: Anthropometrics) -> None:
        self.model = ForceModel(model, spec)
        self.spec, self.profile = spec, profile
        self._lo = np.array([r[0] for r in spec.input_range])
        self._hi = np.array([r[1] for r in spec.input_range])

    def estimate(
        self, kinematics: FloatArray
    ) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray]:
        """(n, 9) neck kinematics (NaN where unknown) -> forces (n, M) in N (NaN where unknown),
        out-of-range mask (n,), and per-feature out-of-range counts (F,)."""
        n = len(kinematics)
        forces = np.full((n, len(self.spec.outputs)), np.nan)
        known = np.isfinite(kinematics).all(axis=1)
        outside = np.zeros(n, dtype=bool)
        counts = np.zeros(self.spec.n_inputs)
        if known.any():
            x = feature_matrix(kinematics[known], self.profile, self.spec.features)
            forces[known] = self.model.forces(x)
            beyond = (x < self._lo) | (x > self._hi)
            outside[known] = beyond.any(axis=1)
            counts = beyond.sum(axis=0).astype(np.float64)
        return forces, outside, counts


class ForceStatistics:
    """Mean, peak and percentiles of each series (muscles, then groups), streaming."""

    def __init__(
        self, muscles: Sequence[str], groups: Mapping[str, Sequence[int]], max_force_n: FloatArray
    ) -> None:
        self.muscles, self.groups = tuple(muscles), {g: list(m) for g, m in groups.items()}
        group_max = [float(np.sum(max_force_n[m])) for m in self.groups.values()]
        self.top_sqrt = np.sqrt(np.maximum(np.concatenate([max_force_n, group_max]), 1e-6))
        k = len(self.top_sqrt)
        self.count = 0
        self.sum = np.zeros(k)
        self.peak = np.zeros(k)
        self.hist = np.zeros((k, HISTOGRAM_BINS), dtype=np.int64)

    def series(self, forces: FloatArray) -> FloatArray:
        """(n, M) muscle forces -> (n, M + G) with the group sums appended."""
        sums = [forces[:, m].sum(axis=1) for m in self.groups.values()]
        return np.concatenate([forces, np.stack(sums, axis=1)], axis=1) if sums else forces

    def add(self, forces: FloatArray) -> None:
        if len(forces) == 0:
            return
        values = np.maximum(self.series(forces), 0.0)
        self.count += len(values)
        self.sum += values.sum(axis=0)
        self.peak = np.maximum(self.peak, values.max(axis=0))
        bins = np.sqrt(values) / self.top_sqrt * HISTOGRAM_BINS
        index = np.clip(bins.astype(np.int64), 0, HISTOGRAM_BINS - 1)
        for j in range(values.shape[1]):
            self.hist[j] += np.bincount(index[:, j], minlength=HISTOGRAM_BINS)

    def percentile_n(self, q: float) -> FloatArray:
        """The q-th percentile of every series, to within one histogram bin."""
        if self.count == 0:
            return np.full(len(self.top_sqrt), np.nan)
        cum = np.cumsum(self.hist, axis=1)
        target = q / 100.0 * self.count
        b = np.argmax(cum >= target, axis=1)
        below = np.where(b > 0, cum[np.arange(len(b)), b - 1], 0)
        inside = self.hist[np.arange(len(b)), b]
        frac = np.where(inside > 0, (target - below) / np.maximum(inside, 1), 0.5)
        root = (b + np.clip(frac, 0, 1)) / HISTOGRAM_BINS * self.top_sqrt
        return np.minimum(np.square(root), self.peak)

    def summary(self) -> ForceSummary:
        mean = self.sum / max(self.count, 1)
        pct = [self.percentile_n(q) for q in PERCENTILES]
        names = (*self.muscles, *self.groups)

        def entry(j: int) -> ForceStats:
            return ForceStats(
                _round(mean[j]), _round(self.peak[j]), tuple(_round(p[j]) for p in pct)
            )

        m = len(self.muscles)
        return ForceSummary(
            self.count,
            {n: entry(j) for j, n in enumerate(names[:m])},
            {n: entry(m + j) for j, n in enumerate(names[m:])},
        )


def _round(v: float) -> float | None:
    return round(float(v), 2) if np.isfinite(v) else None


def force_ceiling_n(spec: FeatureSpec) -> FloatArray:
    """The largest force the network's output range can express, per muscle (histogram top)."""
    return spec.forces_from_outputs(np.full((1, len(spec.outputs)), 1.5))[0] + 1.0
