"""Derive the project's anatomy tables from the published HYOID 1.2 model.

A developer tool, run by hand when the tables are re-derived; nothing at run time reads the
reference model. It writes ``host_training/model/anatomy/*.csv`` with a ``source`` column on
every row, applying the documented fixes (see ``host_training/model/anatomy/NOTES.md``).

    .venv/bin/python scripts/derive_anatomy_tables.py \
        ../shared/reference/hyoid-1.2/HYOID_1.2_ScaledStrenght_UpdatedInertia.osim

Mortensen, Vasavada & Merryweather 2018, PLOS ONE 13(6):e0199912 (MIT licence).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

from host_training.model.anatomy import ANATOMY_DIR, neck_slice_inertia_kg_m2
from host_training.model.opensim_env import opensim

SOURCE = "HYOID 1.2 (Mortensen 2018)"
CERVICAL = ("cerv7", "cerv6", "cerv5", "cerv4", "cerv3", "cerv2", "cerv1")
GIRDLE = ("rclavicle", "lclavicle", "rscapula", "lscapula")
# Neck radius for the slice inertia: ANSUR II men's mean neck circumference 0.398 m / 2 pi.
NECK_RADIUS_M = 0.398 / (2.0 * math.pi)
# Plausible masses for welded girdle bodies (placeholders of 1 kg in the reference). They are welded
# to the thorax, which is welded to ground, so they never enter the neck's dynamics.
GIRDLE_MASS_KG = {"clavicle": 0.156, "scapula": 0.705}


osim = opensim()


def _vec(v: Any) -> list[float]:
    return [float(v.get(0)), float(v.get(1)), float(v.get(2))]


def _fmt(x: float) -> str:
    return repr(float(x))  # full precision: personalisation at the reference is exact


def _write(name: str, header: list[str], rows: list[list[object]]) -> None:
    path = ANATOMY_DIR / name
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([_fmt(x) if isinstance(x, float) else x for x in row])
    print(f"wrote {path} ({len(rows)} rows)")


def _scaling_group(body: str) -> str:
    if body in CERVICAL:
        return "cervical"
    if body in GIRDLE:
        return "shoulder_girdle"
    if body in ("skull", "jaw"):
        return "head"
    return "thorax"


def _joint_centre_heights(model: Any) -> dict[str, float]:
    """Distance between each cervical body's lower and upper joint centres at neutral (m)."""
    state = model.initSystem()
    heights: dict[str, float] = {}
    joints = model.getJointSet()
    lower: dict[str, list[float]] = {}
    upper: dict[str, list[float]] = {}
    for i in range(joints.getSize()):
        j = joints.get(i)
        child = j.getChildFrame().findBaseFrame().getName()
        parent = j.getParentFrame().findBaseFrame().getName()
        loc = _vec(j.getChildFrame().getPositionInGround(state))
        lower[child] = loc
        upper[parent] = loc
    for b in CERVICAL:
        heights[b] = math.dist(lower[b], upper[b])
    return heights


