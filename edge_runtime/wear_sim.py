"""Free-living head-on-trunk motion: what a wearer's neck does between tests, for long simulated
wear (drift of the 6-axis path, wear sessions that must never show a deficit, the demo's days).

Ordinary life is mostly holds at habitual postures joined by quick gaze shifts, not movements to
the end of range. The generator draws, deterministically from its seed:

- *holds*: lognormal durations (median 4 s, 0.5-60 s) at the current posture with a little
  postural sway (about 1 deg);
- *gaze shifts*: minimum-jerk movements to a new habitual posture. Postures are drawn around a
  slightly flexed neutral (reading, screens: extension -8 +- 12 deg, bending 0 +- 6 deg, rotation
  0 +- 20 deg), clipped to ``reach`` of the wearer's range, and now and then (1 in 12) a look far
  to one side (60-85% of the rotation range). Peak angular speed is lognormal, median 60 deg/s
  (spread 0.5 in log units, capped at 300 deg/s): daily-life head movements peak mostly at
  30-150 deg/s, well below the 300-600 deg/s of fast voluntary movements in the laboratory
  (Grossman et al. 1988; Sarig-Bahat 2003 reviews both);
- *small oscillations* (1 in 10 segments): nods and shakes of 3-8 deg at 1-3 Hz for 1-2 s.

The session starts with a neutral hold and a nod, so the hub's calibration finds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
RATE_HZ = 100.0
NEUTRAL_S = 4.0
NOD_DEG = 25.0
NOD_S = 2.5


@dataclass(frozen=True)
class WearRanges:
    """The wearer's active range (deg) for drawing postures: extension, flexion, bending to each
    side and rotation to each side; a side restricted (an injury) reaches its ``*_scale`` of
    it."""

    extension_deg: float = 70.0
    flexion_deg: float = 50.0
    bend_deg: float = 40.0
    rotation_deg: float = 70.0
    left_bend_scale: float = 1.0
    right_bend_scale: float = 1.0
    left_rotation_scale: float = 1.0
    right_rotation_scale: float = 1.0


def _minimum_jerk(start: FloatArray, end: FloatArray, n: int) -> FloatArray:
    s = np.linspace(0.0, 1.0, max(n, 2))
    shape = 10 * s**3 - 15 * s**4 + 6 * s**5
    return start + (end - start) * shape[:, None]


def _posture(rng: np.random.Generator, ranges: WearRanges, reach: float) -> FloatArray:
    """A habitual posture (rad): extension, right bend, left rotation."""
    e = rng.normal(-8.0, 12.0)
    b = rng.normal(0.0, 6.0)
    r = rng.normal(0.0, 20.0)
    if rng.random() < 1 / 12:  # a look far to one side
        r = math.copysign(rng.uniform(0.6, 0.85) * ranges.rotation_deg, rng.normal())
    e = float(np.clip(e, -reach * ranges.flexion_deg, reach * ranges.extension_deg))
    bend, rot = reach * ranges.bend_deg, reach * ranges.rotation_deg
    b = float(np.clip(b, -bend * ranges.left_bend_scale, bend * ranges.right_bend_scale))
    r = float(np.clip(r, -rot * ranges.right_rotation_scale, rot * ranges.left_rotation_scale))
    return np.radians([e, b, r])


def free_living_angles(
    duration_s: float, seed: int, ranges: WearRanges | None = None, reach: float = 0.85
) -> tuple[FloatArray, FloatArray]:
    """(t_s (N,), contract neck angles (N, 3) rad) of ``duration_s`` of ordinary wear, starting
    with a neutral hold and a nod (module docstring)."""
    ranges = ranges or WearRanges()
    rng = np.random.default_rng(seed)
    n_total = round(duration_s * RATE_HZ)
    nod = _minimum_jerk(np.zeros(3), np.radians([-NOD_DEG, 0.0, 0.0]), int(NOD_S / 2 * RATE_HZ))
    pieces = [np.zeros((int(NEUTRAL_S * RATE_HZ), 3)), nod, nod[::-1], np.zeros((50, 3))]
    current = np.zeros(3)
    n = sum(len(p) for p in pieces)
    while n < n_total:
        kind = rng.random()
        if kind < 0.1:  # a small nod or shake
            axis = int(rng.choice([0, 2]))
            freq, amp = rng.uniform(1.0, 3.0), math.radians(rng.uniform(3.0, 8.0))
            k = np.arange(int(rng.uniform(1.0, 2.0) * RATE_HZ)) / RATE_HZ
            piece = np.repeat(current[None, :], len(k), axis=0)
            piece[:, axis] += amp * np.sin(2 * math.pi * freq * k) * np.sin(math.pi * k / k[-1])
        elif kind < 0.55:  # a hold with sway
            hold_s = float(np.clip(rng.lognormal(math.log(4.0), 0.9), 0.5, 60.0))
            k = np.arange(int(hold_s * RATE_HZ)) / RATE_HZ
            phase = rng.uniform(0, 2 * math.pi, 3)
            sway = math.radians(1.0) * np.sin(2 * math.pi * 0.2 * k[:, None] + phase)
            piece = current + sway
        else:  # a gaze shift
            target = _posture(rng, ranges, reach)
            amplitude_deg = math.degrees(float(np.linalg.norm(target - current)))
            peak = min(300.0, float(rng.lognormal(math.log(60.0), 0.5)))
            move_s = max(0.3, 1.875 * amplitude_deg / peak)  # minimum jerk: peak = 1.875 A / T
            piece = _minimum_jerk(current, target, int(move_s * RATE_HZ))
            current = target
        pieces.append(piece)
        n += len(piece)
    angles = np.concatenate(pieces)[:n_total]
    return np.arange(len(angles)) / RATE_HZ, angles


def nod_window_s() -> tuple[tuple[float, float], tuple[float, float]]:
    """The neutral hold and the nod of a free-living session's start (calibration windows)."""
    return (0.5, NEUTRAL_S - 0.5), (NEUTRAL_S, NEUTRAL_S + NOD_S + 0.3)
