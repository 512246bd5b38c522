"""Daily monitoring from wear: what a wearer's neck did in ordinary life, one block per wear
session, summed into days (``contracts.daily``). One definition for the hub (writer), the
offline ``cervical assess``, the benches and the clinic (readers).

Every figure is kept as something that adds up exactly (seconds, counts per histogram bin), so
any set of sessions merges into a day without taking percentiles of percentiles. Measured on the
session's calibrated, usable frames (the hub's fused angles and their filtered rates):

- ``wear_s``: time worn with both sensors usable and the neck calibrated;
- *habitual range*, per direction (``DIRECTIONS``): each excursion -- a run in which the
  direction's angle goes beyond ``EXCURSION_START_DEG`` and which ends when it falls below
  ``EXCURSION_END_DEG`` -- counted at its peak, in 1 deg bins (a day's p50 / p95 of them);
- *movements*: runs in which the head's angular speed on the trunk exceeds
  ``MOVEMENT_START_DEG_S`` for at least ``MOVEMENT_MIN_S``, ending below ``MOVEMENT_END_DEG_S``,
  counted at their peak speed in 10 deg/s bins. 20 deg/s lies under the slowest daily-life gaze
  shifts (about 30 deg/s and up) and above the hub's angular-rate noise;
- ``flexed_s``: sustained flexion, flexion beyond ``FLEXED_DEG`` (RULA's highest neck-flexion
  band, McAtamney & Corlett 1993) held for ``FLEXED_MIN_S`` or longer (ISO 11226 counts a
  posture held over 4 s as static);
- *muscle load* per group, as a share of the group's capacity (the sum of its forces over the
  sum of its muscles' Fmax) on frames with trusted forces: the seconds of forces, the integral
  of the share over them (a mean share once divided), and the seconds above each of
  ``LOAD_LEVELS`` of capacity (2, 5 and 10%: Jonsson's 1982 limits for static and median
  load in sustained work).

None of these is a judgement of range: deficits come from guided tests only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import accumulate
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.record_fields import NAME_PATTERN, Fields, RecordError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# direction -> (neck angle index, sign): the angle component that grows towards it
DIRECTION_COMPONENTS: dict[str, tuple[int, float]] = {
    "flexion": (0, -1.0),
    "extension": (0, 1.0),
    "left_bend": (1, -1.0),
    "right_bend": (1, 1.0),
    "left_rotation": (2, 1.0),
    "right_rotation": (2, -1.0),
}
DIRECTIONS: tuple[str, ...] = tuple(DIRECTION_COMPONENTS)
EXCURSION_START_DEG = 5.0
EXCURSION_END_DEG = 3.0
EXCURSION_BIN_DEG = 1.0
MOVEMENT_START_DEG_S = 20.0
MOVEMENT_END_DEG_S = 10.0
MOVEMENT_MIN_S = 0.1
SPEED_BIN_DEG_S = 10.0
FLEXED_DEG = 20.0
FLEXED_MIN_S = 4.0
LOAD_LEVELS: tuple[float, ...] = (0.02, 0.05, 0.10)
MAX_BINS = 1000  # a histogram longer than this is not one a hub wrote


@dataclass(frozen=True)
class GroupLoad:
    """One muscle group's load over some force seconds (module docstring)."""

    share_s: float  # the integral of the share of capacity over the force seconds
    above_s: tuple[float, ...]  # seconds above each of LOAD_LEVELS

    def __add__(self, other: GroupLoad) -> GroupLoad:
        above = tuple(a + b for a, b in zip(self.above_s, other.above_s, strict=True))
        return GroupLoad(self.share_s + other.share_s, above)


