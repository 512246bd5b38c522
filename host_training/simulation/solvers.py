"""Muscle forces per frame: OpenSim's static optimisation (reference) and a batched fast solver.

Both solve, per frame, the problem OpenSim's StaticOptimization states:

    minimise   sum_i a_i^2 + sum_j c_j^2        (c_j = reserve torque / R)
    subject to sum_i a_i F_i r_ij + R c_j = M_j  for the six independent coordinates j
               0 <= a_i <= 1

with F_i the muscle's active fibre force at full activation at the frame's rigid-tendon fibre
length and velocity (Millard curves; passive fibre force and the pennation projection ignored,
as OpenSim's SO does), r_ij its moment arm about independent coordinate j (all coupled levels
included), and M the inverse-dynamics generalized forces projected onto the six independent
coordinates (M = C^T tau, C the coupling matrix). Reserves are coordinate actuators of
strength R on the six independent coordinates; a frame is ``feasible`` when every reserve
stays below ``RESERVE_FEASIBLE_NM``.

The fast solver takes inverse dynamics from OpenSim's InverseDynamicsSolver per frame, muscle
lengths, moment arms and velocities from ``FastNeckKinematics`` (numpy, all frames at once), and
solves all frames' QPs together by a semismooth Newton method on the dual (exact once the active
set settles; a handful of iterations).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from host_training.model.anatomy import INDEPENDENT_COORDINATES, Anatomy
from host_training.model.builder import build_model
from host_training.model.fast_kinematics import FastNeckKinematics
from host_training.model.opensim_env import opensim
from host_training.simulation.motions import Trajectory

FloatArray = npt.NDArray[np.float64]
RESERVE_OPTIMAL_FORCE_NM = 1.0
RESERVE_FEASIBLE_NM = 0.5
RESERVE_PREFIX = "reserve_"
_CURVE_GRID = 20_001


@dataclass(frozen=True)
class SolverResult:
    """Per-frame solution; arrays have one row per frame."""

    forces_n: FloatArray  # (N, 72) muscle forces along the tendon
    activations: FloatArray  # (N, 72)
    reserves_nm: FloatArray  # (N, 6) reserve torques about the independent coordinates
    id_moments_nm: FloatArray  # (N, 6) projected inverse-dynamics moments
    muscle_moments_nm: FloatArray  # (N, 6) sum of muscle moments
    feasible: npt.NDArray[np.bool_]  # (N,)
    activations_at_bound: npt.NDArray[np.int64]  # (N,) muscles at a = 1


def speed_coordinates(model: Any, state: Any) -> list[str]:
    """The coordinate behind each entry of the state's speed (and position) vector."""
    osim = opensim()
    coords = model.getCoordinateSet()
    nu = state.getNU()
    names = []
    for i in range(nu):
        u = osim.Vector(nu, 0.0)
        u.set(i, 1.0)
        state.setU(u)
        hits = [coords.get(k).getName() for k in range(coords.getSize())
                if coords.get(k).getSpeedValue(state) == 1.0]  # fmt: skip
        if len(hits) != 1:
            raise RuntimeError(f"speed {i} maps to {hits}")
        names.append(hits[0])
    state.setU(osim.Vector(nu, 0.0))
    return names


def coupling_matrix(anatomy: Anatomy, coordinates: list[str]) -> FloatArray:
    """C (n_coordinates, 6): every coordinate as a linear function of the six independent ones."""
    c = np.zeros((len(coordinates), 6))
    for row, name in enumerate(coordinates):
        if name in INDEPENDENT_COORDINATES:
            c[row, INDEPENDENT_COORDINATES.index(name)] = 1.0
    for cp in anatomy.couplers:
        c[coordinates.index(cp.dependent_coordinate),
          INDEPENDENT_COORDINATES.index(cp.independent_coordinate)] = cp.ratio  # fmt: skip
    return c


