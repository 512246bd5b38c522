"""The marker path: TRC through OpenSim's adapter, gap filling, rigid fits, neck angles."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.common.rotations import axis_angle_matrix
from edge_runtime.contracts.neck_angles import neck_angles_from_rotation, rotation_from_neck_angles
from host_training.model.markers import (
    MarkerError,
    MarkerMap,
    fill_gaps,
    neck_rotation_from_markers,
    read_trc,
    write_trc,
)

HEAD_LOCAL_M = {
    "HF": (0.1, 0.25, 0.0),
    "HL": (0.0, 0.22, -0.08),
    "HR": (0.0, 0.22, 0.08),
    "HB": (-0.1, 0.2, 0.0),
}
TRUNK_LOCAL_M = {
    "C7": (-0.06, 0.0, 0.0),
    "CLAV": (0.08, -0.05, 0.0),
    "ACRL": (0.0, -0.02, -0.18),
    "ACRR": (0.0, -0.02, 0.18),
}
MAP_TOML = """
[head]
markers = ["HF", "HL", "HR", "HB"]
[trunk]
markers = ["C7", "CLAV", "ACRL", "ACRR"]
[calibration]
neutral_s = [0.0, 0.9]
[gaps]
max_fill_s = 0.2
"""


def synthetic_markers(
    t: np.ndarray,
    angles: np.ndarray,
    trunk_rotvec: np.ndarray | None = None,
    origin_m: tuple[float, float, float] = (0.5, 1.4, 0.2),
) -> dict[str, np.ndarray]:
    """Lab marker positions (m) of a trunk (optionally rotating) and a head turned on it by the
    contract neck angles; lab axes = segment axes at neutral (X anterior, Y up, Z right)."""
    r_trunk = axis_angle_matrix(np.zeros((len(t), 3)) if trunk_rotvec is None else trunk_rotvec)
    r_head = r_trunk @ rotation_from_neck_angles(angles)
    origin = np.array(origin_m)
    out = {n: origin + r_trunk @ np.array(p) for n, p in TRUNK_LOCAL_M.items()}
    out |= {n: origin + r_head @ np.array(p) for n, p in HEAD_LOCAL_M.items()}
    return out


def test_trc_round_trip_and_neck_angles(tmp_path: Path) -> None:
    t = np.arange(0, 6, 0.01)
    moving = t > 1.0  # still during the neutral window
    angles = (
        np.stack(
            [
                np.radians(40) * np.sin(t),
                np.radians(20) * np.sin(0.7 * t),
                np.radians(50) * np.sin(0.5 * t),
            ],
            axis=1,
        )
        * moving[:, None]
    )
    trunk = np.stack([0.1 * np.sin(t), 0.4 * np.sin(0.2 * t), 0.05 * np.cos(t) - 0.05], axis=1)
    markers = synthetic_markers(t, angles, trunk * moving[:, None])
    markers["HF"][200:215] = np.nan  # 0.15 s: filled
    markers["HL"][300:400] = np.nan  # 1 s: left open, three head markers remain
    markers["C7"][450:] = np.nan  # to the end: never filled
    write_trc(tmp_path / "s.trc", t, markers)
    data = read_trc(tmp_path / "s.trc")
    assert np.allclose(data.t_s, t)
    assert np.allclose(data.positions_m["HR"], markers["HR"], atol=1e-9)  # mm in the file
    (tmp_path / "map.toml").write_text(MAP_TOML)
    kin = neck_rotation_from_markers(data, MarkerMap.read(tmp_path / "map.toml"), tmp_path)
    assert kin.valid.all()
    error = np.degrees(np.abs(neck_angles_from_rotation(kin.neck_rotation) - angles))
    assert error.max() < 0.05
    gaps = {g.marker: g for g in kin.gaps}
    assert gaps["HF"].filled == 1 and math.isclose(gaps["HF"].filled_s, 0.15, abs_tol=1e-6)
    assert gaps["HL"].unfilled == 1 and math.isclose(
        gaps["HL"].longest_unfilled_s, 1.0, abs_tol=1e-6
    )
    assert gaps["C7"].unfilled == 1 and gaps["HR"].filled == gaps["HR"].unfilled == 0


def test_frames_with_too_few_markers_have_no_posture(tmp_path: Path) -> None:
    t = np.arange(0, 3, 0.01)
    markers = synthetic_markers(t, np.zeros((len(t), 3)))
    for name in ("HF", "HL"):
        markers[name][150:250] = np.nan  # two of four head markers gone for 1 s
    write_trc(tmp_path / "s.trc", t, markers)
    (tmp_path / "map.toml").write_text(MAP_TOML)
    kin = neck_rotation_from_markers(
        read_trc(tmp_path / "s.trc"), MarkerMap.read(tmp_path / "map.toml"), tmp_path
    )
    assert not kin.valid[150:250].any() and kin.valid[:150].all() and kin.valid[250:].all()


def test_fill_gaps_is_exact_for_smooth_motion_and_leaves_long_gaps() -> None:
    t = np.arange(0, 2, 0.01)
    v = np.stack([np.sin(t), np.cos(2 * t), t**2], axis=1)
    holes = v.copy()
    holes[50:60] = np.nan
    holes[100:150] = np.nan
    filled, n_filled, _filled_s, n_open, longest = fill_gaps(holes, t, 0.2)
    assert (n_filled, n_open) == (1, 1) and math.isclose(longest, 0.5, abs_tol=1e-9)
    assert np.abs(filled[50:60] - v[50:60]).max() < 1e-4
    assert np.isnan(filled[100:150]).all()


def test_bad_maps_and_markers_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MAP_TOML.replace('"HF", "HL", "HR", "HB"', '"HF", "HL"'))
    with pytest.raises(MarkerError, match=r"\[head\] needs at least 3"):
        MarkerMap.read(bad)
    bad.write_text(MAP_TOML.replace("neutral_s = [0.0, 0.9]", "neutral_s = [2, 1]"))
    with pytest.raises(MarkerError, match="neutral_s"):
        MarkerMap.read(bad)
    t = np.arange(0, 2, 0.01)
    markers = synthetic_markers(t, np.zeros((len(t), 3)))
    del markers["ACRR"]
    write_trc(tmp_path / "s.trc", t, markers)
    (tmp_path / "map.toml").write_text(MAP_TOML)
    with pytest.raises(MarkerError, match=r"markers \['ACRR'\]"):
        neck_rotation_from_markers(
            read_trc(tmp_path / "s.trc"), MarkerMap.read(tmp_path / "map.toml"), tmp_path / "s.trc"
        )
    with pytest.raises(MarkerError, match="cannot read"):
        read_trc(tmp_path / "missing.trc")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m + "[extra]\nx = 1\n", r"\[extra\] is not a table"),
        (lambda m: m.replace("max_fill_s = 0.2", "max_fill_s = 0.2\nmax_fill = 1"),
         "unknown key 'max_fill'"),
        (lambda m: m.replace("max_fill_s = 0.2", "max_fill_s = nan"), "max_fill_s = nan"),
        (lambda m: m.replace('"C7", "CLAV", "ACRL", "ACRR"', '"HF", "HL", "HR"'),
         "on both"),
        (lambda m: m.replace("neutral_s = [0.0, 0.9]", "neutral_s = [0.0, inf]"), "neutral_s"),
    ],
)  # fmt: skip
def test_a_marker_map_refuses_what_it_does_not_define(
    tmp_path: Path, change: object, message: str
) -> None:
    bad = tmp_path / "map.toml"
    bad.write_text(change(MAP_TOML))  # type: ignore[operator]
    with pytest.raises(MarkerError, match=message):
        MarkerMap.read(bad)
    bad.write_bytes(b'[head]\nmarkers = ["\xff"]\n')
    with pytest.raises(MarkerError, match="not UTF-8"):
        MarkerMap.read(bad)


def _trc_lines(tmp_path: Path) -> list[str]:
    t = np.arange(0, 0.5, 0.01)
    write_trc(tmp_path / "ok.trc", t, synthetic_markers(t, np.zeros((len(t), 3))))
    return (tmp_path / "ok.trc").read_text().split("\n")


@pytest.mark.parametrize("variant", ["header_only", "header_and_blank", "no_column_rows"])
def test_a_trc_without_frames_is_refused_not_a_hang(tmp_path: Path, variant: str) -> None:
    """OpenSim's adapter loops for ever on these; the layout is checked before it reads."""
    lines = _trc_lines(tmp_path)
    keep = {"header_only": lines[:3], "header_and_blank": [*lines[:5], "", ""],
            "no_column_rows": lines[:2]}[variant]  # fmt: skip
    path = tmp_path / "broken.trc"
    path.write_text("\n".join(keep) + "\n")
    with pytest.raises(MarkerError, match=r"broken\.trc"):
        read_trc(path)


def test_an_impossible_coordinate_or_time_order_is_refused(tmp_path: Path) -> None:
    t = np.arange(0, 0.5, 0.01)
    markers = synthetic_markers(t, np.zeros((len(t), 3)))
    markers["HF"][::10, 0] = 1e300
    write_trc(tmp_path / "far.trc", t, markers)
    with pytest.raises(MarkerError, match="marker HF at t = 0 s"):
        read_trc(tmp_path / "far.trc")
    lines = _trc_lines(tmp_path)
    lines[6], lines[7] = lines[7], lines[6]
    (tmp_path / "order.trc").write_text("\n".join(lines))
    with pytest.raises(MarkerError, match=r"order\.trc: not a readable TRC file: .*Timestamp"):
        read_trc(tmp_path / "order.trc")
