from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.errors import InvalidAnthropometricsError
from host_training.model.anatomy import INDEPENDENT_COORDINATES, Anatomy, load_anatomy
from host_training.model.builder import GRAVITY_M_S2, build_model
from host_training.model.opensim_env import opensim
from host_training.model.personalise import (
    neutral_body_poses,
    personalise,
    reference_anthropometrics,
)
from host_training.simulation.solvers import speed_coordinates

GIRDLE = {"rclavicle", "lclavicle", "rscapula", "lscapula"}


def _neutral_lengths(anatomy: Anatomy) -> dict[str, float]:
    """Musculotendon lengths at neutral, from the built OpenSim model."""
    model = build_model(anatomy)
    state = model.initSystem()
    model.realizePosition(state)
    muscles = model.getMuscles()
    return {muscles.get(i).getName(): muscles.get(i).getLength(state) for i in range(72)}


def _with(**changes: float) -> Anthropometrics:
    return dataclasses.replace(reference_anthropometrics(), **changes)  # type: ignore[arg-type]


def _flat(a: Anatomy) -> np.ndarray:
    values: list[float] = []
    for b in a.bodies:
        values += [b.mass_kg, *b.com_m, *b.inertia_moments_kg_m2]
    for j in a.joints:
        values += [*j.parent_offset_m, *j.child_offset_m]
    for m in a.muscles:
        values += [m.max_isometric_force_n, m.optimal_fiber_length_m, m.tendon_slack_length_m]
        for p in m.path:
            values += list(p.location_m)
    return np.array(values)


def test_reference_anthropometrics_give_the_reference_anatomy() -> None:
    np.testing.assert_allclose(
        _flat(personalise(reference_anthropometrics())),
        _flat(load_anatomy()),
        rtol=1e-9,
        atol=1e-12,
    )


def test_longer_neck_lengthens_every_muscle_crossing_the_neck() -> None:
    base = _neutral_lengths(load_anatomy())
    longer = _neutral_lengths(personalise(_with(neck_length_m=0.125)))
    trunk = {"spine", "ribcage"} | GIRDLE
    bodies = {m.name: {p.body for p in m.path} for m in load_anatomy().muscles}
    crossing = [
        m for m in load_anatomy().muscles if bodies[m.name] & trunk and bodies[m.name] - trunk
    ]
    assert len(crossing) >= 40
    for m in crossing:
        assert longer[m.name] > base[m.name] * 1.01, m.name


def test_wider_shoulders_move_only_girdle_attached_muscles() -> None:
    base = _neutral_lengths(load_anatomy())
    wide = _neutral_lengths(personalise(_with(shoulder_width_m=0.46)))
    on_girdle = {m.name for m in load_anatomy().muscles if {p.body for p in m.path} & GIRDLE}
    assert on_girdle >= {"trap_cl", "trap_acr_L", "levator_scap", "cleid_mast"}
    for name, length in base.items():
        if name in on_girdle:
            assert abs(wide[name] - length) > 1e-4, name
        else:
            assert wide[name] == pytest.approx(length, abs=1e-12), name


def test_girdle_points_scale_laterally_in_the_thorax_frame() -> None:
    s_w = 0.46 / reference_anthropometrics().shoulder_width_m
    ref, wide = load_anatomy(), personalise(_with(shoulder_width_m=0.46))
    poses_ref, poses_wide = neutral_body_poses(ref), neutral_body_poses(wide)
    for m_ref, m_wide in zip(ref.muscles, wide.muscles, strict=True):
        for p, q in zip(m_ref.path, m_wide.path, strict=True):
            if p.body not in GIRDLE:
                continue
            r0, o0 = poses_ref[p.body]
            r1, o1 = poses_wide[p.body]
            before = o0 + r0 @ np.array(p.location_m)
            after = o1 + r1 @ np.array(q.location_m)
            np.testing.assert_allclose(after, [before[0], before[1], before[2] * s_w], atol=1e-12)


