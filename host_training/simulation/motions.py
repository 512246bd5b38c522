"""Head-on-trunk motion library: deterministic trajectories at 100 Hz in the six model coordinates.

Motions are designed in three anatomical angles (rad): extension (+) / flexion (-) about the model
z axis, lateral bending to the right (+) about x, axial rotation to the left (+) about y (model
axes: x anterior, y up, z right). Each angle is split between the upper (C0–C2: pitch1, roll1,
yaw1) and lower (C2–T1: pitch2, roll2, yaw2) cervical spine in proportion to their ranges of
motion (one constant share per plane, so the split is smooth through neutral):

    upper share = range(upper) / (range(upper) + range(lower))
    pitch 40/121 = 0.331, roll 12/78 = 0.154, yaw 76/130 = 0.585

(the atlanto-axial joint does most axial rotation, the lower spine most lateral bending). The
anatomical limits are those at which either level reaches its coordinate limit. Amplitudes stay
inside them by design: movement profiles are raised-cosine strokes, and random motions pass through
a smooth saturation (``limit * tanh(x / limit)``), so trajectories are shaped, never clipped.

A motion set is a list of ``MotionSpec`` (id, family, parameters, seed); every trajectory is a pure
function of its spec. Derivatives are analytic where simple and otherwise central differences of
the analytic trajectory with a 0.1 ms step (error far below the solvers' tolerances).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.training_run import MOTION_FAMILIES
from host_training.errors import DatasetError, UnknownMotionSetError
from host_training.model.anatomy import INDEPENDENT_COORDINATES, Anatomy
from host_training.simulation.everyday import FAMILY_DEFINITIONS, TRAJECTORY_FAMILIES, box_frames

__all__ = ["MOTION_FAMILIES", "UnknownMotionSetError"]  # re-exported: callers meet it here

FloatArray = npt.NDArray[np.float64]
SAMPLE_RATE_HZ = 100.0
PLANES = ("extension", "lateral_bend_right", "axial_rotation_left")
_UPPER = ("pitch1", "roll1", "yaw1")
_LOWER = ("pitch2", "roll2", "yaw2")
DERIVATIVE_STEP_S = 1e-4
REST_S = 0.2  # neutral hold before and after each stroke


@dataclass(frozen=True)
class PlaneSplit:
    """Upper-level share per plane and the anatomical limits (rad) implied by coordinate ranges."""

    upper_share: tuple[float, float, float]
    limits_rad: tuple[tuple[float, float], ...]  # per plane (negative limit, positive limit)

    @classmethod
    def of(cls, anatomy: Anatomy) -> PlaneSplit:
        ranges = {c.name: (math.radians(c.range_min_deg), math.radians(c.range_max_deg))
                  for c in anatomy.coordinates}  # fmt: skip
        shares, limits = [], []
        for up, low in zip(_UPPER, _LOWER, strict=True):
            span_up = ranges[up][1] - ranges[up][0]
            span_low = ranges[low][1] - ranges[low][0]
            s = span_up / (span_up + span_low)
            shares.append(s)
            lo = max(ranges[up][0] / s, ranges[low][0] / (1 - s))
            hi = min(ranges[up][1] / s, ranges[low][1] / (1 - s))
            limits.append((lo, hi))
        return cls(upper_share=(shares[0], shares[1], shares[2]), limits_rad=tuple(limits))

    def to_coordinates(self, angles: FloatArray) -> FloatArray:
        """(N, 3) anatomical angles -> (N, 6) coordinates in INDEPENDENT_COORDINATES order."""
        s = np.array(self.upper_share)
        upper, lower = angles * s, angles * (1.0 - s)
        order = {
            **dict(zip(_UPPER, upper.T, strict=True)),
            **dict(zip(_LOWER, lower.T, strict=True)),
        }
        return np.stack([order[name] for name in INDEPENDENT_COORDINATES], axis=1)


@dataclass(frozen=True)
class MotionSpec:
    """One motion: a family and its parameters; the trajectory is a pure function of this."""

    motion_id: str
    family: str  # one of MOTION_FAMILIES
    peak_speed_deg_s: float
    amplitude_fraction: float  # of the anatomical limit in the motion's direction
    direction: tuple[float, float, float] = (0.0, 0.0, 0.0)  # unit vector in the 3 planes
    seed: int = 0
    duration_s: float = 0.0  # holds and random motions; strokes derive theirs from the speed
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Trajectory:
    """Sampled motion: time (N,), coordinates and their first and second derivatives (N, 6);
    ``frames``: each row's frame number in the whole motion (None: all of them, 0..N-1)."""

    motion_id: str
    t_s: FloatArray
    q_rad: FloatArray
    qd_rad_s: FloatArray
    qdd_rad_s2: FloatArray
    frames: npt.NDArray[np.int64] | None = None

    def frame_numbers(self) -> npt.NDArray[np.int64]:
        return np.arange(len(self.t_s)) if self.frames is None else self.frames

    @classmethod
    def stack(cls, parts: list[Trajectory]) -> tuple[Trajectory, list[str]]:
        """Several trajectories as one batch of frames (for per-frame solvers), and each row's
        motion id."""
        ids = [p.motion_id for p in parts for _ in range(len(p.t_s))]

        def joined(field: str) -> FloatArray:
            return np.concatenate([getattr(p, field) for p in parts])

        first, last = parts[0].motion_id, parts[-1].motion_id  # named in solver errors
        stacked = cls(
            first if len(parts) == 1 else f"{first}..{last}",
            joined("t_s"),
            joined("q_rad"),
            joined("qd_rad_s"),
            joined("qdd_rad_s2"),
            np.concatenate([p.frame_numbers() for p in parts]),
        )
        return stacked, ids  # fmt: skip

    def take(self, rows: npt.NDArray[np.int64]) -> Trajectory:
        """These rows only (sorted frame numbers of this trajectory)."""
        return Trajectory(self.motion_id, self.t_s[rows], self.q_rad[rows], self.qd_rad_s[rows],
                          self.qdd_rad_s2[rows], self.frame_numbers()[rows])  # fmt: skip


