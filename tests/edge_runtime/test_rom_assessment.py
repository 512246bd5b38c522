"""The range-of-motion assessment on protocol trajectories, bad data and its derivative filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import savgol_filter

from edge_runtime.contracts.neck_angles import (
    DERIVATIVE_POLYORDER,
    SHORT_RUN_POLYORDER,
    filtered_derivative,
)
from edge_runtime.contracts.rom_assessment import (
    SECTORS,
    AssessmentConfig,
    AssessmentError,
    RomAssessment,
    assess_session,
    sparc,
)
from edge_runtime.synthetic import protocol_angles, sector_limit_rad
from tests.edge_runtime.test_envelope import box_envelope


def _protocol(reach: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    env = box_envelope()
    fractions = {s: 1.0 for s in SECTORS} | (reach or {})
    t, angles, _, _ = protocol_angles(
        {s: f * sector_limit_rad(env, s) for s, f in fractions.items()}
    )
    return t, angles


def test_full_protocol_is_normal_and_a_restriction_is_flagged() -> None:
    env = box_envelope()
    t, angles = _protocol()
    healthy = assess_session(t, angles, env)
    assert healthy.flagged == () and healthy.insufficient == ()
    assert all(s.ratio == pytest.approx(1.0, abs=1e-6) for s in healthy.sectors)
    assert healthy.sector("extension").reached_deg == pytest.approx(70.0, abs=1e-6)
    assert healthy.movements >= 10 and healthy.sparc_median is not None
    t, angles = _protocol({"right_rotation": 0.4, "extension_left_bend": 0.5})
    restricted = assess_session(t, angles, env)
    assert restricted.flagged == ("extension_left_bend", "right_rotation")
    rot = restricted.sector("right_rotation")
    assert rot.expected_deg == pytest.approx(30.0) and rot.reached_deg == pytest.approx(12.0)
    assert rot.deficit_deg == pytest.approx(18.0) and rot.deficit_pct == pytest.approx(60.0)
    # a deficit under the threshold is reported but not flagged
    t, angles = _protocol({"flexion": 1.0 - 8.0 / 50.0})
    small = assess_session(t, angles, env)
    assert small.flagged == () and small.sector("flexion").deficit_deg == pytest.approx(8.0)
    assert assess_session(t, angles, env, AssessmentConfig(min_deficit_deg=5.0)).flagged == (
        "flexion",
    )
    assert RomAssessment.from_dict(restricted.to_dict()).flagged == restricted.flagged


def test_gaps_never_make_a_false_deficit() -> None:
    env = box_envelope()
    t, angles = _protocol()
    # the extension stroke (second movement) lost completely: a long NaN span
    lost = angles.copy()
    ext = np.flatnonzero((angles[:, 0] > 0) & (angles[:, 1] == 0))  # the pure extension stroke
    lost[ext[0] - 5 : ext[-1] + 5] = np.nan
    result = assess_session(t, lost, env)
    assert result.flagged == ()
    assert result.sector("extension").status == "insufficient_data"
    assert "may have been missed" in result.sector("extension").reason
    assert result.sector("flexion").status == "normal"  # reached: gaps do not matter there
    assert any(s.kind == "invalid" and not s.filled for s in result.spans)
    # the same samples missing from the timestamps (a dropped-sample gap)
    keep = np.isfinite(lost[:, 0])
    dropped = assess_session(t[keep], angles[keep], env)
    assert dropped.flagged == () and dropped.sector("extension").status == "insufficient_data"
    # a short gap is filled and changes nothing
    short = angles.copy()
    short[ext[0] + 30 : ext[0] + 37] = np.nan
    result = assess_session(t, short, env)
    assert result.flagged == () and all(s.filled for s in result.spans)


def test_short_sessions_and_bad_timestamps() -> None:
    env = box_envelope()
    t, angles = _protocol()
    short = assess_session(t[:1000], angles[:1000], env)
    assert set(short.insufficient) == set(SECTORS) and short.flagged == ()
    assert "under the minimum" in short.sectors[0].reason
    assert not math.isnan(short.sectors[0].expected_deg)
    backwards = t.copy()
    backwards[2000:2010] -= 5.0
    result = assess_session(backwards, angles, env)
    assert result.notes and "did not advance" in result.notes[0]
    assert any(s.kind == "time_reversal" for s in result.spans)
    assert assess_session(np.full(5, np.nan), np.zeros((5, 3)), env).flagged == ()
    with pytest.raises(AssessmentError, match=r"angles_rad \(N, 3\)"):
        assess_session(t, angles[:, :2], env)
    with pytest.raises(AssessmentError, match="min_deficit_deg"):
        AssessmentConfig(min_deficit_deg=-1.0)


def test_peak_speed_per_direction() -> None:
    env = box_envelope()
    t, angles = _protocol()
    result = assess_session(t, angles, env)
    # raised-cosine stroke of amplitude A over 1.2 s: peak speed pi A / (2 x 1.2)
    expected = math.pi * 60.0 / 2.4
    assert result.sector("left_rotation").peak_speed_deg_s == pytest.approx(expected, rel=0.02)


def test_sparc_prefers_smooth_movements() -> None:
    rate = 100.0
    tt = np.linspace(0, 1, 101)
    smooth = 30 * tt**2 * (1 - tt) ** 2  # minimum-jerk speed profile
    jerky = smooth * (1 + 0.3 * np.sin(2 * math.pi * 8 * tt))
    assert sparc(jerky, rate) < sparc(smooth, rate) < -1.0


def test_filtered_derivative_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(500) / 100
    v = np.stack([np.sin(2 * t), np.cos(3 * t) + 0.01 * rng.standard_normal(500)], axis=1)
    for order in (1, 2):
        ours = filtered_derivative(v, 100.0, order)
        ref = savgol_filter(v, 15, DERIVATIVE_POLYORDER, deriv=order, delta=0.01, axis=0,
                            mode="interp")  # fmt: skip
        assert np.abs(ours - ref).max() < 1e-9 * np.abs(ref).max()
    # a run shorter than the window is fitted whole, with a cubic at most
    short = v[:9]
    ref = savgol_filter(short, 9, SHORT_RUN_POLYORDER, deriv=2, delta=0.01, axis=0, mode="interp")
    np.testing.assert_allclose(filtered_derivative(short, 100.0, 2), ref, atol=1e-9)


def test_the_quartic_follows_fast_motion_the_cubic_lags() -> None:
    """Why the hub's filter is quartic: on a 3 Hz oscillation the cubic's acceleration loses a
    eighth of the amplitude, the quartic under 1%; velocities are the same."""
    t = np.arange(400) / 100
    angle = np.radians(10) * np.sin(2 * math.pi * 3 * t)[:, None]
    true_acc = -((2 * math.pi * 3) ** 2) * angle[:, 0]
    inner = slice(20, -20)
    cubic = filtered_derivative(angle, 100.0, 2, polyorder=3)[inner, 0]
    quartic = filtered_derivative(angle, 100.0, 2)[inner, 0]
    gain = [np.abs(a).max() / np.abs(true_acc[inner]).max() for a in (cubic, quartic)]
    assert gain[0] < 0.9 and 0.99 < gain[1] <= 1.001
    np.testing.assert_allclose(filtered_derivative(angle, 100.0, 1, polyorder=3)[inner],
                               filtered_derivative(angle, 100.0, 1)[inner], atol=1e-9)  # fmt: skip
