"""Personalise the reference anatomy to one wearer's anthropometrics (pure, in memory).

What each anthropometric changes (and nothing else):
- ``neck_length_m`` (factor s_n = neck length / reference): the cervical spine scales
  isotropically by s_n: joint offsets within C7..C1 and to the skull, path points and mass
  centres on C7..C1. Cervical slice masses scale with s_n (longer slices of the same
  cross-section); their inertias follow the neck-slice cylinder of the scaled height.
- ``shoulder_width_m`` (s_w): clavicle and scapula move laterally: their attachment frames and
  every path point on them have their thorax-frame z (lateral) coordinate scaled by s_w.
- ``head_mass_kg``: skull mass; its inertia scales with mass^(5/3) (geometric similarity at constant
  density); the skull's centre of mass and attachment points stay.
- ``body_mass_kg``: every muscle's max isometric force scales with (body mass / reference)^(2/3),
  physiological cross-sectional area under geometric similarity. Sex enters only through the
  anthropometrics (women's weaker necks follow from lighter bodies and shorter necks).
- Optimal fibre length and tendon slack length are rescaled by each muscle's musculotendon length
  change at the neutral posture, keeping the fibre/tendon split (as OpenSim's ScaleTool does).

The reference anthropometrics are the ANSUR II male means with the reference skull mass (4.30 kg):
HYOID 1.2 derives from a 50th-percentile man (Vasavada 1998). At them the personalised anatomy is
the reference anatomy exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.anthropometrics import Anthropometrics
from host_training.model.anatomy import (
    Anatomy,
    BodySpec,
    JointSpec,
    MuscleSpec,
    PathPointSpec,
    Vec3,
    load_anatomy,
    neck_slice_inertia_kg_m2,
)
from host_training.population.sampling import REFERENCE_HEAD_MASS_KG, load_statistics

Mat3 = npt.NDArray[np.float64]
THORAX_BODY = "spine"


@functools.cache
def reference_anthropometrics() -> Anthropometrics:
    """The anthropometrics at which the personalised model equals the reference model."""
    stats = load_statistics()
    return Anthropometrics(
        sex="male",
        stature_m=round(stats.mean("male", "stature_m"), 4),
        body_mass_kg=round(stats.mean("male", "body_mass_kg"), 2),
        neck_length_m=round(stats.mean("male", "neck_length_m"), 4),
        shoulder_width_m=round(stats.mean("male", "shoulder_width_m"), 4),
        head_mass_kg=REFERENCE_HEAD_MASS_KG,
    )


@dataclasses.dataclass(frozen=True)
class ScaleFactors:
    """Dimensionless factors applied to the reference anatomy."""

    neck_length: float
    shoulder_width: float
    head_mass: float
    muscle_strength: float

    @classmethod
    def of(cls, subject: Anthropometrics, reference: Anthropometrics) -> ScaleFactors:
        return cls(
            neck_length=subject.neck_length_m / reference.neck_length_m,
            shoulder_width=subject.shoulder_width_m / reference.shoulder_width_m,
            head_mass=subject.head_mass_kg / reference.head_mass_kg,
            muscle_strength=(subject.body_mass_kg / reference.body_mass_kg) ** (2.0 / 3.0),
        )


def rotation_body_xyz(angles_rad: Vec3) -> Mat3:
    """Rotation matrix of an OpenSim offset-frame orientation (body-fixed x-y-z sequence)."""
    a, b, c = angles_rad
    ca, sa, cb, sb, cc, sc = (
        math.cos(a),
        math.sin(a),
        math.cos(b),
        math.sin(b),
        math.cos(c),
        math.sin(c),
    )
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return np.asarray(rx @ ry @ rz, dtype=np.float64)


def neutral_body_poses(anatomy: Anatomy) -> dict[str, tuple[Mat3, npt.NDArray[np.float64]]]:
    """Each body's (rotation, origin) in ground at the neutral posture (all coordinates 0)."""
    poses: dict[str, tuple[Mat3, npt.NDArray[np.float64]]] = {"ground": (np.eye(3), np.zeros(3))}
    pending = list(anatomy.joints)
    while pending:
        progressed = False
        for j in list(pending):
            if j.parent_body not in poses:
                continue
            r_p, p_p = poses[j.parent_body]
            r_jp = r_p @ rotation_body_xyz(j.parent_orientation_rad)
            o_j = p_p + r_p @ np.array(j.parent_offset_m)
            r_cj = rotation_body_xyz(j.child_orientation_rad)  # child frame in child body
            r_c = r_jp @ r_cj.T
            poses[j.child_body] = (r_c, o_j - r_c @ np.array(j.child_offset_m))
            pending.remove(j)
            progressed = True
        if not progressed:
            raise ValueError(f"joints not connected to ground: {[j.name for j in pending]}")
    return poses