def _limit_along(direction: FloatArray, split: PlaneSplit) -> float:
    """Largest scale a such that a x direction stays within every plane's limit."""
    scale = math.inf
    for d, (lo, hi) in zip(direction, split.limits_rad, strict=True):
        if d > 1e-12:
            scale = min(scale, hi / d)
        elif d < -1e-12:
            scale = min(scale, lo / d)
    return scale


def _angle_function(
    spec: MotionSpec, split: PlaneSplit
) -> tuple[Callable[[FloatArray], FloatArray], float]:
    """theta(t) -> (N, 3) anatomical angles, and the motion's duration (s)."""
    direction = np.array(spec.direction, dtype=np.float64)
    speed = math.radians(spec.peak_speed_deg_s)
    if spec.family in ("single_plane", "diagonal"):
        amp = spec.amplitude_fraction * _limit_along(direction, split)
        stroke = math.pi * amp / speed  # raised cosine: peak speed = pi * A / T
        total = 2 * REST_S + stroke

        def theta(t: FloatArray) -> FloatArray:
            u = np.clip((t - REST_S) / stroke, 0.0, 1.0)
            return (amp * 0.5 * (1.0 - np.cos(2.0 * np.pi * u)))[:, None] * direction

        return theta, total
    if spec.family == "circumduction":
        # ellipse in the extension x lateral-bending plane, eased in and out over a quarter turn
        a_ext = spec.amplitude_fraction * min(-split.limits_rad[0][0], split.limits_rad[0][1])
        a_lat = spec.amplitude_fraction * min(-split.limits_rad[1][0], split.limits_rad[1][1])
        omega = speed / max(a_ext, a_lat)
        turns = spec.extra.get("turns", 1.0)
        ramp = 0.5 * math.pi / omega
        body = 2.0 * math.pi * turns / omega
        total = 2 * REST_S + 2 * ramp + body

        def theta(t: FloatArray) -> FloatArray:
            tau = t - REST_S
            env = np.clip(np.minimum(tau, body + 2 * ramp - tau) / ramp, 0.0, 1.0)
            env = 0.5 * (1.0 - np.cos(np.pi * env))
            phase = omega * np.clip(tau, 0.0, body + 2 * ramp)
            out = np.zeros((t.shape[0], 3))
            out[:, 0] = env * a_ext * np.sin(phase)
            out[:, 1] = (
                env * a_lat * (1.0 - np.cos(phase)) * 0.5 * np.sign(spec.extra.get("side", 1.0))
            )
            return out

        return theta, total
    if spec.family == "hold":
        target = spec.amplitude_fraction * _limit_along(direction, split) * direction
        ramp = max(0.5, math.pi * float(np.linalg.norm(target)) / speed)

        def theta(t: FloatArray) -> FloatArray:
            u = np.clip(t / ramp, 0.0, 1.0)
            return (0.5 * (1.0 - np.cos(np.pi * u)))[:, None] * target

        return theta, ramp + spec.duration_s
    if spec.family == "random_smooth":
        rng = np.random.default_rng(spec.seed)
        n_comp = 5
        freq = rng.uniform(0.1, 1.0, size=(3, n_comp))
        phase = rng.uniform(0, 2 * np.pi, size=(3, n_comp))
        weight = rng.uniform(0.2, 1.0, size=(3, n_comp))
        # scale so that the peak angular speed of the unsaturated signal is about the target
        peak = np.sum(weight * 2 * np.pi * freq, axis=1)
        limits = np.array([min(-lo, hi) for lo, hi in split.limits_rad]) * spec.amplitude_fraction
        gain = np.minimum(speed / peak, 1.5 * limits / np.sum(weight, axis=1))
        duration = spec.duration_s

        def theta(t: FloatArray) -> FloatArray:
            env = np.clip(np.minimum(t, duration - t) / 0.5, 0.0, 1.0)
            env = 0.5 * (1.0 - np.cos(np.pi * env))
            x = np.einsum("pk,npk->np", weight, np.sin(2 * np.pi * freq * t[:, None, None] + phase))
            raw = env[:, None] * gain * x
            return np.asarray(limits * np.tanh(raw / limits))

        return theta, duration
    if spec.family in TRAJECTORY_FAMILIES:
        return TRAJECTORY_FAMILIES[spec.family](spec, split.limits_rad)
    raise ValueError(f"motion {spec.motion_id}: unknown family {spec.family!r}")


