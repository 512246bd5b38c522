"""Muscle forces on the hub: batched int8 inference with an out-of-range flag and a per-frame
confidence, and streaming force statistics per muscle and per muscle group.

Inputs outside the training range (the feature spec's ``input_range``) still get forces (the
network extrapolates smoothly), but the frames are flagged OUT_OF_RANGE and counted per feature.

Where the bundle carries a confidence twin, every frame's forces are scored against the twin's
(``contracts.confidence.disagreement``); a frame above the bundle's threshold has low confidence
and its forces are left out of the statistics (counted beside them in the records). The twin is
a second small int8 network on the same features, so it costs one more inference per frame.
Low confidence is counted, not marked as spans like the quality flags: doubtful frames come
scattered through everyday motion, and a span each would make records of thousands of marks.

Statistics must hold for sessions of any length in a few kB, so percentiles come from a fixed
histogram per series on a square-root force scale (fine near zero where most frames are, and a
constant relative resolution on the peaks); mean and peak are exact. A group's force is the sum
of its members' forces in each frame (a muscle may belong to several groups).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.confidence import disagreement
from edge_runtime.contracts.feature_spec import FeatureSpec, feature_matrix
from edge_runtime.contracts.force_model import ForceModel
from edge_runtime.contracts.model_bundle import VerifiedBundle
from edge_runtime.contracts.record_payloads import FORCE_PERCENTILES, ForceStats, ForceSummary

FloatArray = npt.NDArray[np.float64]
PERCENTILES = FORCE_PERCENTILES
HISTOGRAM_BINS = 256


BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Twin:
    """A bundle's confidence twin and how to read it (``contracts.confidence``)."""

    model: ForceModel
    threshold_of_fmax: float
    fmax_n: FloatArray


@dataclass(frozen=True)
class ForceFrames:
    """One block's forces and what is known about them, per frame."""

    forces: FloatArray  # (n, M) N; NaN where the kinematics were unknown
    out_of_range: BoolArray  # (n,) an input outside the training range
    out_of_range_counts: FloatArray  # (F,) frames beyond the range, per feature
    low_confidence: BoolArray | None  # (n,) twin disagreement above threshold; None: no twin


class ForceEstimator:
    def __init__(
        self,
        model: bytes,
        spec: FeatureSpec,
        profile: Anthropometrics,
        twin: Twin | None = None,
    ) -> None:
        self.model = ForceModel(model, spec)
        self.spec, self.profile, self.twin = spec, profile, twin
        self._lo = np.array([r[0] for r in spec.input_range])
        self._hi = np.array([r[1] for r in spec.input_range])

    @classmethod
    def for_bundle(cls, bundle: VerifiedBundle, profile: Anthropometrics) -> ForceEstimator:
        """The bundle's force model, with its confidence twin where it carries one."""
        twin = None
        confidence = bundle.manifest.confidence
        if bundle.twin is not None and confidence is not None:
            fmax = np.array([m.fmax_n for m in bundle.manifest.muscles])
            twin = Twin(ForceModel(bundle.twin, bundle.spec), confidence.threshold_of_fmax, fmax)
        return cls(bundle.model, bundle.spec, profile, twin)

    def estimate(self, kinematics: FloatArray) -> ForceFrames:
        """(n, 9) neck kinematics (NaN where unknown) -> the block's forces (``ForceFrames``)."""
        n = len(kinematics)
        forces = np.full((n, len(self.spec.outputs)), np.nan)
        known = np.isfinite(kinematics).all(axis=1)
        outside = np.zeros(n, dtype=bool)
        counts = np.zeros(self.spec.n_inputs)
        low = None if self.twin is None else np.zeros(n, dtype=bool)
        if known.any():
            x = feature_matrix(kinematics[known], self.profile, self.spec.features)
            forces[known] = self.model.forces(x)
            beyond = (x < self._lo) | (x > self._hi)
            outside[known] = beyond.any(axis=1)
            counts = beyond.sum(axis=0).astype(np.float64)
            if self.twin is not None and low is not None:
                score = disagreement(forces[known], self.twin.model.forces(x), self.twin.fmax_n)
                low[known] = score > self.twin.threshold_of_fmax
        return ForceFrames(forces, outside, counts, low)


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
