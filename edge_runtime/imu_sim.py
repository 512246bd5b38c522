"""IMU simulator: head and upper-trunk sensor signals from a head-on-trunk motion, with truth.

World frame ENU (x east, y north, z up). Segment frames are the model's (x anterior, y up,
z right); standing in neutral facing north, x -> north, y -> up, z -> east. The trunk moves too
(slow turning, forward and side lean, and a little translation), so head-only sensing would not
recover the neck angles: only the head-relative-to-trunk rotation does.

Each sensor sits on its segment with a mounting rotation (random axis, up to
``misalignment_deg``), at a lever arm from the rotation centre (the head sensor's linear
acceleration includes the head's rotation about the lower neck). Signals: gyroscope = angular
velocity in sensor axes + constant bias + bias random walk + white noise; accelerometer =
specific force (linear acceleration + gravity) in sensor axes + bias + noise; magnetometer =
the earth field (50 µT, 60 deg dip) in sensor axes + noise, optionally with a disturbance
(a ferromagnetic object near the head for a span). Axes saturate at the ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_runtime.common.rotations import axis_angle_matrix, matrix_to_rotvec
from edge_runtime.contracts.recording import ImuRecording

FloatArray = npt.NDArray[np.float64]
GRAVITY_M_S2 = 9.81
EARTH_FIELD_UT = 50.0
EARTH_DIP_DEG = 60.0
# segment axes in the world when standing in neutral facing north (columns: x, y, z of the segment)
NEUTRAL_FACING_NORTH = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
HEAD_SENSOR_LEVER_M = np.array([0.02, 0.22, 0.0])  # from the lower neck, in head axes
TRUNK_SENSOR_LEVER_M = np.array([-0.08, -0.05, 0.0])  # on the upper back, in trunk axes
WARMUP_TAU_S = 600.0  # a body-worn sensor's approach to skin temperature


@dataclass(frozen=True)
class ImuErrors:
    """Sensor error magnitudes (consumer MEMS, e.g. LSM6DSO/ICM-42688 data sheets, rounded up)."""

    gyr_noise_deg_s: float = 0.1
    gyr_bias_deg_s: float = 1.0  # per axis, uniform in +-
    gyr_bias_walk_deg_s_per_sqrt_s: float = 0.005
    # the zero-rate level's change as the sensor warms to skin temperature (per axis, uniform in
    # +-, reached with a 10 min time constant); 0: none, and no random draw for it
    gyr_bias_warmup_deg_s: float = 0.0
    acc_noise_m_s2: float = 0.02
    acc_bias_m_s2: float = 0.05
    mag_noise_ut: float = 0.5
    gyr_range_deg_s: float = 2000.0
    acc_range_m_s2: float = 16 * GRAVITY_M_S2


@dataclass(frozen=True)
class SimulationSetup:
    errors: ImuErrors = ImuErrors()
    misalignment_deg: float = 10.0
    trunk_turn_deg: float = 15.0  # slow turning of the whole body
    trunk_lean_deg: float = 4.0  # forward/side sway of the upper trunk
    trunk_translation_m: float = 0.03
    # the wearer sits upright and still before and during the neutral calibration (the filters
    # estimate the gyroscope bias at rest): trunk motion fades in over the 2 s after this
    calm_s: float = 3.0
    magnetometer: bool = True
    mag_disturbance_ut: float = 0.0  # added near the head between 40% and 50% of the session


@dataclass(frozen=True, eq=False)
class SimulatedSession:
    head: ImuRecording
    trunk: ImuRecording
    neck_rotation: FloatArray  # (N, 3, 3) true head-in-trunk rotation
    head_mount: FloatArray  # sensor -> segment rotations
    trunk_mount: FloatArray


def _random_rotation(rng: np.random.Generator, max_deg: float) -> FloatArray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return axis_angle_matrix(axis * math.radians(rng.uniform(0, max_deg)))[0]


def _rot_z(angle: FloatArray) -> FloatArray:
    c, s = np.cos(angle), np.sin(angle)
    r = np.zeros((len(angle), 3, 3))
    r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1], r[:, 2, 2] = c, -s, s, c, 1.0
    return r


def _body_rates(r: FloatArray, dt: float) -> FloatArray:
    """Mean angular velocity over each sample interval, in body axes of its start, (N, 3).

    Sample k carries the rotation from k-1 to k, as an ideal integrating gyroscope reports it and
    as strapdown integration (VQF's included) consumes it: noise-free, integration is exact.
    """
    rel = np.swapaxes(r[:-1], 1, 2) @ r[1:]
    rates = matrix_to_rotvec(rel) / dt
    return np.concatenate([rates[:1], rates])


def _second_derivative(p: FloatArray, dt: float) -> FloatArray:
    return np.gradient(np.gradient(p, dt, axis=0), dt, axis=0)


def simulate_imus(
    t_s: FloatArray,
    neck_rotation: FloatArray,
    setup: SimulationSetup | None = None,
    seed: int = 0,
) -> SimulatedSession:
    """Render head and trunk IMU recordings for a head-on-trunk rotation sequence (N, 3, 3)
    sampled uniformly at ``t_s``."""
    cfg = setup or SimulationSetup()
    rng = np.random.default_rng(seed)
    t = np.asarray(t_s, dtype=np.float64)
    n = t.size

    # trunk: slow turn, sway, translation (smooth random sinusoids)
    def smooth(amplitude: float, low_hz: float, high_hz: float) -> FloatArray:
        f = rng.uniform(low_hz, high_hz, size=2)
        phase = rng.uniform(0, 2 * math.pi, size=2)
        waves = np.sin(2 * math.pi * f[:, None] * t[None, :] + phase[:, None])
        return np.asarray(amplitude * 0.5 * waves.sum(axis=0))

    fade = np.clip((t - t[0] - cfg.calm_s) / 2.0, 0.0, 1.0)
    fade = fade * fade * (3 - 2 * fade)  # smoothstep: no acceleration jump
    turn = np.radians(smooth(cfg.trunk_turn_deg, 0.01, 0.05))
    heading = rng.uniform(0, 2 * math.pi) + fade * (turn - turn[0]) + turn[0]
    lean = fade[:, None] * np.stack(
        [np.radians(smooth(cfg.trunk_lean_deg, 0.05, 0.2)), np.zeros(n),
         np.radians(smooth(cfg.trunk_lean_deg, 0.05, 0.2))], axis=1
    )  # fmt: skip
    r_trunk = _rot_z(heading) @ NEUTRAL_FACING_NORTH @ axis_angle_matrix(lean)
    r_head = r_trunk @ neck_rotation
    origin = fade[:, None] * np.stack(
        [smooth(cfg.trunk_translation_m, 0.1, 0.5) for _ in range(3)], axis=1
    )
    p_trunk = origin + r_trunk @ TRUNK_SENSOR_LEVER_M
    p_head = origin + r_head @ HEAD_SENSOR_LEVER_M

    mounts = {"head": _random_rotation(rng, cfg.misalignment_deg),
              "trunk": _random_rotation(rng, cfg.misalignment_deg)}  # fmt: skip
    return SimulatedSession(
        head=_render_imu(r_head, p_head, mounts["head"], t, cfg, rng, disturbed=True),
        trunk=_render_imu(r_trunk, p_trunk, mounts["trunk"], t, cfg, rng, disturbed=False),
        neck_rotation=np.asarray(neck_rotation),
        head_mount=mounts["head"],
        trunk_mount=mounts["trunk"],
    )


def _render_imu(
    r_segment: FloatArray,
    position: FloatArray,
    mount: FloatArray,
    t: FloatArray,
    cfg: SimulationSetup,
    rng: np.random.Generator,
    disturbed: bool,
) -> ImuRecording:
    """One sensor's recording: the segment's rotation and position seen through its mount,
    plus the sensor errors of ``cfg`` (biases, bias walk, noise, range); ``disturbed``: the
    magnetic disturbance of ``cfg`` over 40-50% of the session (the head sensor's)."""
    err = cfg.errors
    n = t.size
    dt = float(t[1] - t[0])
    r_sensor = r_segment @ mount
    to_sensor = np.swapaxes(r_sensor, 1, 2)
    gyr = _body_rates(r_sensor, dt)
    specific_force = _second_derivative(position, dt) + np.array([0.0, 0.0, GRAVITY_M_S2])
    acc = (to_sensor @ specific_force[..., None])[..., 0]
    walk = np.cumsum(rng.normal(size=(n, 3)), axis=0) * math.radians(
        err.gyr_bias_walk_deg_s_per_sqrt_s
    ) * math.sqrt(dt)  # fmt: skip
    gyr = gyr + rng.uniform(-1, 1, 3) * math.radians(err.gyr_bias_deg_s) + walk
    gyr += rng.normal(size=(n, 3)) * math.radians(err.gyr_noise_deg_s)
    if err.gyr_bias_warmup_deg_s:
        warm = 1.0 - np.exp(-(t - t[0]) / WARMUP_TAU_S)
        gyr += rng.uniform(-1, 1, 3) * math.radians(err.gyr_bias_warmup_deg_s) * warm[:, None]
    acc = (
        acc
        + rng.uniform(-1, 1, 3) * err.acc_bias_m_s2
        + rng.normal(size=(n, 3)) * err.acc_noise_m_s2
    )
    gyr_range = math.radians(err.gyr_range_deg_s)
    mag = None
    if cfg.magnetometer:
        dip = math.radians(EARTH_DIP_DEG)
        field_world = EARTH_FIELD_UT * np.array([0.0, math.cos(dip), -math.sin(dip)])
        world = np.broadcast_to(field_world, (n, 3)).copy()
        if disturbed and cfg.mag_disturbance_ut > 0:
            duration = max(float(t[-1] - t[0]), dt)
            span = (t - t[0] >= 0.4 * duration) & (t - t[0] < 0.5 * duration)
            world[span] += cfg.mag_disturbance_ut * np.array([1.0, 0.0, 0.0])
        noise = rng.normal(size=(n, 3)) * err.mag_noise_ut
        mag = (to_sensor @ world[..., None])[..., 0] + noise
    return ImuRecording(
        t_s=t.copy(),
        gyr_rad_s=np.clip(gyr, -gyr_range, gyr_range),
        acc_m_s2=np.clip(acc, -err.acc_range_m_s2, err.acc_range_m_s2),
        mag_ut=mag,
    )