def _static_neck_moments_nm(anatomy: Anatomy) -> np.ndarray:
    """Constraint-consistent generalized forces (N·m) at neutral, zero velocity and acceleration,
    about the six independent coordinates, from OpenSim's InverseDynamicsSolver (muscles off)."""
    osim = opensim()
    model = build_model(anatomy)
    for i in range(model.getMuscles().getSize()):
        model.updMuscles().get(i).set_appliesForce(False)
    state = model.initSystem()
    order = speed_coordinates(model, state)
    model.realizeVelocity(state)
    solver = osim.InverseDynamicsSolver(model)
    tau = solver.solve(state, osim.Vector(state.getNU(), 0.0))
    by_name = {name: tau.get(i) for i, name in enumerate(order)}
    moments = np.zeros(6)
    for k, independent in enumerate(INDEPENDENT_COORDINATES):
        moments[k] = by_name[independent] + sum(
            c.ratio * by_name[c.dependent_coordinate]
            for c in anatomy.couplers
            if c.independent_coordinate == independent
        )
    return moments


def _expected_pitch2_slope(anatomy: Anatomy) -> float:
    """d(moment about pitch2)/d(head mass): g x the skull COM's anterior lever arm about each level
    the pitch2 chain rotates, weighted by that level's share of pitch2 (N·m per kg)."""
    poses = neutral_body_poses(anatomy)
    r_s, o_s = poses["skull"]
    com_x = (o_s + r_s @ np.array(anatomy.body("skull").com_m))[0]
    shares = {x.joint: x.ratio for x in anatomy.joint_axes if x.coordinate == "pitch2"}
    for c in anatomy.couplers:
        if c.independent_coordinate == "pitch2":
            shares[c.dependent_coordinate.rsplit("_", 1)[0]] = c.ratio
    total = 0.0
    for j in anatomy.joints:
        if j.name in shares:
            r_p, o_p = poses[j.parent_body]
            centre_x = (o_p + r_p @ np.array(j.parent_offset_m))[0]
            total += shares[j.name] * GRAVITY_M_S2 * (com_x - centre_x)
    return total


def test_heavier_head_raises_static_extension_moment_in_proportion() -> None:
    masses = [3.5, 4.3, 5.1, 5.9]
    moments = np.array(
        [_static_neck_moments_nm(personalise(_with(head_mass_kg=m))) for m in masses]
    )
    pitch = moments[:, INDEPENDENT_COORDINATES.index("pitch2")]
    slopes = np.diff(pitch) / np.diff(masses)
    np.testing.assert_allclose(slopes, slopes[0], rtol=1e-6)  # linear in head mass
    # The skull's COM lies anterior of every level: the head's weight flexes the neck, and the
    # moment needed to hold it (extension) grows by exactly g x lever per kg.
    expected = _expected_pitch2_slope(load_anatomy())
    assert expected > 0
    assert slopes[0] == pytest.approx(expected, rel=1e-3)


def test_strength_and_fibre_lengths_scale_as_documented() -> None:
    ref = reference_anthropometrics()
    subject = _with(body_mass_kg=60.0, neck_length_m=0.095)
    a, b = load_anatomy(), personalise(subject)
    strength = (60.0 / ref.body_mass_kg) ** (2 / 3)
    for m0, m1 in zip(a.muscles, b.muscles, strict=True):
        assert m1.max_isometric_force_n == pytest.approx(m0.max_isometric_force_n * strength)
        assert m1.optimal_fiber_length_m / m1.tendon_slack_length_m == pytest.approx(
            m0.optimal_fiber_length_m / m0.tendon_slack_length_m
        )
    assert b.total_max_isometric_force_n() < a.total_max_isometric_force_n()


def test_invalid_anthropometrics_never_reach_the_builder() -> None:
    with pytest.raises(InvalidAnthropometricsError, match="head_mass_kg"):
        _with(head_mass_kg=float("nan"))
    bad: Any = dataclasses.replace
    with pytest.raises(InvalidAnthropometricsError, match=r"neck_length_m = -0\.1"):
        bad(reference_anthropometrics(), neck_length_m=-0.1)
