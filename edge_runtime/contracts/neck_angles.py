"""The three neck angles: how a head-on-trunk rotation becomes the model's inputs.

One definition for the dataset (from the model's kinematics) and the hub (from two fused IMUs).
The rotation is the head (skull) frame relative to the upper-trunk (thorax) frame, both with x
anterior, y up, z right at the neutral posture. It is decomposed as R = Rz(e) Rx(b) Ry(r)
(intrinsic z-x-y, the order of the model's joints):

- ``neck_extension_rad`` e about z: + extension (face up), - flexion;
- ``neck_lateral_bend_right_rad`` b about x: + right ear towards the right shoulder;
- ``neck_axial_rotation_left_rad`` r about y: + face turning left.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

NECK_ANGLE_NAMES: tuple[str, str, str] = (
    "neck_extension_rad",
    "neck_lateral_bend_right_rad",
    "neck_axial_rotation_left_rad",
)
NECK_VELOCITY_NAMES = tuple(n.replace("_rad", "_rad_s") for n in NECK_ANGLE_NAMES)
NECK_ACCELERATION_NAMES = tuple(n.replace("_rad", "_rad_s2") for n in NECK_ANGLE_NAMES)


def neck_angles_from_rotation(rotation: FloatArray) -> FloatArray:
    """(N, 3, 3) head-in-trunk rotation matrices -> (N, 3) angles (rad), NECK_ANGLE_NAMES order."""
    r = np.asarray(rotation, dtype=np.float64)
    extension = np.arctan2(-r[..., 0, 1], r[..., 1, 1])
    bend = np.arcsin(np.clip(r[..., 2, 1], -1.0, 1.0))
    rotation_left = np.arctan2(-r[..., 2, 0], r[..., 2, 2])
    return np.stack([extension, bend, rotation_left], axis=-1)


def rotation_from_neck_angles(angles: FloatArray) -> FloatArray:
    """Inverse of ``neck_angles_from_rotation``: (N, 3) angles -> (N, 3, 3) rotations."""
    a = np.atleast_2d(np.asarray(angles, dtype=np.float64))
    ce, se = np.cos(a[:, 0]), np.sin(a[:, 0])
    cb, sb = np.cos(a[:, 1]), np.sin(a[:, 1])
    cr, sr = np.cos(a[:, 2]), np.sin(a[:, 2])
    r = np.empty((a.shape[0], 3, 3))
    r[:, 0] = np.stack([ce * cr - se * sb * sr, -se * cb, ce * sr + se * sb * cr], axis=1)
    r[:, 1] = np.stack([se * cr + ce * sb * sr, ce * cb, se * sr - ce * sb * cr], axis=1)
    r[:, 2] = np.stack([-cb * sr, sb, cb * cr], axis=1)
    return r


# The hub's derivative filter: Savitzky-Golay over 0.15 s (15 samples at 100 Hz, 70 ms of
# latency), quartic. In the interior a quartic and a cubic give the same velocities (odd
# derivatives agree for orders 2k-1 and 2k); for accelerations the quartic follows fast motion:
# on everyday motion of unseen subjects from simulated IMUs the acceleration error is 43-53
# deg/s² RMS per axis against 133-174 for the cubic, almost all of which was the cubic's own lag
# and attenuation (it reads 132-165 on exact angles), and the forces end to end gain 0.011 in
# their worst muscle's R² and 0.012 in the median (`cervical bench generalisation`).
DERIVATIVE_WINDOW_S = 0.15
DERIVATIVE_POLYORDER = 4
# A run shorter than the window is fitted whole; on a handful of samples a quartic would follow
# their noise, so such runs keep a cubic (or less, down to what the samples can fit).
SHORT_RUN_POLYORDER = 3


def savgol_coefficients(window: int, polyorder: int, deriv: int, delta_s: float) -> FloatArray:
    """Savitzky–Golay convolution weights for the centre sample (scipy's ``savgol_coeffs``)."""
    if window % 2 != 1 or window <= polyorder:
        raise ValueError(f"Savitzky-Golay window {window} must be odd and > polyorder {polyorder}")
    half = window // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    vander = np.vander(x, polyorder + 1, increasing=True)  # (window, p+1)
    pinv = np.linalg.pinv(vander)  # row k: weights for the k-th coefficient
    return np.asarray(pinv[deriv] * math.factorial(deriv) / delta_s**deriv)


def filtered_derivative(values: FloatArray, rate_hz: float, deriv: int,
                        window_s: float = DERIVATIVE_WINDOW_S,
                        polyorder: int = DERIVATIVE_POLYORDER) -> FloatArray:  # fmt: skip
    """Smoothed derivative of uniformly sampled (N, K) values, Savitzky–Golay, along axis 0.

    The window covers ``window_s`` (rounded to an odd number of samples). The first and last half
    windows use the polynomial fitted to the edge window (scipy's ``mode="interp"``), so the edges
    carry no padding artefacts. Fewer samples than a window: the derivative of a fit over all
    samples, of order at most ``SHORT_RUN_POLYORDER``.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    window = max(polyorder + 2, round(window_s * rate_hz) | 1)
    if n < window:
        window = n if n % 2 == 1 else n - 1
        polyorder = min(polyorder, SHORT_RUN_POLYORDER)
    if window <= polyorder:
        return np.zeros_like(v)
    delta = 1.0 / rate_hz
    half = window // 2
    weights = savgol_coefficients(window, polyorder, deriv, delta)
    out = np.empty_like(v)
    # interior: correlation with the centred weights
    windows = np.lib.stride_tricks.sliding_window_view(v, window, axis=0)  # (n-w+1, K, w)
    out[half : n - half] = windows @ weights
    # edges: evaluate the derivative of the edge window's fitted polynomial
    x = np.arange(window, dtype=np.float64)
    vander = np.vander(x, polyorder + 1, increasing=True)
    for rows, block in ((slice(0, half), v[:window]), (slice(n - half, n), v[n - window :])):
        coef = np.linalg.lstsq(vander, block, rcond=None)[0]  # (p+1, K)
        where = x[:half] if rows.start == 0 else x[window - half :]
        deriv_poly = np.polynomial.polynomial.polyder(coef, deriv, axis=0)
        out[rows] = np.polynomial.polynomial.polyval(where, deriv_poly).T / delta**deriv
    return out


def neck_kinematics(
    angles_rad: FloatArray, rate_hz: float, valid: npt.NDArray[np.bool_]
) -> FloatArray:
    """(N, 3) angles -> (N, 9) angles, velocities, accelerations (NECK_* order), the model's
    kinematic inputs. Derivatives are taken over each contiguous run of valid samples, so a gap
    never smears into its neighbours; invalid samples are NaN."""
    a = np.asarray(angles_rad, dtype=np.float64)
    out = np.full((a.shape[0], 9), np.nan)
    out[valid, :3] = a[valid]
    edges = np.diff(np.concatenate([[0], valid.astype(np.int8), [0]]))
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        out[start:stop, 3:6] = filtered_derivative(a[start:stop], rate_hz, 1)
        out[start:stop, 6:9] = filtered_derivative(a[start:stop], rate_hz, 2)
    return out
