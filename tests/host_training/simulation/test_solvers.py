"""The fast solver against OpenSim's static optimisation (a CI-sized subset; the full comparison
is ``cervical bench simulate``), and the batched QP against an independent solver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, minimize

from edge_runtime.contracts.anthropometrics import NUMERIC_FIELDS, Anthropometrics
from host_training.model.personalise import personalise
from host_training.population.sampling import iter_blocks, load_statistics
from host_training.simulation.motions import PlaneSplit, tiny_motions, trajectory
from host_training.simulation.solvers import (
    FastSolver,
    OpenSimSolver,
    opensim_spline_kinematics,
    solve_bounded_least_squares,
)


def _subjects(n: int) -> list[Anthropometrics]:
    block = next(iter_blocks(n, 11, 0.5, load_statistics()))
    return [Anthropometrics.from_dict({"sex": str(block["sex"][i]),
                                       **{k: float(block[k][i]) for k in NUMERIC_FIELDS}})
            for i in range(n)]  # fmt: skip


@pytest.mark.slow
def test_fast_solver_agrees_with_opensim_static_optimisation() -> None:
    trials = 0
    for i, anthro in enumerate(_subjects(2)):
        anatomy = personalise(anthro)
        split = PlaneSplit.of(anatomy)
        fast, ref = FastSolver(anatomy), OpenSimSolver(anatomy)
        fmax = fast.dynamics.fmax_n
        specs = tiny_motions(7, i)
        for spec in (specs[0], specs[2]) if i == 0 else (specs[1], specs[4]):
            traj = trajectory(spec, split)
            rf = fast.solve(opensim_spline_kinematics(traj))
            rr = ref.solve(traj)
            np.testing.assert_array_equal(rf.feasible, rr.feasible)
            ok = rf.feasible
            assert ok.any()
            diff = rf.forces_n[ok] - rr.forces_n[ok]
            assert np.abs(diff).max() <= 2.0, spec.motion_id
            assert (np.sqrt(np.mean(diff**2, axis=0)) <= 0.01 * fmax).all(), spec.motion_id
            trials += 1
    assert trials == 4


def test_moment_balance_holds_on_every_feasible_frame() -> None:
    anatomy = personalise(_subjects(1)[0])
    solver = FastSolver(anatomy)
    split = PlaneSplit.of(anatomy)
    for spec in tiny_motions(7, 0):
        r = solver.solve(trajectory(spec, split))
        balance = r.muscle_moments_nm + r.reserves_nm - r.id_moments_nm
        scale = np.maximum(1.0, np.abs(r.id_moments_nm))
        assert (np.abs(balance[r.feasible]) <= 1e-6 * scale[r.feasible]).all(), spec.motion_id
        assert (r.activations >= 0).all() and (r.activations <= 1 + 1e-12).all()
        assert np.isfinite(r.forces_n).all()


def test_batched_qp_matches_an_independent_solver() -> None:
    rng = np.random.default_rng(4)
    n, k = 6, 20
    b = np.concatenate([rng.normal(size=(n, 6, k)) * 5, np.broadcast_to(np.eye(6), (n, 6, 6))],
                       axis=2)  # fmt: skip
    m = rng.normal(size=(n, 6)) * 8  # large enough that some activations hit their bound
    upper = np.concatenate([np.ones((n, k)), np.full((n, 6), np.inf)], axis=1)
    x, converged = solve_bounded_least_squares(b, m, upper)
    assert converged.all()
    bounds = Bounds([0.0] * k + [-np.inf] * 6, [1.0] * k + [np.inf] * 6)
    for i in range(n):
        ref = minimize(lambda v: 0.5 * v @ v, np.zeros(k + 6), jac=lambda v: v,
                       hess=lambda v: np.eye(k + 6), method="trust-constr", bounds=bounds,
                       constraints=[LinearConstraint(b[i], m[i], m[i])],
                       options={"gtol": 1e-12, "xtol": 1e-12, "maxiter": 5000})  # fmt: skip
        np.testing.assert_allclose(b[i] @ x[i], m[i], atol=1e-9)
        # ours is the optimum: never worse than the interior-point reference, and close to it
        assert 0.5 * x[i] @ x[i] <= 0.5 * ref.x @ ref.x + 1e-9
        np.testing.assert_allclose(x[i], ref.x, atol=1e-4)
    assert (x[:, :k] >= 1.0 - 1e-12).any()  # the bound was active somewhere
