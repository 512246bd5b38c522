"""Motion families for everyday head motion, and a sampler that covers the hub's input box.

Static optimisation is memoryless: a frame's muscle forces depend only on the body, the posture
and the posture's first two time derivatives. A network that must hold for motion nobody designed
therefore needs training frames that fill the space of (posture, velocity, acceleration) the hub
can see, not a longer list of designed motions. Two kinds of families do that here:

* ``box``: frames drawn independently, by scrambled Sobol sampling (quasi-random, even coverage
  of the 9-D box of three anatomical angles, their velocities and accelerations). The frames are
  not a time series; the dataset's ``frame`` column indexes the draw. Postures are uniform over
  95% of the anatomical range, in a ball (ranges do not combine at their corners); velocity and
  acceleration vectors point anywhere, with magnitudes ``limit * u^3`` (everyday motion is mostly
  slow: median 1/8 of the limit, 21% of frames above half of it).
* trajectory families that look like daily life: ``point_to_point`` (minimum-jerk movements
  between non-neutral postures at 20-450 deg/s), ``oscillation`` (about a non-neutral posture,
  0.3-3.5 Hz), ``sway_hold`` (holding a non-neutral posture with small postural sway) and
  ``multi_axis`` (continuous motion in all three planes about a non-neutral centre).

Limits of the box, from measured voluntary head motion:

* angular velocity 500 deg/s per plane: fast voluntary axial rotation of healthy adults peaks at
  348 +- 92 deg/s (Roijezon et al. 2010, BMC Musculoskelet Disord 11:222), so 500 deg/s is about
  the mean + 1.7 SD; people with neck pain are slower (226 +- 88 deg/s).
* angular acceleration 10,000 deg/s^2 (175 rad/s^2) per plane: vigorous voluntary head shaking
  peaks at 182 +- 58 rad/s^2 (women) and 250 +- 103 rad/s^2 (men) at 1.9-4.7 Hz (Funk et al. 2015,
  J Appl Biomech 31:170); free-living head-on-trunk motion through the hub's Savitzky-Golay
  derivatives stays below about 3,000 deg/s^2 (optical motion capture, our measurement).

Every family is a pure function of its ``MotionSpec`` (its seed comes from (set seed, subject)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from host_training.simulation.motions import MotionSpec

FloatArray = npt.NDArray[np.float64]
ThetaFn = Callable[[FloatArray], FloatArray]

BOX_VELOCITY_DEG_S = 500.0
BOX_ACCELERATION_DEG_S2 = 10_000.0
BOX_POSTURE_FRACTION = 0.95
BOX_WARP_POWER = 3.0
OSCILLATION_HZ = (0.3, 3.5)
OSCILLATION_PEAK_SPEED_DEG_S = 400.0
MOVE_SPEED_DEG_S = (20.0, 450.0)  # point-to-point peak speeds, drawn log-uniformly
MIN_MOVE_S = 0.15
EASE_S = 0.3  # oscillations and continuous motion fade in and out over this long

FAMILY_DEFINITIONS: dict[str, dict[str, object]] = {
    "box": {
        "sampler": "scrambled Sobol, 9-D (angles in a ball, velocity and acceleration vectors)",
        "posture_fraction_of_range": BOX_POSTURE_FRACTION,
        "velocity_limit_deg_s": BOX_VELOCITY_DEG_S,
        "acceleration_limit_deg_s2": BOX_ACCELERATION_DEG_S2,
        "derivative_magnitude_power": BOX_WARP_POWER,
    },
    "point_to_point": {
        "profile": "minimum jerk between random postures (60% of range ball), 0-0.4 s dwell",
        "peak_speed_deg_s": list(MOVE_SPEED_DEG_S),
    },
    "oscillation": {
        "profile": "sinusoid along a random direction about a random posture (50% of range)",
        "frequency_hz": list(OSCILLATION_HZ),
        "peak_speed_deg_s": OSCILLATION_PEAK_SPEED_DEG_S,
        "peak_acceleration_deg_s2": BOX_ACCELERATION_DEG_S2,
    },
    "sway_hold": {"profile": "random posture (80% of range) with 0.3-1.5 deg sway at 0.1-1.5 Hz"},
    "multi_axis": {
        "profile": "sum of sinusoids 0.2-2.5 Hz in all planes about a random posture, saturated",
        "peak_speed_deg_s": [40.0, 300.0],
    },
}


def minimum_jerk(tau: FloatArray) -> FloatArray:
    """The minimum-jerk profile 0 -> 1 over tau in [0, 1] (Flash & Hogan 1985); its peak speed
    is 1.875 x the distance over the duration."""
    return np.asarray(tau**3 * (10.0 - 15.0 * tau + 6.0 * tau * tau))


def _ease(t: FloatArray, duration: float) -> FloatArray:
    """0 -> 1 over EASE_S, 1 -> 0 over the last EASE_S (raised cosine)."""
    env = np.clip(np.minimum(t, duration - t) / EASE_S, 0.0, 1.0)
    return np.asarray(0.5 * (1.0 - np.cos(np.pi * env)))


def _ball(cube: FloatArray) -> FloatArray:
    """Points of [-1, 1]^3 pushed radially into the unit ball (the L-inf sphere onto the L2
    sphere): anatomical ranges do not combine at their corners (nobody is at full flexion, full
    lateral bend and full rotation at once, and the model cannot hold it)."""
    linf = np.max(np.abs(cube), axis=1, keepdims=True)
    l2 = np.maximum(np.linalg.norm(cube, axis=1, keepdims=True), 1e-12)
    return np.asarray(cube * linf / l2)


def _per_side(unit: FloatArray, limits: tuple[tuple[float, float], ...]) -> FloatArray:
    lo = np.array([lo for lo, _ in limits])
    hi = np.array([hi for _, hi in limits])
    return np.asarray(np.where(unit >= 0, unit * hi, -unit * lo))


def _vectors(u: FloatArray, limit: float) -> FloatArray:
    """(n, 3) uniform draws -> 3-D vectors: direction uniform on the sphere, magnitude
    ``limit * u^power`` (dense near zero, reaching the limit)."""
    z = 2.0 * u[:, 0] - 1.0
    phi = 2.0 * math.pi * u[:, 1]
    r = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    direction = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    return np.asarray(direction * (limit * u[:, 2] ** BOX_WARP_POWER)[:, None])


def box_frames(
    spec: MotionSpec, limits: tuple[tuple[float, float], ...], n: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(n, 3) anatomical angles (rad), velocities (rad/s), accelerations (rad/s^2), independent
    quasi-random draws (module docstring)."""
    from scipy.stats import qmc

    u = qmc.Sobol(d=9, scramble=True, seed=spec.seed).random(n)
    angles = _per_side(BOX_POSTURE_FRACTION * _ball(2.0 * u[:, 0:3] - 1.0), limits)
    velocity = _vectors(u[:, 3:6], math.radians(BOX_VELOCITY_DEG_S))
    acceleration = _vectors(u[:, 6:9], math.radians(BOX_ACCELERATION_DEG_S2))
    return angles, velocity, acceleration


