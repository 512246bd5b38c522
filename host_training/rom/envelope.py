"""Envelope simulation: the head-on-trunk orientations a personalised model reaches and can hold.

A posture, given in the contract neck angles, is *reachable* when

1. the model's coordinates for it lie inside their ranges (joint ranges, Vasavada 1998, applied to
   the six independent coordinates; the couplers set every level), and
2. the muscles can hold it statically against gravity and the passive bushings: the static
   optimisation (the training data's own solver, velocities and accelerations zero) balances it
   with every activation <= 1 and no reserve torque (``HOLD_TOLERANCE_NM``; the reserves are made
   so weak that they only carry what the muscles cannot).

Passive fibre force is left out, as in OpenSim's static optimisation that produced the training
forces; the envelope is the model's, not a tissue-level one.

Contract angles map to coordinates through the motion library's plane split (each plane's angle
shared between the upper and lower cervical spine); the small difference between those design
angles and the contract angles (the eight levels' rotations do not commute) is removed by a fixed-
point iteration on the model's forward kinematics, so the envelope is exactly in what a hub
measures.

Rays from a start posture are scanned outwards in ``scan_step`` steps; the boundary is refined by
bisection between the last reachable and the first unreachable step. All postures of all rays go
through the solver as one batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.envelope import (
    GRID_FIELDS,
    EnvelopeGrid,
    MotionEnvelope,
    grid_nodes,
)
from edge_runtime.contracts.neck_angles import neck_angles_from_rotation
from host_training.model.personalise import personalise, reference_anthropometrics
from host_training.simulation.motions import PlaneSplit, Trajectory
from host_training.simulation.solvers import FastSolver

FloatArray = npt.NDArray[np.float64]
_LIMIT_TOLERANCE_RAD = 1e-9
# Hold test: reserves of 10 mN·m strength cost 1e4x per N·m^2 more than a 1 N·m muscle, so they
# carry torque only where the muscles at activation 1 cannot; above this, it is not held.
HOLD_RESERVE_STRENGTH_NM = 1e-2
HOLD_TOLERANCE_NM = 0.01


@dataclass(frozen=True)
class EnvelopeResolution:
    """The direction grids (deg) and the ray search; the defaults go into model bundles."""

    planar_step_deg: float = 10.0
    axial_levels_deg: tuple[float, ...] = (-50.0, -25.0, 0.0, 25.0, 50.0)
    offset_extension_deg: tuple[float, ...] = (-40.0, -20.0, 0.0, 20.0, 40.0, 60.0)
    offset_bend_deg: tuple[float, ...] = (-30.0, -15.0, 0.0, 15.0, 30.0)
    scan_step_deg: float = 2.0
    max_radius_deg: float = 110.0
    refine_iterations: int = 6

    @classmethod
    def coarse(cls) -> EnvelopeResolution:
        """A quick grid for tests and the demo: 30 deg directions, 3 levels, 3x3 offsets."""
        return cls(
            planar_step_deg=30.0,
            axial_levels_deg=(-40.0, 0.0, 40.0),
            offset_extension_deg=(-30.0, 0.0, 40.0),
            offset_bend_deg=(-20.0, 0.0, 20.0),
            scan_step_deg=4.0,
            refine_iterations=5,
        )


# Default anthropometric grid nodes: about the 1st..99th percentiles of the population (ANSUR II
# adults) and the head-mass range of Beier 1980; outside them the envelope is clamped (reported).
DEFAULT_GRID_AXES: dict[str, tuple[float, ...]] = {
    "neck_length_m": (0.08, 0.115, 0.15),
    "shoulder_width_m": (0.33, 0.44),
    "head_mass_kg": (3.5, 4.6, 6.0),
    "body_mass_kg": (45.0, 75.0, 120.0),
}
COARSE_GRID_AXES: dict[str, tuple[float, ...]] = {
    "neck_length_m": (0.09, 0.14),
    "shoulder_width_m": (0.38,),
    "head_mass_kg": (3.5, 6.0),
    "body_mass_kg": (50.0, 110.0),
}


class EnvelopeSimulator:
    """One subject's personalised model, asked which contract-angle postures it reaches."""

    def __init__(self, subject: Anthropometrics) -> None:
        self.subject = subject
        anatomy = personalise(subject)
        self.split = PlaneSplit.of(anatomy)
        self.solver = FastSolver(anatomy, reserve_optimal_force_nm=HOLD_RESERVE_STRENGTH_NM)
        self.kinematics = self.solver.dynamics.kinematics
        self._limits = np.array(self.split.limits_rad)  # (3, 2) design-angle limits per plane

    def contract_angles(self, design_rad: FloatArray) -> FloatArray:
        """Design (plane-split) angles -> the contract neck angles of the model's skull."""
        q = self.split.to_coordinates(design_rad)
        return neck_angles_from_rotation(self.kinematics.head_on_trunk_rotation(q))

    def design_angles(self, target_rad: FloatArray, iterations: int = 30) -> FloatArray:
        """Design angles whose contract angles are ``target_rad`` (fixed point; NaN if none)."""
        design = np.array(target_rad, dtype=np.float64, copy=True)
        for _ in range(iterations):
            residual = target_rad - self.contract_angles(design)
            design += residual
            if np.max(np.abs(residual), initial=0.0) < 1e-10:
                break
        bad = np.any(np.abs(target_rad - self.contract_angles(design)) > 1e-6, axis=1)
        design[bad] = np.nan
        return design

    def reachable(self, target_rad: FloatArray) -> npt.NDArray[np.bool_]:
        """Which contract-angle postures (N, 3) are inside the ranges and holdable."""
        design = self.design_angles(np.atleast_2d(target_rad))
        ok = np.all(np.isfinite(design), axis=1)
        inside = np.zeros(len(design), dtype=bool)
        inside[ok] = np.all(
            (design[ok] >= self._limits[:, 0] - _LIMIT_TOLERANCE_RAD)
            & (design[ok] <= self._limits[:, 1] + _LIMIT_TOLERANCE_RAD),
            axis=1,
        )
        if inside.any():
            q = self.split.to_coordinates(design[inside])
            zeros = np.zeros_like(q)
            hold = Trajectory("envelope_hold", np.zeros(len(q)), q, zeros, zeros)
            result, converged = self.solver.solve_unchecked(hold)
            held = np.all(np.abs(result.reserves_nm) <= HOLD_TOLERANCE_NM, axis=1)
            # a QP that does not settle under such weak reserves is one that needs them
            inside[np.flatnonzero(inside)] = held & converged
        return inside

    def ray_boundaries(
        self, origins_rad: FloatArray, directions: FloatArray, resolution: EnvelopeResolution
    ) -> FloatArray:
        """Distance (rad) from each origin along each unit direction to the envelope's boundary;
        0 where the origin itself is not reachable."""
        step = math.radians(resolution.scan_step_deg)
        radii = np.arange(0.0, math.radians(resolution.max_radius_deg) + step / 2, step)
        n_rays = len(origins_rad)
        points = origins_rad[:, None, :] + radii[None, :, None] * directions[:, None, :]
        ok = self.reachable(points.reshape(-1, 3)).reshape(n_rays, radii.size)
        # first unreachable step from the origin outwards (a ray that never fails ends at the top)
        first_bad = np.where(ok.all(axis=1), radii.size, np.argmin(ok, axis=1))
        lo = np.where(first_bad > 0, radii[np.maximum(first_bad - 1, 0)], 0.0)
        hi = np.where(first_bad < radii.size, radii[np.minimum(first_bad, radii.size - 1)], lo)
        refine = (first_bad > 0) & (first_bad < radii.size)
        for _ in range(resolution.refine_iterations):
            if not refine.any():
                break
            mid = 0.5 * (lo + hi)
            probe = origins_rad[refine] + mid[refine, None] * directions[refine]
            good = self.reachable(probe)
            idx = np.flatnonzero(refine)
            lo[idx[good]] = mid[idx[good]]
            hi[idx[~good]] = mid[idx[~good]]
        return np.where(first_bad == 0, 0.0, lo)

    def envelope(self, resolution: EnvelopeResolution | None = None) -> MotionEnvelope:
        res = resolution or EnvelopeResolution()
        thetas = np.radians(np.arange(0.0, 360.0 - 1e-9, res.planar_step_deg))
        levels = np.radians(res.axial_levels_deg)
        ext = np.radians(res.offset_extension_deg)
        bend = np.radians(res.offset_bend_deg)

        planar_origin = np.array([[0.0, 0.0, r] for r in levels for _ in thetas])
        planar_dir = np.array([[math.cos(t), math.sin(t), 0.0] for _ in levels for t in thetas])
        offsets = np.array([[e, b, 0.0] for e in ext for b in bend])
        axial_origin = np.concatenate([offsets, offsets])
        axial_dir = np.concatenate(
            [
                np.tile([0.0, 0.0, 1.0], (len(offsets), 1)),
                np.tile([0.0, 0.0, -1.0], (len(offsets), 1)),
            ]
        )
        radii = self.ray_boundaries(
            np.concatenate([planar_origin, axial_origin]),
            np.concatenate([planar_dir, axial_dir]),
            res,
        )
        n_planar = len(planar_origin)
        axial = radii[n_planar:]
        return MotionEnvelope(
            planar_directions_rad=thetas,
            axial_levels_rad=levels,
            planar_radius_rad=radii[:n_planar].reshape(levels.size, thetas.size),
            offset_extension_rad=ext,
            offset_bend_rad=bend,
            axial_left_rad=axial[: len(offsets)].reshape(ext.size, bend.size),
            axial_right_rad=axial[len(offsets) :].reshape(ext.size, bend.size),
            provenance={
                "subject": self.subject.to_dict(),
                "scan_step_deg": res.scan_step_deg,
                "refine_iterations": res.refine_iterations,
            },
        )


