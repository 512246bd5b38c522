"""Training inputs as the hub measures them: fused angles with their error, filtered derivatives.

The dataset holds the model's exact kinematics (angles and analytic derivatives). The hub never
sees those: its angles come from two fused IMUs and its velocities and accelerations are the
Savitzky-Golay derivatives of those angles (``edge_runtime.contracts.neck_angles.neck_kinematics``,
0.15 s cubic, which passes 87% of a 3 Hz acceleration and 82% at 3.5 Hz). Measured on simulated
IMUs of unseen subjects doing everyday motion (``cervical_demo.hub_e2e``), the fused angles are off
by a slowly varying error of 0.7-2.0 degrees RMS per axis (calibration offset and heading drift;
rotation worst) plus 0.15-0.4 degrees of faster error, while the derivatives of the fused angles
are within 2-5 deg/s and 20-70 deg/s^2 of the same filter applied to the true angles. The angle
error is what costs: a network trained on exact kinematics lost 0.07 of its worst muscle's R²
(0.91 on filtered true angles, 0.84 on the hub's), the filter alone much less.

So for a share of the training subjects' trajectories the inputs are replaced by this view: the
true angles plus an error per axis (a constant offset, an Ornstein-Uhlenbeck drift and white
noise, sized to the measurements above), then the hub's own derivative filter over the result.
The targets stay the true forces, so the network learns the forces to expect given what the hub
measures rather than trusting each degree. Box frames are single points, not trajectories: they
get the angle error only. The choice of trajectories and every error are deterministic in
(seed, subject, motion id); validation and test frames are never changed (the held-out figures
stay against the exact kinematics; ``cervical bench generalisation --run`` measures the hub's).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.neck_angles import (
    DERIVATIVE_POLYORDER,
    DERIVATIVE_WINDOW_S,
    NECK_ACCELERATION_NAMES,
    NECK_ANGLE_NAMES,
    NECK_VELOCITY_NAMES,
    neck_kinematics,
)
from host_training.errors import HostTrainingError
from host_training.simulation.motions import motion_family

KINEMATIC_FEATURES = (*NECK_ANGLE_NAMES, *NECK_VELOCITY_NAMES, *NECK_ACCELERATION_NAMES)
DATASET_RATE_HZ = 100.0  # motions are sampled at 100 Hz, the hub's rate


class HubViewError(HostTrainingError, ValueError):
    """Settings of the hub view that cannot be applied."""


@dataclass(frozen=True)
class HubInputView:
    """How the hub's inputs differ from the exact kinematics (module docstring); per axis in
    NECK_ANGLE_NAMES order (extension, lateral bend, axial rotation)."""

    share: float = 0.5  # of the training trajectories shown as the hub sees them
    offset_deg: tuple[float, float, float] = (1.0, 1.0, 1.5)
    drift_deg: tuple[float, float, float] = (0.3, 0.3, 0.5)
    drift_time_constant_s: float = 2.0
    white_deg: float = 0.04

    def __post_init__(self) -> None:
        numbers = (*self.offset_deg, *self.drift_deg, self.white_deg)
        if not 0.0 <= self.share <= 1.0 or not math.isfinite(self.share):
            raise HubViewError(f"hub view share {self.share}: must be within 0..1")
        if len(self.offset_deg) != 3 or len(self.drift_deg) != 3:
            raise HubViewError("hub view offset and drift need one value per neck angle (3)")
        if not all(math.isfinite(v) and 0.0 <= v <= 20.0 for v in numbers):
            raise HubViewError(f"hub view angle errors {numbers}: must be within 0..20 degrees")
        if not 0.01 <= self.drift_time_constant_s <= 3600.0:
            raise HubViewError(
                f"hub view drift time constant {self.drift_time_constant_s} s: 0.01..3600"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings, and the hub's derivative filter they are seen through (the contract's,
        recorded for provenance; it is not a setting of the view)."""
        return {**asdict(self), "derivative_window_s": DERIVATIVE_WINDOW_S,
                "derivative_polyorder": DERIVATIVE_POLYORDER}  # fmt: skip

    def angle_error_rad(self, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
        """(n, 3) error of the fused angles over n samples at the dataset's rate."""
        from scipy.signal import lfilter

        offset = rng.normal(0.0, self.offset_deg)
        # Ornstein-Uhlenbeck drift with stationary SD drift_deg, started from its stationary law
        decay = math.exp(-1.0 / (DATASET_RATE_HZ * self.drift_time_constant_s))
        shocks = rng.normal(0.0, 1.0, (n, 3)) * np.asarray(self.drift_deg) * math.sqrt(1 - decay**2)
        shocks[0] = rng.normal(0.0, self.drift_deg)
        drift = lfilter([1.0], [1.0, -decay], shocks, axis=0)  # level = decay * level + shock
        white = rng.normal(0.0, self.white_deg, (n, 3))
        return np.radians(offset + drift + white)


def apply_hub_view(
    x: npt.NDArray[np.float32],
    features: tuple[str, ...],
    subject_id: npt.NDArray[np.int64],
    motion_code: npt.NDArray[np.int32],
    frame: npt.NDArray[np.int32],
    motion_ids: list[str],
    rows: npt.NDArray[np.bool_],
    view: HubInputView,
    seed: int,
) -> dict[str, int]:
    """Replace, in place, the kinematic columns of ``x`` for a ``view.share`` of the
    trajectories among ``rows`` with the hub's view of them; returns how many trajectories and
    frames were changed."""
    missing = [f for f in KINEMATIC_FEATURES if f not in features]
    if missing:
        raise HubViewError(f"the hub view needs the kinematic features; missing {missing}")
    angle_cols = [features.index(f) for f in NECK_ANGLE_NAMES]
    kin_cols = [features.index(f) for f in KINEMATIC_FEATURES]
    selected = np.flatnonzero(rows)
    if selected.size == 0:  # a shard of validation subjects, or of none of a curve's subjects
        return {"trajectories": 0, "frames": 0}
    order = selected[np.lexsort((frame[selected], motion_code[selected], subject_id[selected]))]
    keys = np.stack([subject_id[order], motion_code[order]], axis=1)
    starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)])
    stops = np.r_[starts[1:], len(order)]
    motion_crc = [zlib.crc32(m.encode()) for m in motion_ids]
    is_box = [motion_family(m) == "box" for m in motion_ids]
    changed_trajectories = changed_frames = 0
    for start, stop in zip(starts, stops, strict=True):
        group = order[start:stop]
        code = int(motion_code[group[0]])
        rng = np.random.default_rng([seed, int(subject_id[group[0]]), motion_crc[code], 0x4B5])
        if rng.random() >= view.share:
            continue
        error = view.angle_error_rad(len(group), rng)
        if is_box[code]:
            x[group[:, None], angle_cols] += error.astype(np.float32)
        else:
            contiguous = np.all(np.diff(frame[group]) == 1)
            angles = x[group][:, angle_cols].astype(np.float64) + error
            if not contiguous:  # a trajectory with frames missing: angles only, no filter
                x[group[:, None], angle_cols] = angles.astype(np.float32)
            else:
                kin = neck_kinematics(angles, DATASET_RATE_HZ, np.ones(len(group), bool))
                x[group[:, None], kin_cols] = kin.astype(np.float32)
        changed_trajectories += 1
        changed_frames += len(group)
    return {"trajectories": changed_trajectories, "frames": changed_frames}
