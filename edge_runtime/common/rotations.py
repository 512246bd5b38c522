"""Small rotation helpers (numpy, vectorised): quaternions are (w, x, y, z), Hamilton, active."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def quat_to_matrix(q: FloatArray) -> FloatArray:
    """(N, 4) unit quaternions -> (N, 3, 3) rotation matrices (frame -> reference)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def matrix_to_quat(r: FloatArray) -> FloatArray:
    """(N, 3, 3) rotation matrices -> (N, 4) quaternions with w >= 0 (Shepperd's method)."""
    r = np.asarray(r, dtype=np.float64)
    tr = np.trace(r, axis1=-2, axis2=-1)
    diag = np.stack([tr, r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]], axis=-1)
    k = np.argmax(diag, axis=-1)
    q = np.empty((*r.shape[:-2], 4))
    for case in range(4):
        m = k == case
        if not m.any():
            continue
        s = r[m]
        xy, yx = s[:, 0, 1], s[:, 1, 0]
        xz, zx = s[:, 0, 2], s[:, 2, 0]
        yz, zy = s[:, 1, 2], s[:, 2, 1]
        if case == 0:
            t = np.sqrt(1.0 + tr[m]) * 2
            q[m] = np.stack([0.25 * t, (zy - yz) / t, (xz - zx) / t, (yx - xy) / t], -1)
        elif case == 1:
            t = np.sqrt(1.0 + s[:, 0, 0] - s[:, 1, 1] - s[:, 2, 2]) * 2
            q[m] = np.stack([(zy - yz) / t, 0.25 * t, (xy + yx) / t, (xz + zx) / t], -1)
        elif case == 2:
            t = np.sqrt(1.0 + s[:, 1, 1] - s[:, 0, 0] - s[:, 2, 2]) * 2
            q[m] = np.stack([(xz - zx) / t, (xy + yx) / t, 0.25 * t, (yz + zy) / t], -1)
        else:
            t = np.sqrt(1.0 + s[:, 2, 2] - s[:, 0, 0] - s[:, 1, 1]) * 2
            q[m] = np.stack([(yx - xy) / t, (xz + zx) / t, (yz + zy) / t, 0.25 * t], -1)
    return np.where(q[..., :1] < 0, -q, q)


def axis_angle_matrix(rotvec: FloatArray) -> FloatArray:
    """(N, 3) rotation vectors (axis x angle, rad) -> (N, 3, 3) (Rodrigues)."""
    v = np.atleast_2d(np.asarray(rotvec, dtype=np.float64))
    angle = np.linalg.norm(v, axis=1)
    axis = v / np.where(angle > 1e-12, angle, 1.0)[:, None]
    return axis_rotations(axis, angle)


def axis_rotations(axis: FloatArray, angle: FloatArray) -> FloatArray:
    """Rotations by ``angle`` (N,) rad about unit ``axis`` ((3,) for all, or (N, 3)) -> (N, 3, 3)
    (Rodrigues, written out: the fast kinematics calls it for every joint of every frame)."""
    a = np.asarray(axis, dtype=np.float64)
    x, y, z = (a[0], a[1], a[2]) if a.ndim == 1 else (a[:, 0], a[:, 1], a[:, 2])  # scalars: faster
    c, s = np.cos(angle), np.sin(angle)
    t = 1.0 - c
    r = np.empty((len(angle), 3, 3))
    r[:, 0, 0] = t * x * x + c
    r[:, 0, 1] = t * x * y - s * z
    r[:, 0, 2] = t * x * z + s * y
    r[:, 1, 0] = t * x * y + s * z
    r[:, 1, 1] = t * y * y + c
    r[:, 1, 2] = t * y * z - s * x
    r[:, 2, 0] = t * x * z - s * y
    r[:, 2, 1] = t * y * z + s * x
    r[:, 2, 2] = t * z * z + c
    return r


def matrix_to_rotvec(r: FloatArray) -> FloatArray:
    """(N, 3, 3) -> (N, 3) rotation vectors (via quaternions; angle in [0, pi])."""
    q = matrix_to_quat(r)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1)
    angle = 2 * np.arctan2(sin_half, q[..., 0])
    scale = np.where(sin_half > 1e-12, angle / np.where(sin_half > 1e-12, sin_half, 1.0), 2.0)
    return np.asarray(q[..., 1:] * scale[..., None])


def mean_rotation(r: FloatArray) -> FloatArray:
    """Chordal L2 mean of (N, 3, 3) rotations: the SVD projection of their average."""
    u, _, vt = np.linalg.svd(np.mean(r, axis=0))
    d = np.sign(np.linalg.det(u @ vt))
    return np.asarray(u @ np.diag([1.0, 1.0, d]) @ vt)