def _uniform_posture(
    rng: np.random.Generator, limits: tuple[tuple[float, float], ...], fraction: float, n: int
) -> FloatArray:
    """``n`` postures uniform in the anatomical ball scaled by ``fraction``."""
    return _per_side(fraction * _ball(2.0 * rng.random((n, 3)) - 1.0), limits)


def point_to_point(
    spec: MotionSpec, limits: tuple[tuple[float, float], ...]
) -> tuple[ThetaFn, float]:
    """Minimum-jerk moves through ``extra["moves"]`` random postures, each at its own speed."""
    rng = np.random.default_rng(spec.seed)
    moves = int(spec.extra.get("moves", 6))
    postures = _uniform_posture(rng, limits, 0.6, moves + 1)
    lo_v, hi_v = (math.radians(v) for v in MOVE_SPEED_DEG_S)
    starts, durations = [], []
    clock = 0.2
    for k in range(moves):
        distance = float(np.linalg.norm(postures[k + 1] - postures[k]))
        speed = math.exp(rng.uniform(math.log(lo_v), math.log(hi_v)))
        duration = max(MIN_MOVE_S, 1.875 * distance / speed)  # min jerk: peak = 1.875 d / T
        starts.append(clock)
        durations.append(duration)
        clock += duration + rng.uniform(0.0, 0.4)
    start = np.array(starts)
    length = np.array(durations)
    total = clock + 0.2

    def theta(t: FloatArray) -> FloatArray:
        k = np.clip(np.searchsorted(start, t, side="right") - 1, 0, moves - 1)
        tau = np.clip((t - start[k]) / length[k], 0.0, 1.0)
        s = minimum_jerk(tau)
        return np.asarray(postures[k] + s[:, None] * (postures[k + 1] - postures[k]))

    return theta, total


