"""The hub's view of training inputs: fused-angle error and the hub's own derivative filter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.contracts.feature_spec import DEFAULT_FEATURES
from edge_runtime.contracts.neck_angles import filtered_derivative, neck_kinematics
from host_training.learning.hub_view import HubInputView, HubViewError, apply_hub_view

RATE_HZ = 100.0
N = 400  # samples per trajectory


def _frames(n_subjects: int = 4, freq_hz: float = 1.0):
    """Per subject: one oscillation trajectory (exact derivatives) and one block of box frames."""
    motion_ids = ["oscillation_0", "box_0"]
    t = np.arange(N) / RATE_HZ
    w = 2 * math.pi * freq_hz
    amp = np.array([0.3, 0.2, 0.4])
    rows, sid, code, frame = [], [], [], []
    for s in range(n_subjects):
        angles = amp * np.sin(w * t)[:, None]
        vel = amp * w * np.cos(w * t)[:, None]
        acc = -amp * w**2 * np.sin(w * t)[:, None]
        body = np.tile([0.1, 0.4, 4.5, 75.0], (N, 1))
        rows.append(np.hstack([angles, vel, acc, body]))
        rows.append(np.random.default_rng(s).uniform(-1, 1, (N, 13)))
        sid += [s] * (2 * N)
        code += [0] * N + [1] * N
        frame += [*range(N), *range(N)]
    x = np.vstack(rows).astype(np.float32)
    return (x, np.array(sid, np.int64), np.array(code, np.int32), np.array(frame, np.int32),
            motion_ids)  # fmt: skip


def _apply(x, sid, code, frame, ids, view, seed=0, rows=None):
    rows = np.ones(len(x), bool) if rows is None else rows
    return apply_hub_view(x, DEFAULT_FEATURES, sid, code, frame, ids, rows, view, seed)


def test_deterministic_in_seed_and_only_given_rows_change():
    x, sid, code, frame, ids = _frames()
    a, b, c = x.copy(), x.copy(), x.copy()
    rows = sid < 2
    _apply(a, sid, code, frame, ids, HubInputView(share=1.0), rows=rows)
    _apply(b, sid, code, frame, ids, HubInputView(share=1.0), rows=rows)
    _apply(c, sid, code, frame, ids, HubInputView(share=1.0), seed=1, rows=rows)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a[~rows], x[~rows])
    assert (a[rows] != x[rows]).any(axis=1).all()
    # no rows at all (a shard of validation subjects only): nothing changes, nothing fails
    none = np.zeros(len(x), bool)
    assert _apply(c, sid, code, frame, ids, HubInputView(share=1.0), rows=none) == {
        "trajectories": 0, "frames": 0,
    }  # fmt: skip


def test_share_picks_whole_trajectories():
    x, sid, code, frame, ids = _frames(n_subjects=40)
    none = x.copy()
    assert _apply(none, sid, code, frame, ids, HubInputView(share=0.0))["trajectories"] == 0
    np.testing.assert_array_equal(none, x)
    half = x.copy()
    counts = _apply(half, sid, code, frame, ids, HubInputView(share=0.5))
    assert 20 <= counts["trajectories"] <= 60  # of 80, binomial
    for s in range(40):
        for k in range(2):
            g = (sid == s) & (code == k)
            changed = (half[g] != x[g]).any(axis=1)
            assert changed.all() or not changed.any()  # a trajectory is viewed whole or not


def test_trajectory_angle_error_and_the_hubs_filter():
    x, sid, code, frame, ids = _frames(n_subjects=30)
    view = HubInputView(share=1.0)
    viewed = x.copy()
    _apply(viewed, sid, code, frame, ids, view)
    traj = code == 0
    error_deg = np.degrees(viewed[traj][:, :3] - x[traj][:, :3])
    expected = np.sqrt(np.square(view.offset_deg) + np.square(view.drift_deg) + view.white_deg**2)
    rms = np.sqrt((error_deg**2).mean(axis=0))
    assert np.all(rms > 0.6 * expected) and np.all(rms < 1.5 * expected), (rms, expected)
    # derivatives are the contract's filter over the viewed angles, exactly
    g = traj & (sid == 3)
    kin = neck_kinematics(viewed[g][:, :3].astype(np.float64), RATE_HZ, np.ones(g.sum(), bool))
    np.testing.assert_allclose(viewed[g][:, 3:9], kin[:, 3:9], rtol=1e-4, atol=1e-3)
    # box frames are points: their angles carry the error, their derivatives stay exact
    box = code == 1
    np.testing.assert_array_equal(viewed[box][:, 3:], x[box][:, 3:])
    assert (viewed[box][:, :3] != x[box][:, :3]).all(axis=1).mean() > 0.99


def test_fast_oscillation_accelerations_pass_the_hubs_filter_as_on_the_hub():
    x, sid, code, frame, ids = _frames(n_subjects=1, freq_hz=3.0)
    exact = HubInputView(share=1.0, offset_deg=(0, 0, 0), drift_deg=(0, 0, 0), white_deg=0.0)
    viewed = x.copy()
    _apply(viewed, sid, code, frame, ids, exact)
    inner = slice(50, N - 50)
    traj = viewed[code == 0][inner]
    truth = x[code == 0][inner]
    np.testing.assert_allclose(traj[:, :3], truth[:, :3], atol=1e-6)  # no error, same angles
    gain = np.abs(traj[:, 6:9]).max(axis=0) / np.abs(truth[:, 6:9]).max(axis=0)
    np.testing.assert_allclose(gain, 0.9957, atol=0.002)  # 0.15 s quartic Savitzky-Golay at 3 Hz
    hub = filtered_derivative(truth[:, :3], 100.0, 2)  # the hub's own filter on the same angles
    np.testing.assert_allclose(traj[20:-20, 6:9], hub[20:-20], atol=1e-6 * np.abs(hub).max())


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(HubViewError, match="share"):
        HubInputView(share=1.5)
    with pytest.raises(HubViewError, match="angle errors"):
        HubInputView(offset_deg=(1.0, float("nan"), 1.0))
    with pytest.raises(HubViewError, match="time constant"):
        HubInputView(drift_time_constant_s=0.0)
    x, sid, code, frame, ids = _frames(n_subjects=1)
    with pytest.raises(HubViewError, match="neck_extension_rad"):
        apply_hub_view(x[:, 1:], DEFAULT_FEATURES[1:], sid, code, frame, ids,
                       np.ones(len(x), bool), HubInputView(), 0)  # fmt: skip
