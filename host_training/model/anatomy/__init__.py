"""The head–neck anatomy the model builder reads: project-owned tables, one row per item.

The tables (CSV, beside this module) are derived from the published HYOID 1.2 model
(Mortensen, Vasavada & Merryweather 2018, PLOS ONE 13(6):e0199912; MIT, see ``LICENSE-HYOID``) by
``scripts/derive_anatomy_tables.py``, with the fixes listed in ``NOTES.md``. Every row carries a
``source``. Model frame: x anterior, y up, z right; lengths in m, angles in rad unless a column
name says deg.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

from host_training.errors import AnatomyTableError

ANATOMY_DIR = Path(__file__).resolve().parent

INDEPENDENT_COORDINATES = ("pitch1", "roll1", "yaw1", "pitch2", "roll2", "yaw2")
"""The six independent neck coordinates: C0–C2 (``*1``) and C2–T1 (``*2``); pitch is
flexion(+)/extension about z, roll lateral bending about x, yaw axial rotation about y."""

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class BodySpec:
    """A rigid body; ``scaling_group`` says which anthropometric drives its personalisation."""

    name: str
    scaling_group: str  # thorax | shoulder_girdle | cervical | head
    mass_kg: float
    com_m: Vec3
    inertia_moments_kg_m2: Vec3  # about the COM, body axes x, y, z
    inertia_products_kg_m2: Vec3  # xy, xz, yz
    segment_height_m: float | None  # cervical slices only: joint centre to joint centre
    segment_radius_m: float | None
    source: str


@dataclass(frozen=True)
class JointSpec:
    """A joint between two bodies; offsets locate the joint frame in each body.

    Orientations are body-fixed x-y-z rotation sequences, as OpenSim writes them.
    """

    name: str
    kind: str  # custom | weld
    parent_body: str
    child_body: str
    parent_offset_m: Vec3
    parent_orientation_rad: Vec3
    child_offset_m: Vec3
    child_orientation_rad: Vec3
    source: str


@dataclass(frozen=True)
class JointAxisSpec:
    """One rotation of a custom joint: angle about ``axis`` = ``ratio`` x ``coordinate``."""

    joint: str
    transform_axis: str  # rotation1..rotation3 (applied in this order)
    axis: Vec3
    coordinate: str
    ratio: float
    source: str


@dataclass(frozen=True)
class CoordinateSpec:
    name: str
    joint: str
    role: str  # independent | dependent | thorax_locked
    range_min_deg: float
    range_max_deg: float
    source: str


@dataclass(frozen=True)
class CouplerSpec:
    """Linear coupler: dependent = ``ratio`` x independent (rad per rad)."""

    name: str
    dependent_coordinate: str
    independent_coordinate: str
    ratio: float
    source: str


@dataclass(frozen=True)
class BushingSpec:
    """Rotational bushing between two body frames (passive intervertebral stiffness)."""

    name: str
    body1: str
    body2: str
    rot_stiffness_nm_per_rad: Vec3
    rot_damping_nms_per_rad: Vec3
    source: str


@dataclass(frozen=True)
class PathPointSpec:
    muscle: str
    index: int
    body: str
    location_m: Vec3
    source: str


@dataclass(frozen=True)
class MuscleSpec:
    name: str
    side: str  # right | left
    max_isometric_force_n: float
    optimal_fiber_length_m: float
    tendon_slack_length_m: float
    pennation_at_optimal_rad: float
    max_contraction_velocity_lopt_per_s: float
    path: tuple[PathPointSpec, ...]
    source: str


@dataclass(frozen=True)
class Anatomy:
    """All tables of one model: the reference, or a personalised copy of it."""

    bodies: tuple[BodySpec, ...]
    joints: tuple[JointSpec, ...]
    joint_axes: tuple[JointAxisSpec, ...]
    coordinates: tuple[CoordinateSpec, ...]
    couplers: tuple[CouplerSpec, ...]
    bushings: tuple[BushingSpec, ...]
    muscles: tuple[MuscleSpec, ...]
    muscle_groups: tuple[tuple[str, str], ...]  # (group, muscle)

    def body(self, name: str) -> BodySpec:
        for b in self.bodies:
            if b.name == name:
                return b
        raise KeyError(name)

    def muscle_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.muscles)

    def total_max_isometric_force_n(self) -> float:
        return sum(m.max_isometric_force_n for m in self.muscles)


def neck_slice_inertia_kg_m2(mass_kg: float, radius_m: float, height_m: float) -> Vec3:
    """Inertia (x, y, z about the COM) of a solid neck slice: a cylinder with its axis along y.

    Each "vertebra" body of the model carries its slice of the neck's soft tissue (0.4–0.6 kg),
    so a cylinder of neck radius and segment height is the fitting shape (NOTES.md fix 1).
    """
    transverse = mass_kg * (3.0 * radius_m**2 + height_m**2) / 12.0
    return (transverse, 0.5 * mass_kg * radius_m**2, transverse)


def _rows(name: str) -> list[dict[str, str]]:
    path = ANATOMY_DIR / name
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(row: dict[str, str], key: str, table: str) -> float:
    try:
        value = float(row[key])
    except (KeyError, ValueError) as exc:
        raise AnatomyTableError(table, key, row.get(key), "not a number") from exc
    if not math.isfinite(value):
        raise AnatomyTableError(table, key, value, "not finite")
    return value


def _vec3(row: dict[str, str], keys: tuple[str, str, str], table: str) -> Vec3:
    return (_num(row, keys[0], table), _num(row, keys[1], table), _num(row, keys[2], table))


def _xyz(prefix: str, suffix: str) -> tuple[str, str, str]:
    return (f"{prefix}_x_{suffix}", f"{prefix}_y_{suffix}", f"{prefix}_z_{suffix}")


def _opt(row: dict[str, str], key: str, table: str) -> float | None:
    return None if row[key] == "" else _num(row, key, table)


def _bodies() -> tuple[BodySpec, ...]:
    t = "bodies.csv"
    return tuple(
        BodySpec(
            name=r["name"],
            scaling_group=r["scaling_group"],
            mass_kg=_num(r, "mass_kg", t),
            com_m=_vec3(r, ("com_x_m", "com_y_m", "com_z_m"), t),
            inertia_moments_kg_m2=_vec3(
                r, ("inertia_xx_kg_m2", "inertia_yy_kg_m2", "inertia_zz_kg_m2"), t
            ),
            inertia_products_kg_m2=_vec3(
                r, ("inertia_xy_kg_m2", "inertia_xz_kg_m2", "inertia_yz_kg_m2"), t
            ),
            segment_height_m=_opt(r, "segment_height_m", t),
            segment_radius_m=_opt(r, "segment_radius_m", t),
            source=r["source"],
        )
        for r in _rows(t)
    )


def _joints() -> tuple[JointSpec, ...]:
    t = "joints.csv"
    return tuple(
        JointSpec(
            name=r["name"],
            kind=r["kind"],
            parent_body=r["parent_body"],
            child_body=r["child_body"],
            parent_offset_m=_vec3(r, _xyz("parent_offset", "m"), t),
            parent_orientation_rad=_vec3(r, _xyz("parent_orientation", "rad"), t),
            child_offset_m=_vec3(r, _xyz("child_offset", "m"), t),
            child_orientation_rad=_vec3(r, _xyz("child_orientation", "rad"), t),
            source=r["source"],
        )
        for r in _rows(t)
    )


def _muscles() -> tuple[MuscleSpec, ...]:
    t = "muscle_path_points.csv"
    points: dict[str, list[PathPointSpec]] = {}
    for r in _rows(t):
        points.setdefault(r["muscle"], []).append(
            PathPointSpec(
                muscle=r["muscle"],
                index=int(r["index"]),
                body=r["body"],
                location_m=_vec3(r, ("x_m", "y_m", "z_m"), t),
                source=r["source"],
            )
        )
    t = "muscles.csv"
    muscles = []
    for r in _rows(t):
        path = tuple(sorted(points.get(r["name"], []), key=lambda p: p.index))
        if len(path) < 2:
            raise AnatomyTableError(t, "name", r["name"], "fewer than 2 path points")
        muscles.append(
            MuscleSpec(
                name=r["name"],
                side=r["side"],
                max_isometric_force_n=_num(r, "max_isometric_force_n", t),
                optimal_fiber_length_m=_num(r, "optimal_fiber_length_m", t),
                tendon_slack_length_m=_num(r, "tendon_slack_length_m", t),
                pennation_at_optimal_rad=_num(r, "pennation_at_optimal_rad", t),
                max_contraction_velocity_lopt_per_s=_num(
                    r, "max_contraction_velocity_lopt_per_s", t
                ),
                path=path,
                source=r["source"],
            )
        )
    return tuple(muscles)


@functools.cache
def load_anatomy() -> Anatomy:
    """The reference anatomy from the packaged tables (read once per process)."""
    axes = tuple(
        JointAxisSpec(
            joint=r["joint"],
            transform_axis=r["transform_axis"],
            axis=_vec3(r, ("axis_x", "axis_y", "axis_z"), "joint_axes.csv"),
            coordinate=r["coordinate"],
            ratio=_num(r, "ratio", "joint_axes.csv"),
            source=r["source"],
        )
        for r in _rows("joint_axes.csv")
    )
    coordinates = tuple(
        CoordinateSpec(
            name=r["name"],
            joint=r["joint"],
            role=r["role"],
            range_min_deg=_num(r, "range_min_deg", "coordinates.csv"),
            range_max_deg=_num(r, "range_max_deg", "coordinates.csv"),
            source=r["source"],
        )
        for r in _rows("coordinates.csv")
    )
    couplers = tuple(
        CouplerSpec(
            name=r["name"],
            dependent_coordinate=r["dependent_coordinate"],
            independent_coordinate=r["independent_coordinate"],
            ratio=_num(r, "ratio", "couplers.csv"),
            source=r["source"],
        )
        for r in _rows("couplers.csv")
    )
    t = "bushings.csv"
    bushings = tuple(
        BushingSpec(
            name=r["name"],
            body1=r["body1"],
            body2=r["body2"],
            rot_stiffness_nm_per_rad=_vec3(r, _xyz("rot_stiffness", "nm_per_rad"), t),
            rot_damping_nms_per_rad=_vec3(r, _xyz("rot_damping", "nms_per_rad"), t),
            source=r["source"],
        )
        for r in _rows(t)
    )
    groups = tuple((r["group"], r["muscle"]) for r in _rows("muscle_groups.csv"))
    return Anatomy(
        bodies=_bodies(),
        joints=_joints(),
        joint_axes=axes,
        coordinates=coordinates,
        couplers=couplers,
        bushings=bushings,
        muscles=_muscles(),
        muscle_groups=groups,
    )
