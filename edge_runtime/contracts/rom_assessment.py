"""Range-of-motion assessment of one session against the wearer's personal envelope.

One definition for the hub, the offline marker path and the clinic. Ten direction sectors, as a
physiotherapist names them: eight in the (extension, lateral bending) plane, 45 deg wide, centred
on extension, extension + right bend, right bend, flexion + right bend, flexion, flexion + left
bend, left bend, extension + left bend; and left and right axial rotation.

Per sector, over the session's valid frames:

- ``reached_deg``: the largest excursion in that sector (planar: the (e, b) radius; axial: |r|);
- ``ratio``: the largest excursion as a fraction of the personal envelope *at that frame's
  combined posture* (planar frames carry some rotation and vice versa, and the envelope depends
  on it);
- ``expected_deg``: the envelope along the sector's centre from neutral; ``deficit_deg`` =
  expected x (1 - ratio) and ``deficit_pct`` = 100 x (1 - ratio), zero when the ratio reaches 1;
- ``status``: ``deficit`` when the deficit is at least ``min_deficit_deg``, else ``normal``;
  ``insufficient_data`` when the session cannot support a deficit there (see below);
- ``peak_speed_deg_s``: the fastest head-on-trunk angular speed *moving towards* that sector.

Thresholds (``AssessmentConfig``, all configurable): a deficit counts from 12 deg, above the
largest published minimal detectable change of active cervical ROM (3.5-9.6 deg) and the low end
of day-to-day variation (12-20 deg per plane). Gaps up to 0.1 s are filled linearly (a linear fill
never creates a new extreme, so excursions stay observed values); longer gaps, NaN/inf spans,
timestamps that go backwards and sessions shorter than ``min_duration_s`` can hide the moment the
head reached a direction, so no deficit is reported from such data: a sector that would show a
deficit becomes ``insufficient_data`` with the reason. A sector that reached its envelope is
normal whatever the gaps (reaching is proof). Flags are meant for sessions in which the wearer
performs the range-of-motion protocol (each direction to its end).

Smoothness is the spectral arc length (SPARC; Balasubramanian et al. 2015) of the angular speed
of each movement (speed above 10% of the session peak for at least 0.3 s); closer to zero is
smoother (a single minimum-jerk movement ~ -1.6).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_runtime.common.numbers import is_finite_number
from edge_runtime.contracts.envelope import MotionEnvelope
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.neck_angles import filtered_derivative

FloatArray = npt.NDArray[np.float64]
ASSESSMENT_FORMAT = "cervical-rom-assessment/1"
PLANAR_SECTORS: tuple[str, ...] = (
    "extension",
    "extension_right_bend",
    "right_bend",
    "flexion_right_bend",
    "flexion",
    "flexion_left_bend",
    "left_bend",
    "extension_left_bend",
)
AXIAL_SECTORS: tuple[str, ...] = ("left_rotation", "right_rotation")
SECTORS: tuple[str, ...] = PLANAR_SECTORS + AXIAL_SECTORS
SECTOR_WIDTH_RAD = 2 * math.pi / len(PLANAR_SECTORS)
Status = Literal["normal", "deficit", "insufficient_data"]


class AssessmentError(ContractError, ValueError):
    """Input the assessment cannot take at all (wrong shapes, bad configuration)."""


def planar_sector_centre_rad(name: str) -> float:
    """Direction of a planar sector in the (e, b) plane: 0 extension, pi/2 right bend."""
    return PLANAR_SECTORS.index(name) * SECTOR_WIDTH_RAD


@dataclass(frozen=True)
class AssessmentConfig:
    """Thresholds of the assessment (see the module docstring for the defaults' sources)."""

    min_deficit_deg: float = 12.0
    min_duration_s: float = 20.0
    max_fill_gap_s: float = 0.1
    min_excursion_deg: float = 3.0  # frames nearer neutral than this belong to no sector
    movement_speed_fraction: float = 0.1
    min_movement_s: float = 0.3

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not is_finite_number(value) or value < 0:
                raise AssessmentError(f"assessment config: {f.name} = {value!r} must be >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssessmentConfig:
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise AssessmentError(f"assessment config: unknown setting {key!r}")
        return cls(**data)


@dataclass(frozen=True)
class SectorResult:
    sector: str
    status: Status
    expected_deg: float
    reached_deg: float
    ratio: float
    deficit_deg: float
    deficit_pct: float
    peak_speed_deg_s: float
    reason: str = ""


@dataclass(frozen=True)
class DataSpan:
    """A span of the session without usable samples (s from the first sample)."""

    start_s: float
    end_s: float
    kind: Literal["gap", "invalid", "time_reversal"]
    filled: bool


@dataclass(frozen=True)
class RomAssessment:
    duration_s: float
    valid_s: float
    sectors: tuple[SectorResult, ...]
    spans: tuple[DataSpan, ...]
    movements: int
    sparc_median: float | None
    config: AssessmentConfig
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def flagged(self) -> tuple[str, ...]:
        return tuple(s.sector for s in self.sectors if s.status == "deficit")

    @property
    def insufficient(self) -> tuple[str, ...]:
        return tuple(s.sector for s in self.sectors if s.status == "insufficient_data")

    def sector(self, name: str) -> SectorResult:
        for s in self.sectors:
            if s.sector == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ASSESSMENT_FORMAT,
            "duration_s": round(self.duration_s, 3),
            "valid_s": round(self.valid_s, 3),
            "flagged": list(self.flagged),
            "insufficient_data": list(self.insufficient),
            "sectors": [
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(s).items()}
                for s in self.sectors
            ],
            "spans": [asdict(s) for s in self.spans],
            "movements": self.movements,
            "sparc_median": None if self.sparc_median is None else round(self.sparc_median, 3),
            "config": asdict(self.config),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RomAssessment:
        if data.get("format") != ASSESSMENT_FORMAT:
            raise AssessmentError(
                f"assessment: format {data.get('format')!r} is not {ASSESSMENT_FORMAT!r}"
            )
        return cls(
            duration_s=float(data["duration_s"]),
            valid_s=float(data["valid_s"]),
            sectors=tuple(SectorResult(**s) for s in data["sectors"]),
            spans=tuple(DataSpan(**s) for s in data["spans"]),
            movements=int(data["movements"]),
            sparc_median=data["sparc_median"],
            config=AssessmentConfig.from_dict(data["config"]),
            notes=tuple(data.get("notes", ())),
        )


def sparc(speed: FloatArray, rate_hz: float, cutoff_hz: float = 10.0,
          amplitude_threshold: float = 0.05, padding_level: int = 4) -> float:  # fmt: skip
    """Spectral arc length of a speed profile (Balasubramanian et al. 2015, their defaults)."""
    n_fft = int(2 ** (math.ceil(math.log2(len(speed))) + padding_level))
    freq = np.arange(n_fft) * rate_hz / n_fft
    mag = np.abs(np.fft.fft(speed, n_fft))
    if mag.max() <= 0:
        return 0.0
    mag = mag / mag.max()
    keep = freq <= cutoff_hz
    f_sel, m_sel = freq[keep], mag[keep]
    above = np.flatnonzero(m_sel >= amplitude_threshold)
    f_sel, m_sel = f_sel[: above[-1] + 1], m_sel[: above[-1] + 1]
    df = np.diff(f_sel) / (f_sel[-1] - f_sel[0])
    return float(-np.sum(np.sqrt(df**2 + np.diff(m_sel) ** 2)))


def _spans(t: FloatArray, valid: npt.NDArray[np.bool_], nominal_dt: float,
           max_fill_s: float) -> list[DataSpan]:  # fmt: skip
    """Gaps between valid samples longer than 1.5 sampling intervals, by kind."""
    spans = []
    idx = np.flatnonzero(valid)
    t0 = float(t[idx[0]]) if idx.size else 0.0
    for a, b in itertools.pairwise(idx):
        dt = t[b] - t[a]
        if dt > 1.5 * nominal_dt:
            kind: Literal["gap", "invalid", "time_reversal"] = "invalid" if b - a > 1 else "gap"
            length = float(dt - nominal_dt)
            spans.append(DataSpan(float(t[a] - t0), float(t[b] - t0), kind, length <= max_fill_s))
    return spans


def assess_session(
    t_s: FloatArray,
    angles_rad: FloatArray,
    envelope: MotionEnvelope,
    config: AssessmentConfig | None = None,
) -> RomAssessment:
    """Assess one session's head-on-trunk trajectory (contract neck angles, rad) against
    ``envelope``. Bad samples are excluded and reported, never an exception; only arrays of the
    wrong shape raise ``AssessmentError``."""
    cfg = config or AssessmentConfig()
    t = np.asarray(t_s, dtype=np.float64)
    a = np.asarray(angles_rad, dtype=np.float64)
    if t.ndim != 1 or a.shape != (t.size, 3):
        raise AssessmentError(
            f"assessment: need t_s (N,) and angles_rad (N, 3), got {t.shape} and {a.shape}"
        )
    notes: list[str] = []
    valid, reversal = _valid_samples(t, a)
    if reversal.any():
        notes.append(f"{int(reversal.sum())} samples with timestamps that did not advance dropped")
    idx = np.flatnonzero(valid)
    if idx.size < 3:
        return _insufficient_everything(envelope, cfg, [], "fewer than 3 valid samples", notes)
    tv, av = t[idx], a[idx]
    nominal_dt = float(np.median(np.diff(tv)))
    spans = _spans(t, valid, nominal_dt, cfg.max_fill_gap_s)
    if reversal.any():
        first = float(t[np.flatnonzero(reversal)[0]] - tv[0])
        spans.append(DataSpan(first, first, "time_reversal", False))
    unfilled = [s for s in spans if not s.filled]
    duration = float(tv[-1] - tv[0])
    valid_s = duration - sum(s.end_s - s.start_s - nominal_dt for s in unfilled)
    if valid_s < cfg.min_duration_s:
        return _insufficient_everything(
            envelope, cfg, spans,
            f"{valid_s:.1f} s of valid data, under the minimum {cfg.min_duration_s} s",
            notes, duration, valid_s,
        )  # fmt: skip

    rate = 1.0 / nominal_dt
    velocity = _uniform_velocity(tv, av, nominal_dt, unfilled)
    sectors = _sector_results(
        _excursions(av, envelope, cfg), _directional_speeds(velocity), unfilled, cfg
    )
    movements, sparc_values = _movements(velocity, rate, cfg)
    return RomAssessment(
        duration_s=duration, valid_s=valid_s, sectors=tuple(sectors), spans=tuple(spans),
        movements=movements,
        sparc_median=float(np.median(sparc_values)) if sparc_values else None,
        config=cfg, notes=tuple(notes),
    )  # fmt: skip


def _valid_samples(
    t: FloatArray, a: FloatArray
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(valid, reversal): finite samples whose time advances past the last valid one; samples
    whose time does not are dropped and marked in ``reversal``."""
    valid = np.isfinite(t) & np.all(np.isfinite(a), axis=1)
    reversal = np.zeros(t.size, dtype=bool)
    last = -math.inf
    for i in np.flatnonzero(valid):
        if t[i] <= last:
            reversal[i] = True
        else:
            last = t[i]
    return valid & ~reversal, reversal


def _uniform_velocity(
    tv: FloatArray, av: FloatArray, nominal_dt: float, unfilled: list[DataSpan]
) -> FloatArray:
    """Angular velocity (rad/s) on a uniform grid: resampled for the derivative filter; long
    gaps stay NaN and split the segments it runs over."""
    grid = np.arange(tv[0], tv[-1] + nominal_dt / 2, nominal_dt)
    uniform = np.stack([np.interp(grid, tv, av[:, k]) for k in range(3)], axis=1)
    in_gap = np.zeros(grid.size, dtype=bool)
    for s in unfilled:
        in_gap |= (grid > tv[0] + s.start_s) & (grid < tv[0] + s.end_s)
    velocity = np.full_like(uniform, np.nan)
    for seg in _segments(~in_gap):
        velocity[seg] = filtered_derivative(uniform[seg], 1.0 / nominal_dt, 1)
    return velocity


def _sector_results(
    excursion: dict[str, tuple[float, float, float]],
    speeds: dict[str, float],
    unfilled: list[DataSpan],
    cfg: AssessmentConfig,
) -> list[SectorResult]:
    """Each sector's status: a deficit where the reach falls short by ``min_deficit_deg`` or
    more, unless a span without data may have hidden the movement (then insufficient data)."""
    sectors = []
    gap_reason = ""
    if unfilled:
        worst = max(unfilled, key=lambda s: s.end_s - s.start_s)
        gap_reason = (
            f"{len(unfilled)} span(s) without valid data "
            f"(longest {worst.end_s - worst.start_s:.2f} s "
            f"at {worst.start_s:.1f} s): the movement into this direction may have been missed"
        )
    for name in SECTORS:
        ratio, reached, expected = excursion[name]
        deficit_frac = max(0.0, 1.0 - ratio)
        deficit_deg = expected * deficit_frac
        status: Status = "deficit" if deficit_deg >= cfg.min_deficit_deg else "normal"
        reason = ""
        if status == "deficit" and gap_reason:
            status, reason = "insufficient_data", gap_reason
        sectors.append(
            SectorResult(
                sector=name,
                status=status,
                expected_deg=expected,
                reached_deg=reached,
                ratio=ratio,
                deficit_deg=deficit_deg,
                deficit_pct=100.0 * deficit_frac,
                peak_speed_deg_s=speeds[name],
                reason=reason,
            )
        )
    return sectors


def _segments(mask: npt.NDArray[np.bool_]) -> list[slice]:
    """Contiguous runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def expected_deg(env: MotionEnvelope) -> dict[str, float]:
    """The personal envelope along each sector's centre from neutral (deg)."""
    return env.limits_from_neutral_deg({s: planar_sector_centre_rad(s) for s in PLANAR_SECTORS})


def _excursions(
    a: FloatArray, env: MotionEnvelope, cfg: AssessmentConfig
) -> dict[str, tuple[float, float, float]]:
    """Per sector: (ratio, reached_deg, expected_deg)."""
    e, b, r = a[:, 0], a[:, 1], a[:, 2]
    min_rad = math.radians(cfg.min_excursion_deg)
    out: dict[str, tuple[float, float, float]] = {}
    expected_by_sector = expected_deg(env)
    rho = np.hypot(e, b)
    theta = np.mod(np.arctan2(b, e), 2 * math.pi)
    sector = np.round(theta / SECTOR_WIDTH_RAD).astype(np.intp) % len(PLANAR_SECTORS)
    limit = env.planar_limit_rad(theta, r)
    planar_ok = (rho >= min_rad) & (limit > min_rad)

    def peak(name: str, excursion: FloatArray, lim: FloatArray, m: npt.NDArray[np.bool_]) -> None:
        if m.any():
            ratio = float(np.max(excursion[m] / lim[m]))
            out[name] = (ratio, math.degrees(float(excursion[m].max())), expected_by_sector[name])
        else:
            out[name] = (0.0, 0.0, expected_by_sector[name])

    for k, name in enumerate(PLANAR_SECTORS):
        peak(name, rho, limit, planar_ok & (sector == k))
    for name, left in (("left_rotation", True), ("right_rotation", False)):
        side = r if left else -r
        lim = env.axial_limit_rad(e, b, left)
        peak(name, side, lim, (side >= min_rad) & (lim > min_rad))
    return out


def _directional_speeds(velocity: FloatArray) -> dict[str, float]:
    """Peak angular speed (deg/s) of motion heading towards each sector."""
    v = np.nan_to_num(velocity, nan=0.0)
    planar_speed = np.hypot(v[:, 0], v[:, 1])
    heading = np.mod(np.arctan2(v[:, 1], v[:, 0]), 2 * math.pi)
    sector = np.round(heading / SECTOR_WIDTH_RAD).astype(np.intp) % len(PLANAR_SECTORS)
    out = {}
    for k, name in enumerate(PLANAR_SECTORS):
        m = sector == k
        out[name] = math.degrees(float(planar_speed[m].max())) if m.any() else 0.0
    out["left_rotation"] = math.degrees(max(0.0, float(v[:, 2].max())))
    out["right_rotation"] = math.degrees(max(0.0, float(-v[:, 2].min())))
    return out


def _movements(
    velocity: FloatArray, rate_hz: float, cfg: AssessmentConfig
) -> tuple[int, list[float]]:
    speed = np.linalg.norm(velocity, axis=1)
    finite = np.isfinite(speed)
    if not finite.any():
        return 0, []
    threshold = cfg.movement_speed_fraction * float(np.nanmax(speed))
    values = []
    for seg in _segments(finite & (np.nan_to_num(speed) > threshold)):
        if (seg.stop - seg.start) / rate_hz >= cfg.min_movement_s:
            values.append(sparc(speed[seg], rate_hz))
    return len(values), values


def _insufficient_everything(
    envelope: MotionEnvelope, cfg: AssessmentConfig, spans: list[DataSpan], reason: str,
    notes: list[str], duration: float = 0.0, valid_s: float = 0.0,
) -> RomAssessment:  # fmt: skip
    expected = expected_deg(envelope)
    sectors = tuple(
        SectorResult(name, "insufficient_data", expected[name], 0.0, 0.0, 0.0, 0.0, 0.0, reason)
        for name in SECTORS
    )
    return RomAssessment(
        duration_s=duration, valid_s=valid_s, sectors=sectors, spans=tuple(spans),
        movements=0, sparc_median=None, config=cfg, notes=tuple(notes),
    )  # fmt: skip
