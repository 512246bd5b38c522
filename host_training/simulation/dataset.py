"""The muscle-force dataset: Parquet shards of simulated frames, a manifest, resumable runs.

Layout of a dataset directory::

    manifest.json              what was simulated and how (written before any shard)
    shards/shard-000000.parquet  subjects [0, shard_subjects), every motion, one row per frame
    ...

One row per frame (schema in ``dataset_schema``): keys ``subject_id, motion_id, frame, t_s``; the
inputs the hub can compute (neck angles, their velocities and accelerations, anthropometrics);
the six model coordinates; ``force_<muscle>`` (N) and ``activation_<muscle>`` for all 72 muscles;
QC fields (``reserve_<coordinate>_nm``, ``id_moment_<coordinate>_nm``, ``feasible``,
``activations_at_bound``). At population scale (motion set ``population``) only every
``QC_SHARD_EVERY``-th shard keeps the activations, reserves and ID moments; the others hold what
training reads (``lean_columns``), which halves the bytes per subject. Infeasible frames are
kept and flagged; a NaN anywhere is an error, never written. A shard is a pure function of
(population rows, motion set, seed, solver): it is written to a hidden temporary file and
renamed, so a shard is either complete or absent, and any number of workers, crashes and re-runs
give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.common.atomic import atomic_path
from edge_runtime.contracts.anthropometrics import NUMERIC_FIELDS, Anthropometrics
from edge_runtime.contracts.neck_angles import (
    NECK_ACCELERATION_NAMES,
    NECK_ANGLE_NAMES,
    NECK_VELOCITY_NAMES,
    neck_angles_from_rotation,
)
from host_training.errors import DatasetError
from host_training.model.anatomy import INDEPENDENT_COORDINATES
from host_training.model.builder import MODEL_BUILDER_VERSION
from host_training.model.fast_kinematics import FastNeckKinematics
from host_training.model.personalise import personalise
from host_training.population.sampling import (
    population_extremes,
    population_size,
    subjects_anthropometrics,
)
from host_training.simulation.motions import (
    PlaneSplit,
    Trajectory,
    family_definitions,
    motion_set,
    motion_set_digest,
    trajectory,
)

FloatArray = npt.NDArray[np.float64]
DATASET_FORMAT_VERSION = 1
SHARD_DIR = "shards"
MANIFEST = "manifest.json"
METADATA_KEY = b"cervical.shard"
ANGLE_STEP_S = 1e-3  # for the angles' time derivatives (second-order Taylor, see neck_features)
# frames a per-frame solver takes at once: solve CPU time of one everyday subject (18,681 frames)
# 4.7 s at 256, 6.0 s at 1,024, 9.9 s at 4,096, 5.4 s one motion at a time
BATCH_FRAMES = 256
QC_SHARD_EVERY = 20  # population scale: the shards that keep every QC column
QC_PREFIXES = ("activation_", "reserve_", "id_moment_")


class StageClock:
    """CPU seconds per stage of a simulation, summed (``cervical bench scale`` breaks them out)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.process_time()
        try:
            yield
        finally:
            self.seconds[name] += time.process_time() - started


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a dataset's content (recorded in its manifest)."""

    population_path: str
    population_sha256: str
    n_subjects: int
    motion_set: str
    motion_set_digest: str
    seed: int
    solver: str
    shard_subjects: int
    model_builder_version: str = MODEL_BUILDER_VERSION
    dataset_format_version: int = DATASET_FORMAT_VERSION
    # the population's extreme subjects, simulated after ids 0..n-1 so that the training subjects
    # span the population's anthropometric range (``population_extremes``)
    anchor_subjects: tuple[int, ...] = ()

    def content_key(self) -> dict[str, Any]:
        """The fields that must match for a re-run to reuse existing shards."""
        d = asdict(self)
        del d["population_path"]  # the same file may be moved; its hash identifies it
        if self.anchor_subjects:
            d["anchor_subjects"] = list(self.anchor_subjects)  # as JSON reads it back
        else:
            del d["anchor_subjects"]  # datasets made before anchors stay reusable
        return d

    def subject_ids(self) -> list[int]:
        extra = sorted(a for a in set(self.anchor_subjects) if a >= self.n_subjects)
        return [*range(self.n_subjects), *extra]

    def n_shards(self) -> int:
        return -(-len(self.subject_ids()) // self.shard_subjects)

    def shard_subject_ids(self, shard: int) -> list[int]:
        start = shard * self.shard_subjects
        return self.subject_ids()[start : start + self.shard_subjects]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def force_column(muscle: str) -> str:
    return f"force_{muscle}"


def muscle_names() -> tuple[str, ...]:
    from host_training.model.anatomy import load_anatomy

    return load_anatomy().muscle_names()


def lean_columns(config: SimulationConfig, shard: int) -> bool:
    """Whether this shard leaves out the QC columns (module docstring)."""
    return config.motion_set == "population" and shard % QC_SHARD_EVERY != 0


def dataset_schema(lean: bool = False) -> Any:
    """The Arrow schema of every shard (one definition); ``lean``: without the QC columns."""
    import pyarrow as pa

    fields = [
        ("subject_id", pa.int64()), ("motion_id", pa.string()), ("frame", pa.int32()),
        ("t_s", pa.float64()),
        *[(n, pa.float64()) for n in (*NECK_ANGLE_NAMES, *NECK_VELOCITY_NAMES,
                                      *NECK_ACCELERATION_NAMES)],
        ("sex", pa.string()), *[(n, pa.float64()) for n in NUMERIC_FIELDS],
        *[(f"q_{c}_rad", pa.float64()) for c in INDEPENDENT_COORDINATES],
        *[(force_column(m), pa.float32()) for m in muscle_names()],
        *[(f"activation_{m}", pa.float32()) for m in muscle_names()],
        *[(f"reserve_{c}_nm", pa.float32()) for c in INDEPENDENT_COORDINATES],
        *[(f"id_moment_{c}_nm", pa.float32()) for c in INDEPENDENT_COORDINATES],
        ("feasible", pa.bool_()), ("activations_at_bound", pa.int16()),
    ]  # fmt: skip
    if lean:
        fields = [f for f in fields if not f[0].startswith(QC_PREFIXES)]
    return pa.schema(fields)


def neck_features(kin: FastNeckKinematics, traj: Trajectory) -> FloatArray:
    """(N, 9) neck angles, velocities and accelerations as the hub computes them from the
    head-on-trunk rotation; derivatives by central differences of the angles at
    q(t +- h) = q +- h qd + h^2/2 qdd (exact to O(h^2))."""
    h = ANGLE_STEP_S
    shift = 0.5 * h * h * traj.qdd_rad_s2
    angles = [
        neck_angles_from_rotation(kin.head_on_trunk_rotation(q))
        for q in (traj.q_rad, traj.q_rad + h * traj.qd_rad_s + shift,
                  traj.q_rad - h * traj.qd_rad_s + shift)
    ]  # fmt: skip
    centre, plus, minus = angles
    return np.concatenate(
        [centre, (plus - minus) / (2 * h), (plus - 2 * centre + minus) / (h * h)], axis=1
    )


def trial_columns(
    subject_id: int, anthro: Anthropometrics, traj: Trajectory, result: Any,
    kin: FastNeckKinematics, names: tuple[str, ...], motion_ids: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The rows of one trial (subject x motion) as columns; ``motion_ids`` per row where
    ``traj`` holds several motions (``Trajectory.stack``)."""
    n = len(traj.t_s)
    feats = neck_features(kin, traj)
    cols: dict[str, Any] = {
        "subject_id": np.full(n, subject_id, dtype=np.int64),
        "motion_id": motion_ids if motion_ids is not None else [traj.motion_id] * n,
        "frame": traj.frame_numbers().astype(np.int32),
        "t_s": traj.t_s,
    }
    for j, name in enumerate((*NECK_ANGLE_NAMES, *NECK_VELOCITY_NAMES, *NECK_ACCELERATION_NAMES)):
        cols[name] = feats[:, j]
    cols["sex"] = [anthro.sex] * n
    for name in NUMERIC_FIELDS:
        cols[name] = np.full(n, getattr(anthro, name))
    for j, c in enumerate(INDEPENDENT_COORDINATES):
        cols[f"q_{c}_rad"] = traj.q_rad[:, j]
        cols[f"reserve_{c}_nm"] = result.reserves_nm[:, j].astype(np.float32)
        cols[f"id_moment_{c}_nm"] = result.id_moments_nm[:, j].astype(np.float32)
    for i, m in enumerate(names):
        cols[force_column(m)] = result.forces_n[:, i].astype(np.float32)
        cols[f"activation_{m}"] = result.activations[:, i].astype(np.float32)
    cols["feasible"] = result.feasible
    cols["activations_at_bound"] = result.activations_at_bound.astype(np.int16)
    for name, values in cols.items():
        if (
            isinstance(values, np.ndarray)
            and values.dtype.kind == "f"
            and not np.isfinite(values).all()
        ):
            raise DatasetError(
                f"subject {subject_id}, motion {traj.motion_id}: non-finite values in {name}"
            )
    return cols


def simulate_shard(
    config: SimulationConfig, shard: int, out_dir: str, clock: StageClock | None = None
) -> dict[str, float]:
    """Simulate one shard and write it atomically; skip if it is already there. Runs on workers.
    ``clock`` collects the CPU time of each stage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from host_training.simulation.solvers import SOLVERS

    path = shard_path(Path(out_dir), shard)
    if path.exists():
        return {"shard": shard, "frames": 0, "seconds": 0.0, "skipped": 1}
    started = time.perf_counter()
    clock = clock or StageClock()
    schema = dataset_schema(lean_columns(config, shard))
    names = muscle_names()
    tables = []
    frames = 0
    with clock.stage("population"):
        subjects = subjects_anthropometrics(
            Path(config.population_path), config.shard_subject_ids(shard)
        )
    for subject_id, anthro in subjects.items():
        with clock.stage("personalise"):
            anatomy = personalise(anthro)
        with clock.stage("model_build"):
            solver = SOLVERS[config.solver](anatomy)
        kin = solver.dynamics.kinematics
        split = PlaneSplit.of(anatomy)
        with clock.stage("trajectories"):
            trials = [trajectory(s, split) for s in motion_set(config.motion_set, config.seed,
                                                               subject_id)]  # fmt: skip
        batches: list[tuple[Trajectory, list[str] | None]] = [(t, None) for t in trials]
        if getattr(solver, "per_frame", False):  # batches of motions: same rows, less overhead
            batches = _frame_batches(trials)
        for traj, motion_ids in batches:
            id_before = solver_id_s(solver)
            with clock.stage("solve"):
                result = solver.solve(traj)
            clock.seconds["inverse_dynamics"] += solver_id_s(solver) - id_before
            with clock.stage("features"):
                cols = trial_columns(subject_id, anthro, traj, result, kin, names, motion_ids)
                tables.append(pa.table({k: cols[k] for k in schema.names}, schema=schema))
            frames += len(traj.t_s)
    meta = {
        "shard": shard,
        "subject_ids": [config.shard_subject_ids(shard)[0], config.shard_subject_ids(shard)[-1]],
        "config": config.content_key(),
    }
    table = pa.concat_tables(tables).replace_schema_metadata(
        {METADATA_KEY: json.dumps(meta, sort_keys=True).encode()}
    )
    with clock.stage("write"):
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return {
        "shard": shard,
        "frames": frames,
        "seconds": time.perf_counter() - started,
        "skipped": 0,
    }


def _frame_batches(trials: list[Trajectory]) -> list[tuple[Trajectory, list[str] | None]]:
    """A subject's trials as batches of about BATCH_FRAMES frames for a per-frame solver (larger
    batches are slower: their per-frame arrays no longer fit the caches)."""
    stacked, ids = Trajectory.stack(trials)
    n = len(stacked.t_s)
    return [
        (stacked.take(np.arange(i, min(i + BATCH_FRAMES, n))), ids[i : i + BATCH_FRAMES])
        for i in range(0, n, BATCH_FRAMES)
    ]


def solver_id_s(solver: object) -> float:
    """CPU seconds a solver has spent in inverse dynamics (0 where it does not count them)."""
    return float(getattr(solver, "inverse_dynamics_cpu_s", 0.0))


def shard_path(out_dir: Path, shard: int) -> Path:
    return out_dir / SHARD_DIR / f"shard-{shard:06d}.parquet"


def _atomic_write(path: Path, write: Any) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def make_config(
    population: Path, n_subjects: int, motions: str, seed: int, solver: str, shard_subjects: int,
    span_population: bool = False,
) -> SimulationConfig:  # fmt: skip
    """Validate a run's inputs (nothing is written here) and return its configuration. With
    ``span_population`` the population's extreme subjects are simulated too (and always trained
    on), so that any subject of the population is inside the network's anthropometric range."""
    from host_training.simulation.solvers import SOLVERS

    if solver not in SOLVERS:
        raise DatasetError(f"solver {solver!r} does not exist; known: {sorted(SOLVERS)}")
    digest = motion_set_digest(motions, seed)  # raises UnknownMotionSetError for bad names
    if solver == "opensim" and any(s.family == "box" for s in motion_set(motions, seed, 0)):
        raise DatasetError(
            f"motion set {motions!r} holds box frames (independent postures, velocities and "
            "accelerations, not a motion): OpenSim's AnalyzeTool needs a time series; use "
            "--solver fast (tested against it on every other family)"
        )
    size = population_size(population)  # raises PopulationFileError
    if not 1 <= n_subjects <= size:
        raise DatasetError(
            f"--subjects {n_subjects}: subject ids 0..{n_subjects - 1} are out of range for "
            f"{population} (it holds ids 0..{size - 1})"
        )
    if shard_subjects < 1:
        raise DatasetError(f"shard size {shard_subjects}: must be at least 1 subject")
    return SimulationConfig(
        population_path=str(population.resolve()),
        population_sha256=file_sha256(population),
        n_subjects=n_subjects,
        motion_set=motions,
        motion_set_digest=digest,
        seed=seed,
        solver=solver,
        shard_subjects=shard_subjects,
        anchor_subjects=population_extremes(population) if span_population else (),
    )


def prepare_output(out_dir: Path, config: SimulationConfig) -> list[int]:
    """Check ``out_dir`` is writable and consistent with ``config``; write the manifest; remove
    stale temporary files of interrupted runs. Returns the shards still to simulate."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe", delete=True)  # noqa: SIM115
        probe.close()
    except OSError as exc:
        raise DatasetError(f"output directory {out_dir} is not writable ({exc.strerror})") from exc
    manifest = out_dir / MANIFEST
    if manifest.exists():
        try:
            existing = json.loads(manifest.read_text())["config"]
        except (ValueError, KeyError) as exc:
            raise DatasetError(f"{manifest} is not a dataset manifest") from exc
        wanted = config.content_key()
        different = {k: (existing.get(k), v) for k, v in wanted.items() if existing.get(k) != v}
        if different:
            raise DatasetError(
                f"{out_dir} holds a dataset made with other settings {different} "
                "(existing, requested): choose another --out"
            )
    else:
        body = {
            "config": config.content_key(),
            "population_path": config.population_path,
            "schema_columns": dataset_schema().names,
            "motion_families": family_definitions(config.motion_set, config.seed),
            "created_by": "cervical simulate",
        }
        _atomic_write(manifest, lambda tmp: tmp.write_text(json.dumps(body, indent=1) + "\n"))
    (out_dir / SHARD_DIR).mkdir(exist_ok=True)
    remove_stale_temporaries(out_dir)
    return [s for s in range(config.n_shards()) if not shard_path(out_dir, s).exists()]


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete half-written shards (hidden temporaries) of workers that died: only when no task
    of this dataset runs, before a run starts or after all of its tasks finished."""
    for stale in (out_dir / SHARD_DIR).glob(".shard-*.tmp"):
        stale.unlink(missing_ok=True)


def read_dataset(out_dir: Path) -> Any:
    """All shards of a dataset as one Arrow table, in shard order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = sorted((out_dir / SHARD_DIR).glob("shard-*.parquet"))
    if not paths:
        raise DatasetError(f"{out_dir}: no shards")
    # population-scale datasets mix lean and QC shards: missing QC columns read as nulls
    return pa.concat_tables([pq.read_table(p) for p in paths], promote_options="default")
