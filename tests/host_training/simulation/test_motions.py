from __future__ import annotations

import math

import numpy as np
import pytest

from host_training.model.anatomy import INDEPENDENT_COORDINATES, load_anatomy
from host_training.simulation.motions import (
    PlaneSplit,
    UnknownMotionSetError,
    default_motions,
    motion_set,
    trajectory,
)


@pytest.fixture(scope="module")
def split() -> PlaneSplit:
    return PlaneSplit.of(load_anatomy())


def _ranges() -> np.ndarray:
    c = {x.name: x for x in load_anatomy().coordinates}
    return np.radians([[c[n].range_min_deg, c[n].range_max_deg] for n in INDEPENDENT_COORDINATES])


def test_default_set_spans_families_speeds_and_stays_inside_the_ranges(split: PlaneSplit) -> None:
    specs = default_motions(7, 123)
    assert {s.family for s in specs} == {"single_plane", "diagonal", "circumduction", "hold",
                                         "random_smooth"}  # fmt: skip
    assert len({s.motion_id for s in specs}) == len(specs)
    speeds = {s.peak_speed_deg_s for s in specs}
    assert min(speeds) <= 30 and max(speeds) >= 300
    ranges = _ranges()
    for spec in specs:
        traj = trajectory(spec, split)
        assert np.isfinite(traj.q_rad).all() and np.isfinite(traj.qdd_rad_s2).all()
        assert (traj.q_rad >= ranges[:, 0] - 1e-12).all(), spec.motion_id
        assert (traj.q_rad <= ranges[:, 1] + 1e-12).all(), spec.motion_id
        np.testing.assert_allclose(np.diff(traj.t_s), 0.01)
        # starts at rest (within 0.06 deg/s: central differences straddle the start)
        assert np.abs(traj.qd_rad_s[0]).max() < 1e-3


def test_single_plane_strokes_reach_their_peak_speed(split: PlaneSplit) -> None:
    for spec in default_motions(7, 0):
        if spec.family != "single_plane":
            continue
        traj = trajectory(spec, split)
        plane_speed = np.abs(traj.qd_rad_s[:, :3] + traj.qd_rad_s[:, 3:]).max()
        assert math.degrees(plane_speed) == pytest.approx(spec.peak_speed_deg_s, rel=0.01)


def test_shaped_not_clipped_accelerations_stay_bounded(split: PlaneSplit) -> None:
    # clipping at the limits would show as acceleration spikes; smooth shaping keeps them modest
    for spec in default_motions(7, 5):
        traj = trajectory(spec, split)
        assert np.abs(traj.qdd_rad_s2).max() < 200.0, spec.motion_id


def test_sets_are_deterministic_and_personal() -> None:
    assert motion_set("default", 7, 3) == motion_set("default", 7, 3)
    assert motion_set("default", 7, 3) != motion_set("default", 7, 4)
    with pytest.raises(UnknownMotionSetError, match="'walking' does not exist"):
        motion_set("walking", 7, 0)


def test_split_shares_follow_the_ranges(split: PlaneSplit) -> None:
    assert split.upper_share[2] > 0.5  # atlanto-axial joint does most axial rotation
    assert split.upper_share[1] < 0.2  # lower spine does most lateral bending
    q = split.to_coordinates(np.array([[0.3, -0.2, 0.5]]))
    sums = q[0, :3] + q[0, 3:]
    np.testing.assert_allclose(sums, [0.3, -0.2, 0.5])
