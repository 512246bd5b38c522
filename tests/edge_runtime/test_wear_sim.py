"""Free-living wear for long simulations: deterministic, ordinary (habitual postures, daily-life
speeds, no end-of-range protocol), opening with the calibration's hold and nod; and the drift
benchmark built on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_runtime.wear_sim import NEUTRAL_S, RATE_HZ, WearRanges, free_living_angles, nod_window_s

CERVICAL = str(Path(sys.executable).with_name("cervical"))


def test_free_living_motion_is_deterministic_ordinary_and_opens_with_a_nod() -> None:
    t, angles = free_living_angles(600.0, seed=4)
    again = free_living_angles(600.0, seed=4)[1]
    np.testing.assert_array_equal(angles, again)
    assert not np.array_equal(angles, free_living_angles(600.0, seed=5)[1])
    assert len(t) == 600 * RATE_HZ and np.allclose(np.diff(t), 1 / RATE_HZ)
    deg = np.degrees(angles)
    ranges = WearRanges()
    assert deg[:, 0].max() <= ranges.extension_deg and -deg[:, 0].min() <= ranges.flexion_deg
    assert np.abs(deg[:, 1]).max() <= ranges.bend_deg
    assert np.abs(deg[:, 2]).max() <= ranges.rotation_deg
    assert np.abs(deg[: int((NEUTRAL_S - 0.5) * RATE_HZ)]).max() == 0.0  # the neutral hold
    _, nod = nod_window_s()
    in_nod = (t >= nod[0]) & (t < nod[1])
    assert deg[in_nod, 0].min() < -20.0  # a flexion nod the calibration can find
    speed = np.degrees(np.linalg.norm(np.diff(angles, axis=0), axis=1)) * RATE_HZ
    assert speed.max() <= 320.0 and np.median(speed) < 5.0  # mostly holds, daily-life speeds
    still = (speed < 10.0).mean()
    assert 0.4 < still < 0.95, still
    # postures spread around a slightly flexed neutral, rotations mostly within +-45 deg
    assert -20.0 < np.median(deg[:, 0]) < 2.0 and np.percentile(np.abs(deg[:, 2]), 90) < 50.0


def test_wear_drift_bench_reports_both_paths() -> None:
    r = subprocess.run(
        [CERVICAL, "bench", "wear-drift", "--subjects", "1", "--minutes", "3", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    six, nine = figures["six_axis_end_error_deg_p95"], figures["nine_axis_end_error_deg_p95"]
    assert set(six) == set(nine) and len(six) == 3
    rotation = "neck_axial_rotation_left_rad"
    assert figures["axial_rotation_error_deg_p95_end"] == six[rotation]
    assert 0.0 <= nine[rotation] < 10.0  # the magnetometer holds the heading over minutes
    assert min(six.values()) >= 0.0 and max(six.values()) <= 180.0
    assert len(figures["six_axis_mean_error_deg_per_minute"]) == 3
    # what the hub reports of it: the horizon it trusts a 6-axis calibration for
    assert figures["six_axis_trusted_s"] == 75.0
    assert max(figures["six_axis_trusted_error_deg_p95"].values()) < 10.0
