"""The one Rodrigues rotation (edge_runtime.common.rotations) against scipy's, per-row axes and
one shared axis (the fast kinematics' form)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from edge_runtime.common.rotations import axis_angle_matrix, axis_rotations, matrix_to_rotvec


def test_rodrigues_matches_scipy_for_rotation_vectors_and_a_shared_axis() -> None:
    rng = np.random.default_rng(4)
    rotvec = rng.normal(size=(200, 3)) * rng.uniform(0, 3, size=(200, 1))
    rotvec[0] = 0.0  # the identity
    np.testing.assert_allclose(
        axis_angle_matrix(rotvec), Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-12
    )
    axis = np.array([0.6, 0.0, 0.8])
    angle = rng.uniform(-np.pi, np.pi, size=50)
    expected = Rotation.from_rotvec(axis[None, :] * angle[:, None]).as_matrix()
    np.testing.assert_allclose(axis_rotations(axis, angle), expected, atol=1e-12)
    back = matrix_to_rotvec(axis_angle_matrix(rotvec[1:5]))  # angles in [0, pi], as scipy's
    np.testing.assert_allclose(back, Rotation.from_rotvec(rotvec[1:5]).as_rotvec(), atol=1e-9)
