"""Forces end to end from simulated IMUs, against physics on the true kinematics.

For subjects the network never saw (the last ids of the dataset's population, none of them
simulated for it) and everyday motions it never saw (the trajectory families of the everyday set
drawn with another seed), each subject wears the simulated head and trunk IMUs
(``edge_runtime.imu_sim``: sensor noise, biases, mounting misalignment, a moving trunk) through
one session: the sensors settle, the wearer sits in neutral and nods (the hub's calibration),
then performs the motions one after another, joined by 1 s minimum-jerk transitions. The hub's
IMU path (``neck_kinematics_from_imus``: VQF fusion, calibration, Savitzky-Golay derivatives;
equal to the streaming pipeline within 1e-9 rad, tested) gives the network's inputs; the forces
it predicts (float, and int8 where the run has been converted) are compared with the fast static
optimisation on the true coordinates and their analytic derivatives, over every motion frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.neck_angles import rotation_from_neck_angles
from edge_runtime.synthetic import HOLD_S, NEUTRAL_S, RATE_HZ, STROKE_OUT_S, WARMUP_S
from host_training.learning.metrics import force_metrics
from host_training.simulation.everyday import minimum_jerk

FloatArray = npt.NDArray[np.float64]
# the settling, neutral and nod timings of the assessment protocol's own simulation
NOD_STROKE_S, NOD_HOLD_S = STROKE_OUT_S, HOLD_S
NOD_DEG = 30.0
TRANSITION_S = 1.0
TAIL_S = 1.0  # a still end, so that the last motion frames have a full derivative window
HUB_MOTION_SEED_OFFSET = 1_000_003  # another seed: motions nobody trained on
HUB_FAMILIES = ("point_to_point", "oscillation", "sway_hold", "multi_axis", "random_smooth")


@dataclass(frozen=True)
class SubjectSession:
    t_s: FloatArray
    neck_rotation: FloatArray  # (N, 3, 3) true head-on-trunk rotation
    motion_rows: npt.NDArray[np.int64]  # session rows of the evaluated motion frames
    true_forces_n: FloatArray  # (len(motion_rows), 72)
    exact_inputs: FloatArray  # (len(motion_rows), 9) neck kinematics as the dataset holds them
    neutral_s: tuple[float, float]
    nod_s: tuple[float, float]


def unseen_subjects(population: Path, simulated: set[int], n: int) -> list[int]:
    """The last ``n`` ids of the population that the dataset did not simulate."""
    from host_training.errors import DatasetError
    from host_training.population.sampling import population_size

    size = population_size(population)
    ids = [i for i in range(size - 1, -1, -1) if i not in simulated][:n]
    if not ids:
        raise DatasetError(
            f"{population} holds no subject the dataset did not simulate: give a larger "
            "population (a larger one drawn with the same seed starts with the same people)"
        )
    return sorted(ids)


def _min_jerk(a: FloatArray, b: FloatArray, seconds: float) -> FloatArray:
    tau = np.arange(round(seconds * RATE_HZ)) / (seconds * RATE_HZ)
    return np.asarray(a + minimum_jerk(tau)[:, None] * (b - a))


def _calibration_rotations() -> FloatArray:
    """Warm-up and neutral, then a flexion nod (contract angles: flexion is negative extension)."""
    still = np.zeros((round((WARMUP_S + NEUTRAL_S) * RATE_HZ), 3))
    rise = 0.5 - 0.5 * np.cos(
        math.pi * np.arange(round(NOD_STROKE_S * RATE_HZ)) / (NOD_STROKE_S * RATE_HZ)
    )
    shape = np.concatenate([rise, np.ones(round(NOD_HOLD_S * RATE_HZ)), rise[::-1],
                            np.zeros(round(0.5 * RATE_HZ))])  # fmt: skip
    nod = shape[:, None] * np.array([-math.radians(NOD_DEG), 0.0, 0.0])
    return rotation_from_neck_angles(np.concatenate([still, nod]))


def subject_session(subject_id: int, population: Path, seed: int) -> tuple[Any, SubjectSession]:
    """The subject's anthropometrics and session (module docstring)."""
    from host_training.model.personalise import personalise
    from host_training.population.sampling import subject_anthropometrics
    from host_training.simulation.dataset import neck_features
    from host_training.simulation.motions import PlaneSplit, everyday_motions, trajectory
    from host_training.simulation.solvers import FastSolver

    anthro = subject_anthropometrics(population, subject_id)
    anatomy = personalise(anthro)
    solver = FastSolver(anatomy)
    kin = solver.dynamics.kinematics
    split = PlaneSplit.of(anatomy)
    specs = [s for s in everyday_motions(seed, subject_id) if s.family in HUB_FAMILIES]
    pieces = [_calibration_rotations()]
    rows, forces, exact = [], [], []
    at = len(pieces[0])
    q_last = np.zeros(6)
    for spec in specs:
        traj = trajectory(spec, split)
        q_to = _min_jerk(q_last, traj.q_rad[0], TRANSITION_S)
        pieces += [kin.head_on_trunk_rotation(q_to), kin.head_on_trunk_rotation(traj.q_rad)]
        at += len(q_to)
        rows.append(np.arange(at, at + len(traj.t_s)))
        at += len(traj.t_s)
        result, _ = solver.solve_unchecked(traj)
        forces.append(result.forces_n)
        exact.append(neck_features(kin, traj))
        q_last = traj.q_rad[-1]
    pieces.append(kin.head_on_trunk_rotation(np.repeat(q_last[None], round(TAIL_S * RATE_HZ), 0)))
    rotation = np.concatenate(pieces)
    nod_start = WARMUP_S + NEUTRAL_S
    session = SubjectSession(
        t_s=np.arange(len(rotation)) / RATE_HZ,
        neck_rotation=rotation,
        motion_rows=np.concatenate(rows),
        true_forces_n=np.concatenate(forces),
        exact_inputs=np.concatenate(exact),
        neutral_s=(WARMUP_S + 0.5, WARMUP_S + NEUTRAL_S - 0.5),
        nod_s=(nod_start, nod_start + 2 * NOD_STROKE_S + NOD_HOLD_S),
    )
    return anthro, session