def trajectory(spec: MotionSpec, split: PlaneSplit) -> Trajectory:
    """Sample ``spec`` at 100 Hz (t = 0 .. duration), coordinates and derivatives. A ``box``
    spec is ``duration_s * 100`` independent frames (``simulation.everyday``), not a motion.
    A spec with ``extra["keep_fraction"]`` keeps that share of its frames (at least one), drawn
    without replacement by a generator seeded from the spec: the same rows as the whole motion's.
    An analytic motion is evaluated at the kept instants only (its angle function is pointwise in
    time, so the rows are bit for bit the whole motion's; tested)."""
    keep = spec.extra.get("keep_fraction")
    if spec.family == "box":  # independent random frames: drawn together, then kept
        n = round(spec.duration_s * SAMPLE_RATE_HZ)
        angles, velocity, acceleration = box_frames(spec, split.limits_rad, n)
        t = np.arange(n) / SAMPLE_RATE_HZ
        q, qd, qdd = (split.to_coordinates(a) for a in (angles, velocity, acceleration))
        whole = Trajectory(spec.motion_id, t, q, qd, qdd)
        return whole if keep is None else whole.take(_kept_rows(spec, n, keep))
    theta, duration = _angle_function(spec, split)
    n = round(duration * SAMPLE_RATE_HZ) + 1
    rows = None if keep is None else _kept_rows(spec, n, keep)
    t = (np.arange(n) if rows is None else rows) / SAMPLE_RATE_HZ
    h = DERIVATIVE_STEP_S
    th0, thp, thm = theta(t), theta(t + h), theta(t - h)
    q = split.to_coordinates(th0)
    qd = split.to_coordinates((thp - thm) / (2 * h))
    qdd = split.to_coordinates((thp - 2 * th0 + thm) / (h * h))
    return Trajectory(spec.motion_id, t, q, qd, qdd, rows)


def _kept_rows(spec: MotionSpec, n: int, keep: float) -> npt.NDArray[np.int64]:
    """``keep`` of a motion's ``n`` frames, sorted, seeded from the spec."""
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return np.sort(rng.choice(n, size=min(n, max(1, round(keep * n))), replace=False))


def _unit(*v: float) -> tuple[float, float, float]:
    a = np.array(v, dtype=np.float64)
    a = a / np.linalg.norm(a)
    return (float(a[0]), float(a[1]), float(a[2]))