@dataclass(frozen=True)
class WearMonitoring:
    """A wear session's monitoring figures (module docstring), on the hub's local ``day``."""

    day: str  # ISO date, the hub's local calendar day the session started on
    wear_s: float
    excursions: Mapping[str, tuple[int, ...]]  # direction -> excursions per 1 deg bin of peak
    speeds: tuple[int, ...]  # movements per 10 deg/s bin of peak speed
    flexed_s: float
    force_s: float  # seconds with trusted forces (the load's denominator)
    load: Mapping[str, GroupLoad]

    @property
    def movements(self) -> int:
        return int(sum(self.speeds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "wear_s": self.wear_s,
            "excursions": {d: list(self.excursions[d]) for d in DIRECTIONS},
            "speeds": list(self.speeds),
            "flexed_s": self.flexed_s,
            "force_s": self.force_s,
            "load": {
                g: {"share_s": v.share_s, "above_s": list(v.above_s)} for g, v in self.load.items()
            },
        }

    @classmethod
    def read(cls, f: Fields) -> WearMonitoring:
        day = f.text("day")
        try:
            date.fromisoformat(day)
        except ValueError:
            raise f.fail("day", day, "not an ISO date (YYYY-MM-DD)") from None
        ex = f.sub("excursions")
        excursions = {d: _histogram(ex, d) for d in DIRECTIONS}
        ex.done()
        loads = {}
        for group, raw in f.mapping("load").items():
            g = Fields(f.record, raw, f.key(f"load.{group}"))
            above = g.numbers("above_s", len(LOAD_LEVELS))
            if min(above, default=0.0) < 0:
                raise g.fail("above_s", list(above), "a negative time")
            loads[group] = GroupLoad(g.number("share_s", 0.0), above)
            g.done()
        monitoring = cls(
            day, f.number("wear_s", 0.0), excursions, _histogram(f, "speeds"),
            f.number("flexed_s", 0.0), f.number("force_s", 0.0), loads,
        )  # fmt: skip
        f.done()
        return monitoring


def _histogram(f: Fields, name: str) -> tuple[int, ...]:
    counts = f.array(name)
    if len(counts) > MAX_BINS:
        raise f.fail(name, counts, f"more than {MAX_BINS} bins")
    # (checked at once: a clinic reads years of these per page)
    if not all(type(c) is int and 0 <= c < 2**53 for c in counts):
        bad = next(c for c in counts if not (type(c) is int and 0 <= c < 2**53))
        raise f.fail(name, bad, "not a count (a whole number >= 0)")
    return tuple(counts)


def merge(blocks: Iterable[WearMonitoring], day: str) -> WearMonitoring:
    """The sum of ``blocks`` (histograms bin by bin, seconds added) as one block on ``day``."""
    wear = flexed = force = 0.0
    excursions: dict[str, list[int]] = {d: [] for d in DIRECTIONS}
    speeds: list[int] = []
    load: dict[str, GroupLoad] = {}
    for b in blocks:
        wear, flexed, force = wear + b.wear_s, flexed + b.flexed_s, force + b.force_s
        for d in DIRECTIONS:
            excursions[d] = _add(excursions[d], b.excursions[d])
        speeds = _add(speeds, b.speeds)
        for g, v in b.load.items():
            load[g] = load[g] + v if g in load else v
    return WearMonitoring(
        day, wear, {d: tuple(v) for d, v in excursions.items()}, tuple(speeds), flexed, force,
        dict(sorted(load.items())),
    )  # fmt: skip


def _add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    out = list(a) + [0] * max(0, len(b) - len(a))
    for i, v in enumerate(b):
        out[i] += v
    return out


def histogram_quantile(counts: Sequence[int], q: float, bin_width: float) -> float | None:
    """The ``q`` quantile (0..1) of the values counted in ``counts`` (bins from 0 of
    ``bin_width``), read at the middle of the bin it falls in; None without values."""
    cumulative = list(accumulate(counts))  # (plain Python: these are short, and many)
    if not cumulative or cumulative[-1] == 0:
        return None
    k = bisect_left(cumulative, q * cumulative[-1])
    return (min(k, len(counts) - 1) + 0.5) * bin_width


# -- measuring (the hub and the offline path) ----------------------------------------------
def _runs(on: BoolArray) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Starts and stops (exclusive) of the runs of True."""
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _run_peaks(
    values: FloatArray, start_at: float, end_below: float, min_frames: int
) -> FloatArray:
    """Peaks of the runs above ``end_below`` that reach ``start_at`` (hysteresis) and last at
    least ``min_frames``; NaN (unusable frames) ends a run."""
    above = np.nan_to_num(values, nan=-np.inf) > end_below
    starts, stops = _runs(above)
    if starts.size == 0:
        return np.zeros(0)
    peaks = np.maximum.reduceat(np.nan_to_num(values, nan=-np.inf), starts)
    return peaks[(peaks > start_at) & (stops - starts >= min_frames)]


def _counts(values: FloatArray, bin_width: float) -> tuple[int, ...]:
    if values.size == 0:
        return ()
    # (rounded first: a peak of exactly 30 deg computed as 29.9999... belongs in the 30 bin)
    bins = np.minimum(np.floor(np.round(values, 6) / bin_width).astype(np.intp), MAX_BINS - 1)
    return tuple(int(c) for c in np.bincount(bins))


def measure_motion(
    angles_rad: FloatArray, rates_rad_s: FloatArray, rate_hz: float
) -> tuple[float, dict[str, tuple[int, ...]], tuple[int, ...], float]:
    """(wear_s, excursions, speeds, flexed_s) of a session's (n, 3) neck angles and rates
    (contract order; NaN rows: frames not usable)."""
    angles_deg, rates_deg_s = np.degrees(angles_rad), np.degrees(rates_rad_s)
    usable = np.isfinite(angles_deg).all(axis=1) & np.isfinite(rates_deg_s).all(axis=1)
    excursions = {}
    for d, (axis, sign) in DIRECTION_COMPONENTS.items():
        component = np.where(usable, sign * angles_deg[:, axis], np.nan)
        peaks = _run_peaks(component, EXCURSION_START_DEG, EXCURSION_END_DEG, 1)
        excursions[d] = _counts(peaks, EXCURSION_BIN_DEG)
    speed = np.where(usable, np.linalg.norm(rates_deg_s, axis=1), np.nan)
    min_frames = max(1, round(MOVEMENT_MIN_S * rate_hz))
    speeds = _counts(
        _run_peaks(speed, MOVEMENT_START_DEG_S, MOVEMENT_END_DEG_S, min_frames), SPEED_BIN_DEG_S
    )
    flexed = np.where(usable, -angles_deg[:, 0], np.nan)
    starts, stops = _runs(np.nan_to_num(flexed, nan=-np.inf) > FLEXED_DEG)
    long_runs = (stops - starts) >= FLEXED_MIN_S * rate_hz
    flexed_s = float((stops - starts)[long_runs].sum()) / rate_hz
    return float(usable.sum()) / rate_hz, excursions, speeds, flexed_s


class LoadMeter:
    """Adds up muscle load per group (module docstring) from blocks of trusted forces."""

    def __init__(self, groups: Mapping[str, Sequence[int]], fmax_n: Sequence[float]) -> None:
        fmax = np.asarray(fmax_n, dtype=np.float64)
        for name in groups:
            if not NAME_PATTERN.fullmatch(name):
                raise RecordError("session", f"monitoring.load.{name}", "not a group name")
        self.groups = {
            g: (np.asarray(idx, np.intp), float(fmax[list(idx)].sum())) for g, idx in groups.items()
        }
        self.force_frames = 0
        self.share_frames = {g: 0.0 for g in groups}
        self.above_frames = {g: np.zeros(len(LOAD_LEVELS)) for g in groups}

    def add(self, forces_n: FloatArray) -> None:
        """(n, muscles) forces of frames whose forces are trusted."""
        if len(forces_n) == 0:
            return
        self.force_frames += len(forces_n)
        for g, (idx, capacity) in self.groups.items():
            share = forces_n[:, idx].sum(axis=1) / capacity
            self.share_frames[g] += float(share.sum())
            self.above_frames[g] += (share[:, None] > np.asarray(LOAD_LEVELS)).sum(axis=0)

    def result(self, rate_hz: float) -> tuple[float, dict[str, GroupLoad]]:
        """(force_s, group -> GroupLoad), rounded as records keep them."""
        load = {
            g: GroupLoad(
                round(self.share_frames[g] / rate_hz, 4),
                tuple(round(float(v) / rate_hz, 2) for v in self.above_frames[g]),
            )
            for g in sorted(self.groups)
        }
        return round(self.force_frames / rate_hz, 2), load


def wear_monitoring(
    day: date,
    angles_rad: FloatArray,
    rates_rad_s: FloatArray,
    rate_hz: float,
    load: LoadMeter | None = None,
) -> WearMonitoring:
    """A session's monitoring block (``load`` None: no forces, e.g. the offline path)."""
    wear_s, excursions, speeds, flexed_s = measure_motion(angles_rad, rates_rad_s, rate_hz)
    force_s, loads = (0.0, {}) if load is None else load.result(rate_hz)
    return WearMonitoring(
        day.isoformat(), round(wear_s, 2), excursions, speeds, round(flexed_s, 2), force_s, loads
    )