@functools.cache
def _curve_tables() -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The active force-length and force-velocity curves of the builder's muscles, tabulated from
    OpenSim (every muscle uses the Millard defaults; a test checks this against each muscle)."""
    model = build_model()
    model.initSystem()
    muscle = opensim().Millard2012EquilibriumMuscle.safeDownCast(model.getMuscles().get(0))
    afl, fv = muscle.getActiveForceLengthCurve(), muscle.getForceVelocityCurve()
    x_l = np.linspace(0.0, 2.5, _CURVE_GRID)
    x_v = np.linspace(-1.2, 1.2, _CURVE_GRID)
    y_l = np.array([afl.calcValue(float(x)) for x in x_l])
    y_v = np.array([fv.calcValue(float(x)) for x in x_v])
    return x_l, y_l, x_v, y_v


class SubjectDynamics:
    """A subject's OpenSim model for inverse dynamics plus its fast kinematics and muscle data."""

    def __init__(self, anatomy: Anatomy) -> None:
        osim = opensim()
        self.anatomy = anatomy
        self.model = build_model(anatomy)
        muscles = self.model.updMuscles()
        for i in range(muscles.getSize()):
            muscles.get(i).set_appliesForce(False)  # ID: the generalized forces muscles must supply
        self.state = self.model.initSystem()
        self.coordinates = speed_coordinates(self.model, self.state)
        self.coupling = coupling_matrix(anatomy, self.coordinates)  # (NU, 6)
        self._id = osim.InverseDynamicsSolver(self.model)
        self.kinematics = FastNeckKinematics(anatomy)
        self.muscle_names = anatomy.muscle_names()
        self.fmax_n = np.array([m.max_isometric_force_n for m in anatomy.muscles])
        self._lopt = np.array([m.optimal_fiber_length_m for m in anatomy.muscles])
        self._lts = np.array([m.tendon_slack_length_m for m in anatomy.muscles])
        self._height = self._lopt * np.sin([m.pennation_at_optimal_rad for m in anatomy.muscles])
        self._vmax = self._lopt * np.array(
            [m.max_contraction_velocity_lopt_per_s for m in anatomy.muscles]
        )
        # Millard: the fibre never shortens below its minimum length (pennation <= ~84 deg)
        max_pennation = math.acos(0.1)
        self._min_fiber = np.maximum(self._height / math.sin(max_pennation), 0.01 * self._lopt)

    def inverse_dynamics_nm(self, traj: Trajectory) -> FloatArray:
        """Projected ID moments M = C^T tau about the six independent coordinates, (N, 6)."""
        osim = opensim()
        nu = self.state.getNU()
        q_all = traj.q_rad @ self.coupling.T
        u_all = traj.qd_rad_s @ self.coupling.T
        a_all = traj.qdd_rad_s2 @ self.coupling.T
        tau = np.empty((len(traj.t_s), nu))
        from_numpy = osim.Vector.createFromMat
        for k in range(len(traj.t_s)):
            self.state.setQ(from_numpy(q_all[k]))
            self.state.setU(from_numpy(u_all[k]))
            # solve() realizes the state to velocity itself
            tau[k] = self._id.solve(self.state, from_numpy(a_all[k])).to_numpy()
        return np.asarray(tau @ self.coupling)

    def capacity_n(self, lengths_m: FloatArray, speeds_m_s: FloatArray) -> FloatArray:
        """Force at full activation, (N, 72), as OpenSim's static optimisation takes it.

        OpenSim uses ``calcInextensibleTendonActiveFiberForce``: Fmax x fL x fV at the
        rigid-tendon fibre length and velocity, *without* projecting the fibre force onto the
        tendon (no cos(pennation)). We copy that so the two solvers agree; the projection would
        lower capacities by 1 - cos(pennation), at most 3% here (digastric, 14 deg).
        """
        x_l, y_l, x_v, y_v = _curve_tables()
        along = np.maximum(lengths_m - self._lts, 1e-9)
        fiber = np.maximum(np.sqrt(self._height**2 + along**2), self._min_fiber)
        cos_pennation = np.clip(along / fiber, 0.0, 1.0)
        fiber_speed = speeds_m_s * cos_pennation
        f_l = np.interp(fiber / self._lopt, x_l, y_l)
        f_v = np.interp(np.clip(fiber_speed / self._vmax, -1.2, 1.2), x_v, y_v)
        return np.asarray(self.fmax_n * f_l * f_v)