SINGLE_DIRECTIONS = {
    "flexion": _unit(-1, 0, 0), "extension": _unit(1, 0, 0),
    "bend_right": _unit(0, 1, 0), "bend_left": _unit(0, -1, 0),
    "rotate_left": _unit(0, 0, 1), "rotate_right": _unit(0, 0, -1),
}  # fmt: skip
DIAGONAL_DIRECTIONS = {
    "flexion_bend_right": _unit(-1, 1, 0), "extension_bend_left": _unit(1, -1, 0),
    "flexion_rotate_left": _unit(-1, 0, 1), "extension_rotate_right": _unit(1, 0, -1),
    "bend_right_rotate_right": _unit(0, 1, -1), "oblique_all": _unit(-1, 1, 1),
}  # fmt: skip


def default_motions(seed: int, subject_id: int) -> list[MotionSpec]:
    """The default motion set for one subject (deterministic in seed and subject).

    6 single-plane strokes x 3 speeds (30, 120, 300 deg/s), 6 combined/diagonal strokes at
    90 deg/s, 2 circumductions (60 and 150 deg/s), 2 holds (4 s) and 2 random smooth motions (6 s).
    Amplitudes vary per subject between 70% and 95% of the anatomical limit.
    """
    rng = np.random.default_rng([seed, subject_id, 0x6D6F74])
    specs: list[MotionSpec] = []
    for name, d in SINGLE_DIRECTIONS.items():
        for speed in (30.0, 120.0, 300.0):
            specs.append(MotionSpec(f"single_{name}_{int(speed)}", "single_plane", speed,
                                    float(rng.uniform(0.7, 0.95)), d))  # fmt: skip
    for name, d in DIAGONAL_DIRECTIONS.items():
        specs.append(MotionSpec(f"diagonal_{name}_90", "diagonal", 90.0,
                                float(rng.uniform(0.7, 0.95)), d))  # fmt: skip
    for speed, side in ((60.0, 1.0), (150.0, -1.0)):
        specs.append(MotionSpec(f"circumduction_{int(speed)}", "circumduction", speed,
                                float(rng.uniform(0.6, 0.85)), extra={"side": side}))  # fmt: skip
    for k in range(2):
        d = _unit(*rng.normal(size=3))
        specs.append(MotionSpec(f"hold_{k}", "hold", 60.0, float(rng.uniform(0.2, 0.6)), d,
                                duration_s=4.0))  # fmt: skip
    for k in range(2):
        specs.append(MotionSpec(f"random_smooth_{k}", "random_smooth", 120.0, 0.8,
                                seed=int(rng.integers(2**31)), duration_s=6.0))  # fmt: skip
    return specs


def tiny_motions(seed: int, subject_id: int) -> list[MotionSpec]:
    """A short set for tests and the quick demo: one of each family, ~5 s in all."""
    rng = np.random.default_rng([seed, subject_id, 0x6D6F74])
    return [
        MotionSpec("single_flexion_120", "single_plane", 120.0, 0.8, SINGLE_DIRECTIONS["flexion"]),
        MotionSpec("diagonal_flexion_rotate_left_90", "diagonal", 90.0, 0.7,
                   DIAGONAL_DIRECTIONS["flexion_rotate_left"]),
        MotionSpec("circumduction_150", "circumduction", 150.0, 0.6, extra={"side": 1.0}),
        MotionSpec("hold_0", "hold", 60.0, 0.4, _unit(1, 1, 1), duration_s=0.5),
        MotionSpec("random_smooth_0", "random_smooth", 120.0, 0.8,
                   seed=int(rng.integers(2**31)), duration_s=1.5),
    ]  # fmt: skip