def oscillation(spec: MotionSpec, limits: tuple[tuple[float, float], ...]) -> tuple[ThetaFn, float]:
    """A sinusoid at ``extra["frequency_hz"]`` along ``spec.direction`` about a random posture;
    its amplitude is the largest that keeps speed, acceleration and posture within limits."""
    rng = np.random.default_rng(spec.seed)
    centre = _uniform_posture(rng, limits, 0.5, 1)[0]
    direction = np.array(spec.direction)
    omega = 2.0 * math.pi * spec.extra["frequency_hz"]
    room = math.inf  # how far the posture may swing along +-direction from the centre
    for c, d, (lo, hi) in zip(centre, direction, limits, strict=True):
        if abs(d) > 1e-12:
            room = min(room, (hi - c) / abs(d), (c - lo) / abs(d))
    amplitude = min(
        spec.amplitude_fraction * room,
        math.radians(OSCILLATION_PEAK_SPEED_DEG_S) / omega,
        math.radians(BOX_ACCELERATION_DEG_S2) / omega**2,
    )
    duration = spec.duration_s

    def theta(t: FloatArray) -> FloatArray:
        swing = _ease(t, duration) * amplitude * np.sin(omega * t)
        return np.asarray(centre + swing[:, None] * direction)

    return theta, duration


def sway_hold(spec: MotionSpec, limits: tuple[tuple[float, float], ...]) -> tuple[ThetaFn, float]:
    rng = np.random.default_rng(spec.seed)
    posture = _uniform_posture(rng, limits, 0.8, 1)[0]
    freq = rng.uniform(0.1, 1.5, size=(3, 3))
    phase = rng.uniform(0.0, 2 * np.pi, size=(3, 3))
    amp = np.radians(rng.uniform(0.3, 1.5, size=(3, 1))) / 3.0

    def theta(t: FloatArray) -> FloatArray:
        sway = np.einsum("pk,npk->np", np.broadcast_to(amp, (3, 3)),
                         np.sin(2 * np.pi * freq * t[:, None, None] + phase))  # fmt: skip
        return np.asarray(posture + sway)

    return theta, spec.duration_s


def multi_axis(spec: MotionSpec, limits: tuple[tuple[float, float], ...]) -> tuple[ThetaFn, float]:
    """Continuous motion in all planes about a random posture, smoothly saturated inside the
    anatomical range (``lo``/``hi`` per plane, never clipped)."""
    rng = np.random.default_rng(spec.seed)
    centre = _uniform_posture(rng, limits, 0.4, 1)[0]
    n_comp = 6
    freq = rng.uniform(0.2, 2.5, size=(3, n_comp))
    phase = rng.uniform(0.0, 2 * np.pi, size=(3, n_comp))
    weight = rng.uniform(0.2, 1.0, size=(3, n_comp))
    speed = math.radians(spec.peak_speed_deg_s)
    gain = speed / np.sum(weight * 2 * np.pi * freq, axis=1)
    lo = np.array([lo for lo, _ in limits]) * 0.95
    hi = np.array([hi for _, hi in limits]) * 0.95
    duration = spec.duration_s

    def theta(t: FloatArray) -> FloatArray:
        x = np.einsum("pk,npk->np", weight, np.sin(2 * np.pi * freq * t[:, None, None] + phase))
        raw = centre + _ease(t, duration)[:, None] * gain * x
        # smooth saturation towards each side's own limit
        return np.asarray(np.where(raw >= 0, hi * np.tanh(raw / hi), lo * np.tanh(raw / lo)))

    return theta, duration


TRAJECTORY_FAMILIES: dict[
    str, Callable[[MotionSpec, tuple[tuple[float, float], ...]], tuple[ThetaFn, float]]
] = {
    "point_to_point": point_to_point,
    "oscillation": oscillation,
    "sway_hold": sway_hold,
    "multi_axis": multi_axis,
}
