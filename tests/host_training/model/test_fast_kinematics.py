from __future__ import annotations

import dataclasses

import numpy as np

from edge_runtime.contracts.neck_angles import (
    neck_angles_from_rotation,
    rotation_from_neck_angles,
)
from host_training.model.anatomy import INDEPENDENT_COORDINATES
from host_training.model.builder import build_model
from host_training.model.fast_kinematics import FastNeckKinematics
from host_training.model.kinematics import CoupledPoser, independent_ranges_rad
from host_training.model.personalise import personalise, reference_anthropometrics


def test_numpy_kinematics_equal_opensims_for_a_personalised_subject() -> None:
    anatomy = personalise(dataclasses.replace(reference_anthropometrics(), neck_length_m=0.095,
                                              shoulder_width_m=0.37, head_mass_kg=3.6))  # fmt: skip
    fast = FastNeckKinematics(anatomy)
    model = build_model(anatomy)
    state = model.initSystem()
    poser = CoupledPoser(model, state)
    ranges = independent_ranges_rad(model)
    q = np.random.default_rng(2).uniform(ranges[:, 0], ranges[:, 1], size=(30, 6))
    lengths, arms = fast.lengths_and_moment_arms(q)
    assert fast.muscle_names == poser.muscle_names
    for k in range(len(q)):
        np.testing.assert_allclose(lengths[k], poser.lengths_m(q[k]), atol=1e-12)
        np.testing.assert_allclose(arms[k], poser.moment_arms_m(q[k]), atol=1e-7)
        poser.set_posture(q[k])
        rot = model.getBodySet().get("skull").getTransformInGround(state).R()
        ours = fast.head_on_trunk_rotation(q[k : k + 1])[0]
        np.testing.assert_allclose(ours, [[rot.get(i, j) for j in range(3)] for i in range(3)],
                                   atol=1e-12)  # fmt: skip


def test_neck_angles_round_trip_and_match_single_plane_sums() -> None:
    angles = np.random.default_rng(0).uniform(-1, 1, size=(200, 3)) * [1.2, 0.6, 1.1]
    np.testing.assert_allclose(neck_angles_from_rotation(rotation_from_neck_angles(angles)),
                               angles, atol=1e-12)  # fmt: skip
    anatomy = personalise(reference_anthropometrics())
    fast = FastNeckKinematics(anatomy)

    def total_fraction(coordinate: str) -> float:  # the published fractions sum to 1 +- 0.002
        return sum(
            c.ratio for c in anatomy.couplers if c.independent_coordinate == coordinate
        ) + sum(x.ratio for x in anatomy.joint_axes if x.coordinate == coordinate)

    for plane, (upper, lower) in enumerate(INDEPENDENT_COORDINATES[i::3] for i in range(3)):
        q = np.zeros((1, 6))
        q[0, plane], q[0, plane + 3] = 0.1, 0.3  # upper and lower level, same plane
        out = neck_angles_from_rotation(fast.head_on_trunk_rotation(q))[0]
        expected = np.zeros(3)
        expected[plane] = 0.1 * total_fraction(upper) + 0.3 * total_fraction(lower)
        np.testing.assert_allclose(out, expected, atol=1e-12)


def test_analytic_moment_arms_equal_finite_differences() -> None:
    fast = FastNeckKinematics(personalise(reference_anthropometrics()))
    q = np.random.default_rng(5).uniform(-0.4, 0.4, size=(200, 6))
    lengths, arms = fast.lengths_and_moment_arms(q)
    lengths_fd, arms_fd = fast.lengths_and_moment_arms_fd(q)
    np.testing.assert_allclose(lengths, lengths_fd, atol=1e-15)
    np.testing.assert_allclose(arms, arms_fd, atol=1e-9)