def everyday_motions(seed: int, subject_id: int) -> list[MotionSpec]:
    """The default set plus everyday families and the input-box sampler
    (``simulation.everyday``) for one subject (deterministic in seed and subject):

    3 point-to-point sequences of 6 moves, 6 oscillations stratified over 0.3-3.5 Hz (3 s each),
    2 sway holds (3 s), 2 multi-axis motions (8 s, 40-300 deg/s) and 3 x 1,024 box frames;
    about 8,500 frames on top of the default set's ~9,000.
    """
    rng = np.random.default_rng([seed, subject_id, 0x657679])
    specs = default_motions(seed, subject_id)

    def seed_() -> int:
        return int(rng.integers(2**31))

    for k in range(3):
        specs.append(MotionSpec(f"point_to_point_{k}", "point_to_point", 0.0, 0.0,
                                seed=seed_(), extra={"moves": 6.0}))  # fmt: skip
    low, high = 0.3, 3.5
    for k in range(6):
        hz = low + (k + float(rng.random())) * (high - low) / 6
        planar = rng.random() < 0.5  # half along one plane, half along a random direction
        d = _unit(*np.eye(3)[int(rng.integers(3))]) if planar else _unit(*rng.normal(size=3))
        specs.append(MotionSpec(f"oscillation_{k}", "oscillation", 0.0,
                                float(rng.uniform(0.3, 1.0)), d, seed=seed_(), duration_s=3.0,
                                extra={"frequency_hz": round(hz, 4)}))  # fmt: skip
    for k in range(2):
        specs.append(MotionSpec(f"sway_hold_{k}", "sway_hold", 0.0, 0.0, seed=seed_(),
                                duration_s=3.0))  # fmt: skip
    for k in range(2):
        specs.append(MotionSpec(f"multi_axis_{k}", "multi_axis",
                                float(rng.uniform(40.0, 300.0)), 0.0, seed=seed_(),
                                duration_s=8.0))  # fmt: skip
    for k in range(3):
        specs.append(MotionSpec(f"box_{k}", "box", 0.0, 0.0, seed=seed_(), duration_s=10.24))
    return specs


# The population-scale profile (``cervical bench scale``) keeps this share of every everyday
# motion's frames: about 580 of a subject's ~18,700. Static optimisation is per frame and every
# frame is a function of its motion alone, so the kept frames are exactly those rows of the
# everyday set (tested); what it saves is the per-frame inverse dynamics and optimisation.
POPULATION_KEEP_FRACTION = 1 / 32


def population_motions(seed: int, subject_id: int) -> list[MotionSpec]:
    """The everyday set at population scale: every motion keeps POPULATION_KEEP_FRACTION of its
    frames, the input-box sampler draws that share of its frames."""
    specs = []
    for spec in everyday_motions(seed, subject_id):
        if spec.family == "box":  # independent frames: simply fewer of them
            n = max(1, round(spec.duration_s * SAMPLE_RATE_HZ * POPULATION_KEEP_FRACTION))
            specs.append(replace(spec, duration_s=n / SAMPLE_RATE_HZ))
        else:
            specs.append(
                replace(spec, extra={**spec.extra, "keep_fraction": POPULATION_KEEP_FRACTION})
            )
    return specs


MOTION_SETS: dict[str, Callable[[int, int], list[MotionSpec]]] = {
    "default": default_motions,
    "tiny": tiny_motions,
    "everyday": everyday_motions,
    "population": population_motions,
}


def motion_set(name: str, seed: int, subject_id: int) -> list[MotionSpec]:
    if name not in MOTION_SETS:
        raise UnknownMotionSetError(name, sorted(MOTION_SETS))
    return MOTION_SETS[name](seed, subject_id)


_FAMILY_PREFIXES = {"single_": "single_plane", "diagonal_": "diagonal",
                    "circumduction_": "circumduction", "hold_": "hold",
                    "random_smooth_": "random_smooth", "point_to_point_": "point_to_point",
                    "oscillation_": "oscillation", "sway_hold_": "sway_hold",
                    "multi_axis_": "multi_axis", "box_": "box"}  # fmt: skip


def motion_family(motion_id: str) -> str:
    """The family of a motion from its id (ids start with their family's prefix)."""
    for prefix, family in _FAMILY_PREFIXES.items():
        if motion_id.startswith(prefix):
            return family
    raise DatasetError(f"motion id {motion_id!r} belongs to no known family {MOTION_FAMILIES}")


def family_definitions(name: str, seed: int) -> dict[str, dict[str, object]]:
    """The sampler definitions of the everyday families a motion set uses (for manifests)."""
    used = {s.family for s in motion_set(name, seed, 0)}
    return {f: FAMILY_DEFINITIONS[f] for f in sorted(used & set(FAMILY_DEFINITIONS))}


def motion_set_digest(name: str, seed: int) -> str:
    """A short hash of the motion set's definition for subject 0 and of the samplers of its
    everyday families (recorded in manifests)."""
    specs: list[object] = [s.to_dict() for s in motion_set(name, seed, 0)]
    definitions = family_definitions(name, seed)
    payload = json.dumps([*specs, definitions] if definitions else specs, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