def hub_inputs(session: SubjectSession, seed: int) -> FloatArray:
    """(N, 9) neck kinematics of the motion frames as the hub computes them from the IMUs."""
    from edge_runtime.fusion import neck_kinematics_from_imus
    from edge_runtime.imu_sim import simulate_imus

    imus = simulate_imus(session.t_s, session.neck_rotation, seed=seed)
    kin = neck_kinematics_from_imus(imus.head, imus.trunk, session.neutral_s, session.nod_s)
    neck = np.concatenate([kin.angles_rad, kin.velocities_rad_s, kin.accelerations_rad_s2], 1)
    return np.asarray(neck[session.motion_rows])


def evaluate_end_to_end(
    run_dir: Path, subjects: int, progress: Any = None, population: Path | None = None
) -> dict[str, Any]:
    """``hub_r2_min`` (muscles varying > 1% of Fmax), ``hub_r2_median`` and the RMSE in % of Fmax
    per muscle, float and int8 (when the run holds its converted model), over ``subjects``
    unseen subjects' everyday motions (drawn from ``population``, default the dataset's)."""
    from edge_runtime.contracts.feature_spec import feature_matrix
    from edge_runtime.contracts.force_model import ForceModel
    from edge_runtime.contracts.training_run import RunLayout
    from host_training.learning.run import load_run
    from host_training.simulation.frames import population_path

    run = load_run(run_dir)
    config = run.manifest.dataset_config
    if population is None:  # the dataset's own population
        population = population_path(Path(run.manifest.dataset_path))
    simulated = set(range(config["n_subjects"])) | set(config.get("anchor_subjects", []))
    int8_path = RunLayout(run_dir).tflite_int8
    int8 = ForceModel(int8_path.read_bytes(), run.spec) if int8_path.is_file() else None
    muscles = [m.name for m in run.manifest.muscles]
    fmax = list(run.fmax_n)
    truth: list[FloatArray] = []
    predicted: dict[str, list[npt.NDArray[Any]]] = {
        "float": [], "int8": [], "float_exact_inputs": []
    }  # fmt: skip
    ids = unseen_subjects(population, simulated, subjects)
    for k, subject_id in enumerate(ids):
        if progress:
            progress(f"end to end: subject {subject_id} ({k + 1}/{len(ids)})")
        anthro, session = subject_session(
            subject_id, population, config["seed"] + HUB_MOTION_SEED_OFFSET
        )
        x = feature_matrix(hub_inputs(session, seed=subject_id), anthro, run.spec.features)
        truth.append(session.true_forces_n)
        predicted["float"].append(run.forces(x))
        if int8 is not None:
            predicted["int8"].append(int8.forces(x))
        # the same frames from the exact kinematics: what the network alone gets wrong, so
        # that the hub's input error (fusion, calibration, derivatives) is the difference
        exact_x = feature_matrix(session.exact_inputs, anthro, run.spec.features)
        predicted["float_exact_inputs"].append(run.forces(exact_x))
    y = np.concatenate(truth)
    result: dict[str, Any] = {"subjects": ids, "frames": len(y), "families": list(HUB_FAMILIES)}
    for name, pred in predicted.items():
        if pred:
            result[name] = _summary(force_metrics(y, np.concatenate(pred), muscles, fmax))
    result["hub_r2_min"] = result["float"]["hub_r2_min"]
    result["hub_r2_median"] = result["float"]["hub_r2_median"]
    return result


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    s = metrics["summary"]
    return {
        "hub_r2_min": s["r2_min_varying"],
        "hub_r2_median": s["r2_median"],
        "worst_muscle": s["worst_varying_muscle"],
        "rmse_pct_fmax_max": s["rmse_pct_fmax_max"],
        "worst_rmse_muscle": s["worst_rmse_muscle"],
        "rmse_pct_fmax_per_muscle": metrics["rmse_pct_fmax_per_muscle"],
    }
