"""Build the 72-muscle head–neck OpenSim model from anatomy tables, in memory.

The structure copies HYOID 1.2 so that results stay comparable with the literature: bodies,
muscles and the six independent coordinates keep their names; every cervical level is a
3-rotation CustomJoint (z flexion/extension, then x lateral bending, then y axial rotation) whose
angles are fixed fractions of the independent coordinates (joint-axis ratios at C7–T1 and C1–C2,
18 linear couplers elsewhere). Deviations from the reference are listed in ``anatomy/NOTES.md``:
rigid tendons and a minimum activation of 0, among others.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edge_runtime.common.atomic import atomic_path
from host_training.model.anatomy import Anatomy, JointSpec, load_anatomy
from host_training.model.opensim_env import opensim

MODEL_BUILDER_VERSION = "1.0.0"
GRAVITY_M_S2 = 9.80665
CITATION = (
    "Geometry and muscle parameters: Mortensen, Vasavada & Merryweather 2018, PLOS ONE "
    "13(6):e0199912 (HYOID 1.2, MIT). Built by cervical model builder " + MODEL_BUILDER_VERSION
)
# Activation bounds for static optimisation: 0 lets a muscle switch off entirely (the reference's
# 0.01 forces co-contraction into every solution).
MIN_ACTIVATION = 0.0
MAX_ACTIVATION = 1.0


def _vec3(v: tuple[float, float, float]) -> Any:
    return opensim().Vec3(*v)


def _adopt(component_set: Any, component: Any) -> None:
    """Append to a model's set without re-finalising the model.

    ``Model.addForce`` & co. re-finalise the whole model on every call (quadratic: 50 ms for 72
    muscles); appending to the set and connecting once at the end gives the same model.
    """
    component_set.adoptAndAppend(component)
    component._markAdopted()  # the set owns it now: Python must not free it


def _custom_joint(anatomy: Anatomy, spec: JointSpec, parent: Any, child: Any) -> Any:
    osim = opensim()
    st = osim.SpatialTransform()
    axes = [a for a in anatomy.joint_axes if a.joint == spec.name]
    for k, a in enumerate(axes):
        ax = st.updTransformAxis(k)
        names = osim.ArrayStr()
        names.append(a.coordinate)
        ax.setCoordinateNames(names)
        ax.setAxis(_vec3(a.axis))
        ax.set_function(osim.LinearFunction(a.ratio, 0.0))  # set_* copies
    # Translations stay constant zero; their axes must still be independent.
    for k, axis in ((3, (1.0, 0.0, 0.0)), (4, (0.0, 1.0, 0.0)), (5, (0.0, 0.0, 1.0))):
        st.updTransformAxis(k).setAxis(_vec3(axis))
        st.updTransformAxis(k).set_function(osim.Constant(0.0))
    joint = osim.CustomJoint(
        spec.name,
        parent,
        _vec3(spec.parent_offset_m),
        _vec3(spec.parent_orientation_rad),
        child,
        _vec3(spec.child_offset_m),
        _vec3(spec.child_orientation_rad),
        st,
    )
    return joint


def build_model(anatomy: Anatomy | None = None, name: str = "cervical_hyoid") -> Any:
    """An ``opensim.Model`` (not yet initialised) from ``anatomy`` (default: the reference)."""
    osim = opensim()
    anatomy = anatomy or load_anatomy()
    model = osim.Model()
    model.setName(name)
    model.setGravity(osim.Vec3(0.0, -GRAVITY_M_S2, 0.0))
    model.set_credits(CITATION)
    bodies: dict[str, Any] = {"ground": model.updGround()}
    for b in anatomy.bodies:
        inertia = osim.Inertia(*b.inertia_moments_kg_m2, *b.inertia_products_kg_m2)
        body = osim.Body(b.name, b.mass_kg, _vec3(b.com_m), inertia)
        _adopt(model.updBodySet(), body)
        bodies[b.name] = body
    for j in anatomy.joints:
        parent, child = bodies[j.parent_body], bodies[j.child_body]
        if j.kind == "weld":
            joint = osim.WeldJoint(
                j.name,
                parent,
                _vec3(j.parent_offset_m),
                _vec3(j.parent_orientation_rad),
                child,
                _vec3(j.child_offset_m),
                _vec3(j.child_orientation_rad),
            )
        else:
            joint = _custom_joint(anatomy, j, parent, child)
        _adopt(model.updJointSet(), joint)
    for c in anatomy.couplers:
        con = osim.CoordinateCouplerConstraint()
        con.setName(c.name)
        names = osim.ArrayStr()
        names.append(c.independent_coordinate)
        con.setIndependentCoordinateNames(names)
        con.setDependentCoordinateName(c.dependent_coordinate)
        con.setFunction(osim.LinearFunction(c.ratio, 0.0))  # copies its argument
        _adopt(model.updConstraintSet(), con)
    for bu in anatomy.bushings:
        force = osim.BushingForce(
            bu.name,
            bodies[bu.body1],
            bodies[bu.body2],
            osim.Vec3(0.0),
            _vec3(bu.rot_stiffness_nm_per_rad),
            osim.Vec3(0.0),
            _vec3(bu.rot_damping_nms_per_rad),
        )
        _adopt(model.updForceSet(), force)
    for m in anatomy.muscles:
        muscle = osim.Millard2012EquilibriumMuscle(
            m.name,
            m.max_isometric_force_n,
            m.optimal_fiber_length_m,
            m.tendon_slack_length_m,
            m.pennation_at_optimal_rad,
        )
        muscle.set_max_contraction_velocity(m.max_contraction_velocity_lopt_per_s)
        # Rigid tendon: OpenSim's static optimisation ignores tendon compliance anyway, and the
        # equilibrium solve of 72 elastic tendons costs time and fails at extreme postures.
        muscle.set_ignore_tendon_compliance(True)
        muscle.set_minimum_activation(MIN_ACTIVATION)
        muscle.setMinControl(MIN_ACTIVATION)
        muscle.setMaxControl(MAX_ACTIVATION)
        for p in m.path:
            muscle.addNewPathPoint(f"{m.name}-P{p.index + 1}", bodies[p.body], _vec3(p.location_m))
        _adopt(model.updForceSet(), muscle)
    groups: dict[str, list[str]] = {}
    for group, member in anatomy.muscle_groups:
        groups.setdefault(group, []).append(member)
    force_set = model.updForceSet()
    for group, members in groups.items():
        force_set.addGroup(group)
        for member in members:
            force_set.addObjectToGroup(group, member)
    model.finalizeFromProperties()  # creates the joints' coordinates from their transforms
    _set_coordinate_properties(model, anatomy)
    model.finalizeConnections()
    return model


def _set_coordinate_properties(model: Any, anatomy: Anatomy) -> None:
    coordinates = model.updCoordinateSet()
    for c in anatomy.coordinates:
        coord = coordinates.get(c.name)
        coord.setRangeMin(math.radians(c.range_min_deg))
        coord.setRangeMax(math.radians(c.range_max_deg))
        coord.setDefaultValue(0.0)
        coord.setDefaultClamped(c.role == "independent")
        coord.setDefaultLocked(c.role == "thorax_locked")


def write_model(model: Any, out: Path) -> Path:
    """Write ``model`` to ``out`` (.osim) atomically: a failed write leaves no partial file."""
    with atomic_path(out) as tmp:
        if not model.printToXML(str(tmp)):
            raise OSError(f"OpenSim could not write {out}")
    return out