def solve_bounded_least_squares(
    b: FloatArray, m: FloatArray, upper: FloatArray, iterations: int = 60
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """min ||x||^2 / 2 s.t. B x = m, 0 <= x <= upper (inf = free) for every frame at once.

    ``b`` (N, 6, K), ``m`` (N, 6), ``upper`` (N, K) (lower bound 0 for finite-upper variables,
    -inf for free ones). Dual: x = clip(B^T lam), and lam maximises the concave
    D(lam) = lam.m - sum_k phi((B^T lam)_k), phi(y) = c y - c^2/2 with c = clip(y). Newton steps
    on D's piecewise-linear gradient m - B x, with backtracking (Armijo) per frame; exact once the
    active set settles. Returns x and each frame's convergence flag.
    """
    free = ~np.isfinite(upper)
    lower_all = np.where(free, -np.inf, 0.0)
    lam_all = np.zeros(m.shape)
    converged = np.zeros(m.shape[0], dtype=bool)
    # Every frame is its own problem: each iteration works on the frames not yet converged only
    # (the same arithmetic per frame as on the whole batch, so the same bits; tested)
    rows = np.arange(m.shape[0])
    for _ in range(iterations):
        bb, mm, lo, hi = b[rows], m[rows], lower_all[rows], upper[rows]
        lam = lam_all[rows]
        y, x = _primal(bb, lam, lo, hi)
        gradient = mm - np.einsum("njk,nk->nj", bb, x)
        done = np.all(np.abs(gradient) <= 1e-9 * (1.0 + np.abs(mm)), axis=1)
        converged[rows] = done
        if done.all():
            break
        # variables inside their bounds, and at a finite bound (lets the first step from lam = 0
        # be the unconstrained least-norm solution)
        active = (y >= lo) & (y <= hi)
        jac = np.einsum("njk,nk,nlk->njl", bb, active.astype(np.float64), bb)
        jac += 1e-12 * np.eye(m.shape[1])
        step = np.linalg.solve(jac, gradient[..., None])[..., 0]
        base = _dual(bb, mm, lam, lo, hi)
        slope = np.einsum("nj,nj->n", gradient, step)
        t = np.ones(len(rows))
        pending = ~done
        for _ in range(30):
            trial = _dual(bb, mm, lam + t[:, None] * step, lo, hi)
            ok = trial >= base + 1e-4 * t * slope - 1e-14 * np.abs(base)
            pending &= ~ok
            if not pending.any():
                break
            t = np.where(pending, 0.5 * t, t)
        lam_all[rows] = np.where(done[:, None], lam, lam + t[:, None] * step)
        rows = rows[~done]
    return _primal(b, lam_all, lower_all, upper)[1], converged


def _primal(
    b: FloatArray, lam: FloatArray, lower: FloatArray, upper: FloatArray
) -> tuple[FloatArray, FloatArray]:
    y = np.einsum("njk,nj->nk", b, lam)
    return y, np.clip(y, lower, upper)


def _dual(
    b: FloatArray, m: FloatArray, lam: FloatArray, lower: FloatArray, upper: FloatArray
) -> FloatArray:
    y, x = _primal(b, lam, lower, upper)
    return np.asarray(np.einsum("nj,nj->n", lam, m) - np.sum(x * y - 0.5 * x * x, axis=1))


class FastSolver:
    """Batched static optimisation for one subject."""

    name = "fast"
    per_frame = True  # every frame solved on its own: motions may be solved as one batch

    def __init__(
        self, anatomy: Anatomy, reserve_optimal_force_nm: float = RESERVE_OPTIMAL_FORCE_NM
    ) -> None:
        self.dynamics = SubjectDynamics(anatomy)
        # A tiny reserve strength makes reserve torque so costly that the solver uses it only
        # where the muscles at full activation cannot supply the moment (the envelope's hold test).
        self.reserve_optimal_force_nm = reserve_optimal_force_nm
        self.inverse_dynamics_cpu_s = 0.0  # of all solves so far (cervical bench scale)

    def solve(self, traj: Trajectory) -> SolverResult:
        result, converged = self.solve_unchecked(traj)
        if not converged.all():
            raise RuntimeError(
                f"{traj.motion_id}: QP did not converge on {int((~converged).sum())} frames"
            )
        return result

    def solve_unchecked(self, traj: Trajectory) -> tuple[SolverResult, npt.NDArray[np.bool_]]:
        """The solution and each frame's convergence flag (callers decide what non-convergence
        means; deeply infeasible postures under very weak reserves may not converge)."""
        d = self.dynamics
        started = time.process_time()
        moments = d.inverse_dynamics_nm(traj)
        self.inverse_dynamics_cpu_s += time.process_time() - started
        lengths, arms = d.kinematics.lengths_and_moment_arms(traj.q_rad)  # (N,M), (N,M,6)
        speeds = -np.einsum("nmj,nj->nm", arms, traj.qd_rad_s)  # dL/dt = -r . qdot
        capacity = d.capacity_n(lengths, speeds)
        n, n_m = capacity.shape
        b = np.concatenate(
            [np.einsum("nm,nmj->njm", capacity, arms),
             np.broadcast_to(self.reserve_optimal_force_nm * np.eye(6), (n, 6, 6))], axis=2
        )  # fmt: skip
        upper = np.concatenate([np.ones((n, n_m)), np.full((n, 6), np.inf)], axis=1)
        x, converged = solve_bounded_least_squares(b, moments, upper)
        activations = x[:, :n_m]
        forces = activations * capacity
        reserves = self.reserve_optimal_force_nm * x[:, n_m:]
        result = _result(
            forces, activations, reserves, moments, np.einsum("nm,nmj->nj", forces, arms)
        )
        return result, converged


def _result(
    forces: FloatArray, activations: FloatArray, reserves: FloatArray,
    moments: FloatArray, muscle_moments: FloatArray,
) -> SolverResult:  # fmt: skip
    return SolverResult(
        forces_n=forces,
        activations=activations,
        reserves_nm=reserves,
        id_moments_nm=moments,
        muscle_moments_nm=muscle_moments,
        feasible=np.all(np.abs(reserves) <= RESERVE_FEASIBLE_NM, axis=1),
        activations_at_bound=np.sum(activations >= 1.0 - 1e-9, axis=1),
    )


class OpenSimSolver:
    """The reference: OpenSim's AnalyzeTool + StaticOptimization, in memory, with reserves."""

    name = "opensim"

    def __init__(self, anatomy: Anatomy) -> None:
        osim = opensim()
        self.dynamics = SubjectDynamics(anatomy)  # projected ID moments for the QC fields
        self.model = build_model(anatomy)
        for name in INDEPENDENT_COORDINATES:
            act = osim.CoordinateActuator(name)
            act.setName(RESERVE_PREFIX + name)
            act.setOptimalForce(RESERVE_OPTIMAL_FORCE_NM)
            act.setMinControl(-math.inf)
            act.setMaxControl(math.inf)
            self.model.addForce(act)
        self.state = self.model.initSystem()

    def _motion_storage(self, traj: Trajectory) -> Any:
        """All coordinate values (rad), one column per coordinate name, as OpenSim reads a .mot."""
        osim = opensim()
        d = self.dynamics
        q_all = traj.q_rad @ d.coupling.T
        labels = osim.ArrayStr()
        labels.append("time")
        for name in d.coordinates:
            labels.append(name)
        store = osim.Storage()
        store.setColumnLabels(labels)
        store.setInDegrees(False)
        row = osim.Vector(len(d.coordinates), 0.0)
        for k, t in enumerate(traj.t_s):
            for i in range(len(d.coordinates)):
                row.set(i, float(q_all[k, i]))
            store.append(float(t), row)
        return store

    def solve(self, traj: Trajectory) -> SolverResult:
        osim = opensim()
        model = self.model
        so = osim.StaticOptimization()
        so.setStartTime(float(traj.t_s[0]))
        so.setEndTime(float(traj.t_s[-1]))
        so.setUseModelForceSet(True)
        so.setActivationExponent(2.0)
        so.setUseMusclePhysiology(True)
        so.setConvergenceCriterion(1e-10)
        so.setMaxIterations(1000)
        tool = osim.AnalyzeTool(model)
        tool.setModel(model)
        tool.setLoadModelAndInput(False)
        tool.setStatesFromMotion(self.state, self._motion_storage(traj), False)
        tool.setInitialTime(float(traj.t_s[0]))
        tool.setFinalTime(float(traj.t_s[-1]))
        tool.setPrintResultFiles(False)
        tool.setSolveForEquilibrium(False)
        model.addAnalysis(so)
        # Ipopt's per-frame complaints go to the log at warning level; feasibility is judged
        # from the reserves afterwards, so keep the console to errors while it runs.
        osim.Logger.setLevelString("error")
        try:
            if not tool.run():
                raise RuntimeError(f"{traj.motion_id}: OpenSim static optimisation failed")
            forces_store = so.getForceStorage()
            activ_store = so.getActivationStorage()
            forces = _storage_columns(forces_store, self.dynamics.muscle_names)
            activations = _storage_columns(activ_store, self.dynamics.muscle_names)
            reserves = _storage_columns(
                forces_store, tuple(RESERVE_PREFIX + n for n in INDEPENDENT_COORDINATES)
            )
        finally:
            osim.Logger.setLevelString("warn")
            model.removeAnalysis(so, False)
        moments = self.dynamics.inverse_dynamics_nm(traj)
        _, arms = self.dynamics.kinematics.lengths_and_moment_arms(traj.q_rad)
        return _result(
            forces, activations, reserves, moments, np.einsum("nm,nmj->nj", forces, arms)
        )


def _storage_columns(store: Any, names: tuple[str, ...]) -> FloatArray:
    osim = opensim()
    out = np.empty((store.getSize(), len(names)))
    for j, name in enumerate(names):
        col = osim.ArrayDouble()
        store.getDataColumn(name, col)
        out[:, j] = [col.get(i) for i in range(col.getSize())]
    return out


def opensim_spline_kinematics(traj: Trajectory) -> Trajectory:
    """``traj`` with velocities and accelerations as OpenSim's AnalyzeTool derives them.

    The tool differentiates the motion with quintic GCV splines (speeds from the coordinates'
    spline, accelerations from the speeds' spline). Feeding the fast solver these derivatives makes
    the two solvers solve the same problem frame by frame, for the side-by-side comparison.
    """
    osim = opensim()

    def derivative(values: FloatArray) -> FloatArray:
        labels = osim.ArrayStr()
        labels.append("time")
        for j in range(values.shape[1]):
            labels.append(f"c{j}")
        store = osim.Storage()
        store.setColumnLabels(labels)
        row = osim.Vector(values.shape[1], 0.0)
        for k, t in enumerate(traj.t_s):
            for j in range(values.shape[1]):
                row.set(j, float(values[k, j]))
            store.append(float(t), row)
        splines = osim.GCVSplineSet(5, store)
        return np.array([[splines.evaluate(j, 1, float(t)) for j in range(values.shape[1])]
                         for t in traj.t_s])  # fmt: skip

    qd = derivative(traj.q_rad)
    return Trajectory(traj.motion_id, traj.t_s, traj.q_rad, qd, derivative(qd))


class Solver(Protocol):
    name: str
    dynamics: SubjectDynamics

    def solve(self, traj: Trajectory) -> SolverResult: ...


SOLVERS: dict[str, Callable[[Anatomy], Solver]] = {"fast": FastSolver, "opensim": OpenSimSolver}
