"""Vectorised kinematics of the head–neck model in numpy: the fast path beside OpenSim's.

For N postures at once (the six independent coordinates, rad, ``(N, 6)``) it computes every body's
pose, every muscle's via-point path length and moment arms, and the head-on-trunk rotation. It
reads the same anatomy tables as the OpenSim builder and reproduces OpenSim's numbers to round-off
(tested against ``host_training.model.kinematics.CoupledPoser``, which asks OpenSim itself).

Joint convention (OpenSim CustomJoint): the child's joint frame is the parent's joint frame rotated
by ``rotation1`` then ``rotation2`` then ``rotation3``, each about its axis in the already-rotated
frame (body-fixed sequence); each angle is ``ratio x coordinate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_runtime.common.rotations import axis_rotations
from host_training.model.anatomy import INDEPENDENT_COORDINATES, Anatomy
from host_training.model.personalise import rotation_body_xyz

FloatArray = npt.NDArray[np.float64]
MOMENT_ARM_STEP_RAD = 1e-5


@dataclass(frozen=True)
class _Joint:
    parent: str
    child: str
    parent_rotation: FloatArray  # joint frame in parent body
    parent_offset_m: FloatArray
    child_rotation: FloatArray  # joint frame in child body
    child_offset_m: FloatArray
    axes: tuple[tuple[FloatArray, FloatArray], ...]  # (unit axis, ratio per independent coord (6,))


class FastNeckKinematics:
    """Kinematics of one (personalised) anatomy, vectorised over postures."""

    def __init__(self, anatomy: Anatomy) -> None:
        # Each coordinate as a linear map of the six independent ones: a (6,) row.
        rows: dict[str, FloatArray] = {}
        for k, name in enumerate(INDEPENDENT_COORDINATES):
            rows[name] = np.eye(6)[k]
        for c in anatomy.couplers:
            rows[c.dependent_coordinate] = (
                c.ratio * np.eye(6)[INDEPENDENT_COORDINATES.index(c.independent_coordinate)]
            )
        locked = {c.name for c in anatomy.coordinates if c.role == "thorax_locked"}
        self._joints: list[_Joint] = []
        pending = list(anatomy.joints)
        known = {"ground"}
        while pending:  # topological order: parents first
            j = next(j for j in pending if j.parent_body in known)
            pending.remove(j)
            known.add(j.child_body)
            axes = []
            for a in anatomy.joint_axes:
                if a.joint == j.name and a.coordinate not in locked:
                    unit = np.array(a.axis) / np.linalg.norm(a.axis)
                    axes.append((unit, a.ratio * rows[a.coordinate]))
            self._joints.append(
                _Joint(
                    j.parent_body, j.child_body,
                    rotation_body_xyz(j.parent_orientation_rad), np.array(j.parent_offset_m),
                    rotation_body_xyz(j.child_orientation_rad), np.array(j.child_offset_m),
                    tuple(axes),
                )
            )  # fmt: skip
        self._axis_coeffs = np.array([c for j in self._joints for _, c in j.axes])  # (K, 6)
        self.muscle_names = anatomy.muscle_names()
        points = [(p.body, np.array(p.location_m)) for m in anatomy.muscles for p in m.path]
        self._point_body = [b for b, _ in points]
        self._point_xyz = np.array([xyz for _, xyz in points])  # (P, 3)
        counts = [len(m.path) for m in anatomy.muscles]
        starts = np.cumsum([0, *counts[:-1]])
        # segment k joins point k and k+1 within a muscle; segment_muscle maps it to its muscle
        self._seg_a = np.concatenate(
            [s + np.arange(c - 1) for s, c in zip(starts, counts, strict=True)]
        )
        self._seg_muscle = np.repeat(np.arange(len(counts)), [c - 1 for c in counts])
        self._bodies_with_points = sorted(set(self._point_body))
        self._point_index = {b: [i for i, pb in enumerate(self._point_body) if pb == b]
                             for b in self._bodies_with_points}  # fmt: skip
        self._build_crossings()

    def _build_crossings(self) -> None:
        """Which joint axes each path segment crosses (the only ones it has a moment arm about)."""
        upstream: dict[str, set[int]] = {"ground": set()}
        k = 0
        for j in self._joints:
            own = set(range(k, k + len(j.axes)))
            k += len(j.axes)
            upstream[j.child] = upstream[j.parent] | own
        rows = []  # (segment, axis, distal point, sign)
        for s, a in enumerate(self._seg_a):
            ua = upstream[self._point_body[a]]
            ub = upstream[self._point_body[a + 1]]
            for axis in sorted(ua ^ ub):
                b_distal = axis in ub
                rows.append((s, axis, a + 1 if b_distal else a, 1.0 if b_distal else -1.0))
        self._x_seg, self._x_axis, self._x_point, sign = (
            np.array(c) for c in zip(*rows, strict=True)
        )
        # r_mj = -sum over crossings of sign * e.(u x (p - o)) * coeff[axis, j]: a sparse map from
        # crossings to (muscle, coordinate)
        from scipy.sparse import csr_matrix

        weights = sign[:, None] * self._axis_coeffs[self._x_axis]  # (X, 6)
        muscle = self._seg_muscle[self._x_seg]
        cols = muscle[:, None] * 6 + np.arange(6)[None, :]
        self._crossing_to_arm = csr_matrix(
            (-weights.ravel(), (np.repeat(np.arange(len(rows)), 6), cols.ravel())),
            shape=(len(rows), len(self.muscle_names) * 6),
        )

    def body_poses(self, q_rad: FloatArray) -> dict[str, tuple[FloatArray, FloatArray]]:
        """Rotation (N, 3, 3) and origin (N, 3) of every body in ground at postures ``q_rad``."""
        return self._forward(q_rad)[0]

    def _forward(
        self, q_rad: FloatArray
    ) -> tuple[dict[str, tuple[FloatArray, FloatArray]], FloatArray, FloatArray]:
        """Body poses; each joint axis's world direction (N, K, 3) and a point on it (N, K, 3)."""
        q = np.atleast_2d(np.asarray(q_rad, dtype=np.float64))
        n = q.shape[0]
        poses = {"ground": (np.broadcast_to(np.eye(3), (n, 3, 3)), np.zeros((n, 3)))}
        axes_u, axes_o = [], []
        for j in self._joints:
            r_p, o_p = poses[j.parent]
            r = r_p @ j.parent_rotation
            origin = o_p + r_p @ j.parent_offset_m
            for unit, coeffs in j.axes:
                axes_u.append(r @ unit)  # body-fixed sequence: the axis turns with earlier ones
                axes_o.append(origin)
                r = r @ axis_rotations(unit, q @ coeffs)
            r_child = r @ j.child_rotation.T
            poses[j.child] = (r_child, origin - r_child @ j.child_offset_m)
        return poses, np.stack(axes_u, axis=1), np.stack(axes_o, axis=1)

    def _world_points(self, poses: dict[str, tuple[FloatArray, FloatArray]]) -> FloatArray:
        n = next(iter(poses.values()))[1].shape[0]
        world = np.empty((n, len(self._point_body), 3))
        for body, idx in self._point_index.items():
            r, o = poses[body]
            world[:, idx, :] = o[:, None, :] + np.einsum("nij,pj->npi", r, self._point_xyz[idx])
        return world

    def lengths_m(self, q_rad: FloatArray) -> FloatArray:
        """Musculotendon path lengths, (N, n_muscles)."""
        world = self._world_points(self.body_poses(q_rad))
        seg = np.linalg.norm(world[:, self._seg_a + 1] - world[:, self._seg_a], axis=2)
        # sum each muscle's segments: segments are stored muscle by muscle
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self._seg_muscle))[:-1]])
        return np.asarray(np.add.reduceat(seg, bounds, axis=1))

    def lengths_and_moment_arms(self, q_rad: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Lengths (N, M) and moment arms r = -dL/dq (N, M, 6), analytically.

        A path segment changes length with a joint rotation only if the joint lies between its
        two points; then dL/dtheta = e . (u x (p_distal - o)) for the segment's unit vector e,
        the axis direction u through point o, and the distal point (sign flipped if the distal
        point is the segment's first). Summed over crossings and mapped to the six coordinates
        by the coupling ratios. ``lengths_and_moment_arms_fd`` is the finite-difference check.
        """
        poses, axes_u, axes_o = self._forward(q_rad)
        n = axes_u.shape[0]
        # component-major (point, xyz, frame): the crossings' gathers below copy whole contiguous
        # rows instead of picking 3 values per frame, which halves the moment arms' time
        world = np.ascontiguousarray(self._world_points(poses).transpose(1, 2, 0))
        u_axes = np.ascontiguousarray(axes_u.transpose(1, 2, 0))
        o_axes = np.ascontiguousarray(axes_o.transpose(1, 2, 0))
        delta = world[self._seg_a + 1] - world[self._seg_a]  # (S, 3, N)
        seg = np.sqrt(delta[:, 0] ** 2 + delta[:, 1] ** 2 + delta[:, 2] ** 2)  # (S, N)
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self._seg_muscle))[:-1]])
        lengths = np.add.reduceat(seg, bounds, axis=0).T
        unit = delta[self._x_seg] / seg[self._x_seg, None, :]  # (X, 3, N)
        lever = world[self._x_point] - o_axes[self._x_axis]
        u = u_axes[self._x_axis]
        # e . (u x lever), written out (plain IEEE operations: the same bits on every machine)
        term = (
            unit[:, 0] * (u[:, 1] * lever[:, 2] - u[:, 2] * lever[:, 1])
            + unit[:, 1] * (u[:, 2] * lever[:, 0] - u[:, 0] * lever[:, 2])
            + unit[:, 2] * (u[:, 0] * lever[:, 1] - u[:, 1] * lever[:, 0])
        )  # (X, N)
        arms = np.asarray(self._crossing_to_arm.T @ term).T.reshape(n, -1, 6)
        return np.asarray(lengths), arms

    def lengths_and_moment_arms_fd(
        self, q_rad: FloatArray, step_rad: float = MOMENT_ARM_STEP_RAD
    ) -> tuple[FloatArray, FloatArray]:
        """Lengths (N, M) and moment arms r = -dL/dq (N, M, 6), central differences, one batch."""
        q = np.atleast_2d(np.asarray(q_rad, dtype=np.float64))
        n = q.shape[0]
        steps = np.concatenate([np.zeros((1, 6)), step_rad * np.eye(6), -step_rad * np.eye(6)])
        batch = (q[None, :, :] + steps[:, None, :]).reshape(-1, 6)
        lengths = self.lengths_m(batch).reshape(13, n, -1)
        arms = -(lengths[1:7] - lengths[7:13]) / (2.0 * step_rad)  # (6, N, M)
        return lengths[0], np.moveaxis(arms, 0, 2)

    def head_on_trunk_rotation(self, q_rad: FloatArray) -> FloatArray:
        """Skull orientation relative to the thorax, (N, 3, 3)."""
        poses = self.body_poses(q_rad)
        r_thorax, _ = poses["spine"]
        r_skull, _ = poses["skull"]
        return np.asarray(np.swapaxes(r_thorax, 1, 2) @ r_skull)