def simulate_envelope(
    subject: Anthropometrics, resolution: EnvelopeResolution | None = None
) -> MotionEnvelope:
    return EnvelopeSimulator(subject).envelope(resolution)


def grid_subject(node: dict[str, float]) -> Anthropometrics:
    """The anthropometrics of a grid node: the reference adult with the grid's fields replaced
    (sex and stature do not enter the model)."""
    ref = reference_anthropometrics().to_dict()
    return Anthropometrics.from_dict({**ref, **node})


def _node_envelope(args: tuple[dict[str, float], EnvelopeResolution]) -> MotionEnvelope:
    node, res = args
    return simulate_envelope(grid_subject(node), res)


def simulate_envelope_grid(
    axes: Mapping[str, Sequence[float]] | None = None,
    resolution: EnvelopeResolution | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EnvelopeGrid:
    """Envelopes at every node of the anthropometric grid, in parallel processes."""
    axes_arrays = {k: np.asarray((axes or DEFAULT_GRID_AXES)[k], dtype=np.float64)
                   for k in GRID_FIELDS}  # fmt: skip
    res = resolution or EnvelopeResolution()
    nodes = grid_nodes(axes_arrays)
    for node in nodes:
        grid_subject(node)  # validates every node before any simulation starts
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(nodes)))
    envelopes: list[MotionEnvelope] = []
    if n_workers == 1:
        for node in nodes:
            envelopes.append(_node_envelope((node, res)))
            if progress:
                progress(len(envelopes), len(nodes))
    else:
        with ProcessPoolExecutor(n_workers) as pool:
            for env in pool.map(_node_envelope, [(n, res) for n in nodes]):
                envelopes.append(env)
                if progress:
                    progress(len(envelopes), len(nodes))
    return EnvelopeGrid(
        axes=axes_arrays,
        envelopes=tuple(envelopes),
        provenance={
            "resolution": {k: v for k, v in res.__dict__.items()},
            "reference": reference_anthropometrics().to_dict(),
        },
    )
