"""The envelope contract: the boundary between samples, the grid interpolation, bad records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.envelope import EnvelopeError, EnvelopeGrid, MotionEnvelope


def box_envelope(
    ext: float = 70.0,
    flex: float = 50.0,
    bend: float = 40.0,
    rot: float = 60.0,
    step_deg: float = 10.0,
) -> MotionEnvelope:
    """A box-shaped envelope (deg): every sampled direction ends on the box's edge."""
    theta = np.radians(np.arange(0, 360, step_deg))
    c, s = np.cos(theta), np.sin(theta)
    with np.errstate(divide="ignore"):
        along_e = np.where(
            c > 1e-12, math.radians(ext) / c, np.where(c < -1e-12, -math.radians(flex) / c, np.inf)
        )
        along_b = np.where(np.abs(s) > 1e-12, math.radians(bend) / np.abs(s), np.inf)
    radius = np.minimum(along_e, along_b)
    levels = np.radians([-30.0, 0.0, 30.0])
    offsets_e, offsets_b = np.radians([-20.0, 0.0, 20.0]), np.radians([-10.0, 0.0, 10.0])
    axial = np.full((3, 3), math.radians(rot))
    return MotionEnvelope(
        planar_directions_rad=theta,
        axial_levels_rad=levels,
        planar_radius_rad=np.stack([radius * f for f in (0.8, 1.0, 0.6)]),
        offset_extension_rad=offsets_e,
        offset_bend_rad=offsets_b,
        axial_left_rad=axial,
        axial_right_rad=axial * 0.5,
    )


def test_polygon_boundary_is_exact_along_box_edges() -> None:
    env = box_envelope()
    # points on the extension edge (e = 70 deg) between sampled directions that both end on it
    # (0, 10 and 20 deg; the box corner lies between 20 and 30 deg, where the chord cuts it)
    bends = np.radians([3.0, 12.0, 25.0])
    theta = np.arctan2(bends, np.full(3, math.radians(70.0)))
    expected = np.hypot(bends, math.radians(70.0))
    assert np.allclose(env.planar_limit_rad(theta, np.zeros(3)), expected, rtol=1e-9)
    limits = env.plane_limits_deg()
    assert limits["extension"] == pytest.approx(70.0) and limits["flexion"] == pytest.approx(50.0)
    assert limits["right_bend"] == pytest.approx(40.0) and limits[
        "right_rotation"
    ] == pytest.approx(30.0)
    assert env.plane_totals_deg()["axial_rotation"] == pytest.approx(90.0)


def test_axial_level_interpolation_and_clamping() -> None:
    env = box_envelope()
    zero = np.zeros(1)
    at = {
        lvl: float(env.planar_limit_rad(zero, np.radians([lvl]))[0])
        for lvl in (-30, -15, 0, 30, 60)
    }
    assert at[-15] == pytest.approx(0.5 * (at[-30] + at[0]))
    assert at[60] == pytest.approx(at[30])  # clamped beyond the outermost level
    assert env.axial_limit_rad(np.radians([50.0]), np.radians([-50.0]), True)[0] == pytest.approx(
        math.radians(60.0)
    )


def test_round_trip_and_bad_records() -> None:
    env = box_envelope()
    again = MotionEnvelope.from_dict(env.to_dict())
    assert np.allclose(again.planar_radius_rad, env.planar_radius_rad, atol=1e-6)
    data = env.to_dict()
    data["planar_radius_rad"] = data["planar_radius_rad"][:2]
    with pytest.raises(EnvelopeError, match=r"planar_radius_rad.*shape"):
        MotionEnvelope.from_dict(data)
    data = env.to_dict()
    data["axial_right_rad"][0][0] = -0.1
    with pytest.raises(EnvelopeError, match="axial_right_rad"):
        MotionEnvelope.from_dict(data)
    data = env.to_dict()
    data["planar_directions_rad"] = [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(EnvelopeError, match="evenly spaced"):
        MotionEnvelope.from_dict(data)
    with pytest.raises(EnvelopeError, match="format"):
        MotionEnvelope.from_dict({**env.to_dict(), "format": "other/1"})


def _subject(**values: float) -> Anthropometrics:
    base = {
        "neck_length_m": 0.11,
        "shoulder_width_m": 0.4,
        "head_mass_kg": 4.5,
        "body_mass_kg": 80.0,
    } | values
    return Anthropometrics(sex="female", stature_m=1.7, **base)


def test_grid_interpolates_multilinearly_and_reports_clamping() -> None:
    axes = {
        "neck_length_m": np.array([0.09, 0.13]),
        "shoulder_width_m": np.array([0.4]),
        "head_mass_kg": np.array([3.5, 6.0]),
        "body_mass_kg": np.array([80.0]),
    }
    scale = {(0.09, 3.5): 1.0, (0.09, 6.0): 0.8, (0.13, 3.5): 0.9, (0.13, 6.0): 0.6}
    base = box_envelope()
    nodes = []
    for (_, _), f in scale.items():
        nodes.append(
            MotionEnvelope(
                planar_directions_rad=base.planar_directions_rad,
                axial_levels_rad=base.axial_levels_rad,
                planar_radius_rad=base.planar_radius_rad * f,
                offset_extension_rad=base.offset_extension_rad,
                offset_bend_rad=base.offset_bend_rad,
                axial_left_rad=base.axial_left_rad * f,
                axial_right_rad=base.axial_right_rad * f,
            )
        )
    grid = EnvelopeGrid(axes=axes, envelopes=tuple(nodes))
    assert grid.nodes()[1] == {
        "neck_length_m": 0.09,
        "shoulder_width_m": 0.4,
        "head_mass_kg": 6.0,
        "body_mass_kg": 80.0,
    }
    at_node, clamped = grid.for_subject(_subject(neck_length_m=0.13, head_mass_kg=6.0))
    assert clamped == [] and np.allclose(at_node.axial_left_rad, base.axial_left_rad * 0.6)
    middle, _ = grid.for_subject(_subject(neck_length_m=0.11, head_mass_kg=4.75))
    assert np.allclose(middle.axial_left_rad, base.axial_left_rad * np.mean(list(scale.values())))
    beyond, clamped = grid.for_subject(
        _subject(neck_length_m=0.16, head_mass_kg=4.75, body_mass_kg=60)
    )
    assert clamped == ["neck_length_m", "body_mass_kg"]
    assert np.allclose(beyond.axial_left_rad, base.axial_left_rad * 0.75)
    again = EnvelopeGrid.from_dict(grid.to_dict())
    assert np.allclose(
        again.for_subject(_subject())[0].planar_radius_rad,
        grid.for_subject(_subject())[0].planar_radius_rad,
        atol=1e-6,
    )
    with pytest.raises(EnvelopeError, match="2 envelopes for 4 nodes"):
        EnvelopeGrid(axes=axes, envelopes=tuple(nodes[:2]))