def derive(reference: Path) -> None:
    model = osim.Model(str(reference))
    heights = _joint_centre_heights(model)

    bodies = []
    for i in range(model.getBodySet().getSize()):
        b = model.getBodySet().get(i)
        name = b.getName()
        mass = float(b.getMass())
        com = _vec(b.getMassCenter())
        moments = _vec(b.getInertia().getMoments())
        products = _vec(b.getInertia().getProducts())
        source = SOURCE
        height: object = ""
        radius: object = ""
        if name in CERVICAL:
            height, radius = heights[name], NECK_RADIUS_M
            moments = list(neck_slice_inertia_kg_m2(mass, NECK_RADIUS_M, heights[name]))
            source = f"{SOURCE}; inertia: neck-slice cylinder (NOTES.md fix 1)"
        elif name in GIRDLE:
            mass = GIRDLE_MASS_KG["clavicle" if "clavicle" in name else "scapula"]
            moments = [mass * 0.01**2] * 3
            source = f"{SOURCE}; mass: Holzbaur 2005 upper-limb model (NOTES.md fix 3)"
        bodies.append(
            [name, _scaling_group(name), mass, *com, *moments, *products, height, radius, source]
        )
    _write(
        "bodies.csv",
        [
            "name", "scaling_group", "mass_kg", "com_x_m", "com_y_m", "com_z_m",
            "inertia_xx_kg_m2", "inertia_yy_kg_m2", "inertia_zz_kg_m2",
            "inertia_xy_kg_m2", "inertia_xz_kg_m2", "inertia_yz_kg_m2",
            "segment_height_m", "segment_radius_m", "source",
        ],
        bodies,
    )  # fmt: skip

    joints, axes, coords = [], [], []
    for i in range(model.getJointSet().getSize()):
        j = model.getJointSet().get(i)
        f0, f1 = j.get_frames(0), j.get_frames(1)
        parent = f0.getParentFrame().getName()
        child = f1.getParentFrame().getName()
        joints.append(
            [
                j.getName(), "custom" if j.getConcreteClassName() == "CustomJoint" else "weld",
                parent, child, *_vec(f0.get_translation()), *_vec(f0.get_orientation()),
                *_vec(f1.get_translation()), *_vec(f1.get_orientation()), SOURCE,
            ]
        )  # fmt: skip
        custom = osim.CustomJoint.safeDownCast(j)
        if custom is None:
            continue
        st = custom.getSpatialTransform()
        for k in range(6):
            ax = st.getTransformAxis(k)
            names = ax.getCoordinateNamesInArray()
            if names.getSize() == 0:
                continue  # constant zero: no coordinate on this axis
            coordinate = names.get(0)
            if coordinate.startswith("spine_t"):
                continue  # thorax translations: always zero, dropped (NOTES.md fix 5)
            fn = ax.get_function()
            slope = fn.calcValue(osim.Vector(1, 1.0)) - fn.calcValue(osim.Vector(1, 0.0))
            axes.append([j.getName(), ax.getName(), *_vec(ax.getAxis()), coordinate, slope, SOURCE])
        for c in range(j.numCoordinates()):
            co = j.get_coordinates(c)
            if co.getName().startswith("spine_t"):
                continue
            independent = co.getName() in ("pitch1", "roll1", "yaw1", "pitch2", "roll2", "yaw2")
            lo, hi = math.degrees(co.getRangeMin()), math.degrees(co.getRangeMax())
            if not independent and not co.getName().startswith("gnd"):
                lo, hi = -180.0, 180.0  # dependent: +-99999.9 in the reference, unclamped
            role = (
                "independent"
                if independent
                else ("thorax_locked" if co.getName().startswith("gnd") else "dependent")
            )
            coords.append([co.getName(), j.getName(), role, lo, hi, SOURCE])
    _write(
        "joints.csv",
        [
            "name", "kind", "parent_body", "child_body",
            "parent_offset_x_m", "parent_offset_y_m", "parent_offset_z_m",
            "parent_orientation_x_rad", "parent_orientation_y_rad", "parent_orientation_z_rad",
            "child_offset_x_m", "child_offset_y_m", "child_offset_z_m",
            "child_orientation_x_rad", "child_orientation_y_rad", "child_orientation_z_rad",
            "source",
        ],
        joints,
    )  # fmt: skip
    _write(
        "joint_axes.csv",
        ["joint", "transform_axis", "axis_x", "axis_y", "axis_z", "coordinate", "ratio", "source"],
        axes,
    )
    _write(
        "coordinates.csv",
        ["name", "joint", "role", "range_min_deg", "range_max_deg", "source"],
        coords,
    )

    couplers = []
    cs = model.getConstraintSet()
    for i in range(cs.getSize()):
        c = osim.CoordinateCouplerConstraint.safeDownCast(cs.get(i))
        fn = c.getFunction()
        slope = fn.calcValue(osim.Vector(1, 1.0)) - fn.calcValue(osim.Vector(1, 0.0))
        indep = c.getIndependentCoordinateNames().get(0)
        couplers.append([c.getName(), c.getDependentCoordinateName(), indep, slope, SOURCE])
    _write(
        "couplers.csv",
        ["name", "dependent_coordinate", "independent_coordinate", "ratio", "source"],
        couplers,
    )

    bushings = []
    muscles = []
    points = []
    forces = model.getForceSet()
    for i in range(forces.getSize()):
        f = forces.get(i)
        bushing = osim.BushingForce.safeDownCast(f)
        if bushing is not None:
            bushings.append(
                [
                    f.getName(),
                    bushing.getConnectee("frame1").getName(),
                    bushing.getConnectee("frame2").getName(),
                    *_vec(bushing.get_rotational_stiffness()),
                    *_vec(bushing.get_rotational_damping()),
                    SOURCE,
                ]
            )
            continue
        mu = osim.Millard2012EquilibriumMuscle.safeDownCast(f)
        if mu is None:
            continue  # Skull_Impact / Skull_Moment: disabled probes, dropped (NOTES.md fix 5)
        name = mu.getName()
        muscles.append(
            [
                name, "left" if name.endswith("_L") else "right",
                mu.getMaxIsometricForce(), mu.getOptimalFiberLength(),
                mu.getTendonSlackLength(), mu.getPennationAngleAtOptimalFiberLength(),
                mu.getMaxContractionVelocity(), SOURCE,
            ]
        )  # fmt: skip
        ps = mu.getGeometryPath().getPathPointSet()
        for k in range(ps.getSize()):
            p = osim.PathPoint.safeDownCast(ps.get(k))
            points.append([name, k, p.getParentFrame().getName(), *_vec(p.get_location()), SOURCE])
    _write(
        "bushings.csv",
        [
            "name", "body1", "body2",
            "rot_stiffness_x_nm_per_rad", "rot_stiffness_y_nm_per_rad",
            "rot_stiffness_z_nm_per_rad",
            "rot_damping_x_nms_per_rad", "rot_damping_y_nms_per_rad", "rot_damping_z_nms_per_rad",
            "source",
        ],
        bushings,
    )  # fmt: skip
    _write(
        "muscles.csv",
        [
            "name", "side", "max_isometric_force_n", "optimal_fiber_length_m",
            "tendon_slack_length_m", "pennation_at_optimal_rad",
            "max_contraction_velocity_lopt_per_s", "source",
        ],
        muscles,
    )  # fmt: skip
    _write(
        "muscle_path_points.csv",
        ["muscle", "index", "body", "x_m", "y_m", "z_m", "source"],
        points,
    )
    groups = []
    for i in range(forces.getNumGroups()):
        g = forces.getGroup(i)
        members = g.getPropertyByName("members").toString().strip("() ").split()
        for m in members:
            groups.append([g.getName(), m, SOURCE])
    _write("muscle_groups.csv", ["group", "muscle", "source"], groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="HYOID 1.2 .osim file")
    derive(parser.parse_args().reference)


if __name__ == "__main__":
    main()