def neutral_musculotendon_lengths_m(anatomy: Anatomy) -> dict[str, float]:
    """Musculotendon path length of every muscle at the neutral posture (via points, no wraps)."""
    poses = neutral_body_poses(anatomy)
    lengths = {}
    for m in anatomy.muscles:
        pts = [poses[p.body][1] + poses[p.body][0] @ np.array(p.location_m) for p in m.path]
        lengths[m.name] = float(sum(np.linalg.norm(b - a) for a, b in itertools.pairwise(pts)))
    return lengths


@functools.cache
def _reference_neutral_lengths_m() -> dict[str, float]:
    """The reference's neutral lengths: the same for every subject, computed once per process."""
    return neutral_musculotendon_lengths_m(load_anatomy())


def _scaled(v: Vec3, s: float) -> Vec3:
    return (v[0] * s, v[1] * s, v[2] * s)


def _scale_body(b: BodySpec, f: ScaleFactors) -> BodySpec:
    if b.scaling_group == "cervical":
        assert b.segment_height_m is not None and b.segment_radius_m is not None
        mass = b.mass_kg * f.neck_length
        height = b.segment_height_m * f.neck_length
        return dataclasses.replace(
            b,
            mass_kg=mass,
            com_m=_scaled(b.com_m, f.neck_length),
            inertia_moments_kg_m2=neck_slice_inertia_kg_m2(mass, b.segment_radius_m, height),
            segment_height_m=height,
        )
    if b.name == "skull":
        inertia = f.head_mass ** (5.0 / 3.0)
        return dataclasses.replace(
            b,
            mass_kg=b.mass_kg * f.head_mass,
            inertia_moments_kg_m2=_scaled(b.inertia_moments_kg_m2, inertia),
            inertia_products_kg_m2=_scaled(b.inertia_products_kg_m2, inertia),
        )
    return b


def _girdle_point(location_m: Vec3, weld: JointSpec, scaled_weld: JointSpec, s_w: float) -> Vec3:
    """A point on a clavicle/scapula with its thorax-frame lateral coordinate scaled by s_w."""
    r = rotation_body_xyz(weld.parent_orientation_rad)
    in_thorax = np.array(weld.parent_offset_m) + r @ np.array(location_m)
    in_thorax[2] *= s_w
    local = r.T @ (in_thorax - np.array(scaled_weld.parent_offset_m))
    return (float(local[0]), float(local[1]), float(local[2]))


def personalise(
    subject: Anthropometrics,
    anatomy: Anatomy | None = None,
    reference: Anthropometrics | None = None,
) -> Anatomy:
    """The anatomy of ``subject``: the reference anatomy scaled as the module docstring says."""
    anatomy = anatomy or load_anatomy()
    f = ScaleFactors.of(subject, reference or reference_anthropometrics())
    groups = {b.name: b.scaling_group for b in anatomy.bodies}

    joints = []
    welds: dict[str, tuple[JointSpec, JointSpec]] = {}
    for j in anatomy.joints:
        new = j
        if groups.get(j.parent_body) == "cervical":
            new = dataclasses.replace(
                new, parent_offset_m=_scaled(j.parent_offset_m, f.neck_length)
            )
        if groups.get(j.child_body) == "cervical":
            new = dataclasses.replace(new, child_offset_m=_scaled(j.child_offset_m, f.neck_length))
        if groups.get(j.child_body) == "shoulder_girdle":
            if j.kind != "weld" or j.parent_body != THORAX_BODY or j.child_offset_m != (0, 0, 0):
                raise ValueError(f"joint {j.name}: girdle bodies must be welded to the thorax")
            x, y, z = j.parent_offset_m
            new = dataclasses.replace(new, parent_offset_m=(x, y, z * f.shoulder_width))
            welds[j.child_body] = (j, new)
        joints.append(new)

    def point(p: PathPointSpec) -> PathPointSpec:
        group = groups[p.body]
        if group == "cervical":
            return dataclasses.replace(p, location_m=_scaled(p.location_m, f.neck_length))
        if group == "shoulder_girdle":
            weld, scaled = welds[p.body]
            loc = _girdle_point(p.location_m, weld, scaled, f.shoulder_width)
            return dataclasses.replace(p, location_m=loc)
        return p

    scaled = dataclasses.replace(
        anatomy,
        bodies=tuple(_scale_body(b, f) for b in anatomy.bodies),
        joints=tuple(joints),
        muscles=tuple(
            dataclasses.replace(m, path=tuple(point(p) for p in m.path)) for m in anatomy.muscles
        ),
    )
    before = (
        _reference_neutral_lengths_m()
        if anatomy is load_anatomy()
        else neutral_musculotendon_lengths_m(anatomy)
    )
    after = neutral_musculotendon_lengths_m(scaled)

    def muscle(m: MuscleSpec) -> MuscleSpec:
        ratio = after[m.name] / before[m.name]
        return dataclasses.replace(
            m,
            max_isometric_force_n=m.max_isometric_force_n * f.muscle_strength,
            optimal_fiber_length_m=m.optimal_fiber_length_m * ratio,
            tendon_slack_length_m=m.tendon_slack_length_m * ratio,
        )

    return dataclasses.replace(scaled, muscles=tuple(muscle(m) for m in scaled.muscles))
