"""The population-scale profile: a share of every everyday motion's frames, exactly those rows;
lean shards beside QC shards; and ``cervical bench scale`` measuring it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from edge_runtime.contracts.feature_spec import DEFAULT_FEATURES
from host_training.model.personalise import personalise
from host_training.population.sampling import subject_anthropometrics, write_population
from host_training.simulation.dataset import (
    QC_SHARD_EVERY,
    SHARD_DIR,
    force_column,
    make_config,
    muscle_names,
    prepare_output,
    read_dataset,
    simulate_shard,
)
from host_training.simulation.frames import iter_frames
from host_training.simulation.motions import (
    POPULATION_KEEP_FRACTION,
    PlaneSplit,
    motion_set,
    trajectory,
)
from host_training.simulation.solvers import FastSolver

CERVICAL = str(Path(sys.executable).with_name("cervical"))


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_population(tmp_path_factory.mktemp("pop") / "p.parquet", 30, seed=5)


@pytest.fixture(scope="module")
def lean_and_qc(population: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two subjects, one per shard: shard 0 keeps the QC columns, shard 1 does not."""
    out = tmp_path_factory.mktemp("ds") / "population"
    config = make_config(population, 2, "population", 7, "fast", 1)
    for shard in prepare_output(out, config):
        simulate_shard(config, shard, str(out))
    return out


def test_the_kept_rows_are_those_of_the_whole_everyday_motions(
    population: Path, lean_and_qc: Path
) -> None:
    """Static optimisation is per frame: the population profile's frames, solved in batches
    of several motions, are bit for bit the rows of each whole motion solved on its own."""
    subject = 1
    anatomy = personalise(subject_anthropometrics(population, subject))
    split, solver = PlaneSplit.of(anatomy), FastSolver(anatomy)
    table = pq.read_table(lean_and_qc / SHARD_DIR / "shard-000001.parquet")
    everyday = {s.motion_id: s for s in motion_set("everyday", 7, subject)}
    kept = [s for s in motion_set("population", 7, subject) if s.family != "box"]
    families = {}
    for spec in kept:  # one motion per family keeps the test short
        families.setdefault(spec.family, spec)
    names = muscle_names()
    motion_ids = np.array(table.column("motion_id").to_pylist())
    for spec in families.values():
        whole = trajectory(everyday[spec.motion_id], split)
        rows = motion_ids == spec.motion_id
        frames = table.column("frame").to_numpy()[rows]
        n = len(whole.t_s)
        assert len(frames) == max(1, round(POPULATION_KEEP_FRACTION * n)) < n
        part = trajectory(spec, split)  # evaluated at the kept instants only: the same bits
        np.testing.assert_array_equal(part.frame_numbers(), frames)
        for field in ("t_s", "q_rad", "qd_rad_s", "qdd_rad_s2"):
            np.testing.assert_array_equal(getattr(part, field), getattr(whole, field)[frames])
        forces = solver.solve(whole).forces_n.astype(np.float32)[frames]
        stored = np.stack([table.column(force_column(m)).to_numpy()[rows] for m in names], 1)
        np.testing.assert_array_equal(stored, forces, err_msg=spec.motion_id)
        np.testing.assert_array_equal(table.column("t_s").to_numpy()[rows], whole.t_s[frames])
    per_subject = table.num_rows
    assert 400 < per_subject < 800  # about 1/32 of ~18,700 everyday frames


def test_lean_shards_leave_out_the_qc_columns_and_still_train(lean_and_qc: Path) -> None:
    qc = pq.read_schema(lean_and_qc / SHARD_DIR / "shard-000000.parquet").names
    lean = pq.read_schema(lean_and_qc / SHARD_DIR / "shard-000001.parquet").names
    assert QC_SHARD_EVERY > 1 and 0 % QC_SHARD_EVERY == 0
    dropped = set(qc) - set(lean)
    assert dropped and all(c.startswith(("activation_", "reserve_", "id_moment_")) for c in dropped)
    assert set(lean) <= set(qc) and "feasible" in lean and force_column(muscle_names()[0]) in lean
    table = read_dataset(lean_and_qc)  # lean rows read with nulls where QC columns are missing
    activation = table.column(f"activation_{muscle_names()[0]}")
    assert (
        activation.null_count
        == pq.read_metadata(lean_and_qc / SHARD_DIR / "shard-000001.parquet").num_rows
    )
    # what training reads comes from both kinds of shard
    parts = iter_frames(lean_and_qc, DEFAULT_FEATURES, muscle_names())
    seen = sum(len(part.x) for part in parts)
    assert seen == table.num_rows


def test_bench_scale_reports_the_figures_it_names(tmp_path: Path) -> None:
    r = subprocess.run(
        [CERVICAL, "bench", "scale", "--subjects", "20", "--everyday-subjects", "1", "--json"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    f = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("subjects_per_core_hour", "frames_per_core_s", "bytes_per_subject",
                "projected_core_hours_1m", "projected_disk_gb_1m"):  # fmt: skip
        assert f[key] > 0, key
    stages = f["per_subject_s"]
    for stage in ("personalise", "model_build", "inverse_dynamics", "static_optimisation"):
        assert stages[stage] > 0, stage
    assert sum(stages.values()) == pytest.approx(f["cpu_s_per_subject"])
    assert f["projected_core_hours_1m"] == pytest.approx(1e6 / f["subjects_per_core_hour"])
    assert f["bytes_per_subject_lean"] < f["bytes_per_subject_qc"]
    # the everyday set side by side: many more frames per subject, so far fewer subjects
    assert f["everyday"]["frames_per_subject"] > 20 * f["frames_per_subject"]
    assert f["speedup_vs_everyday"] > 5
    bad = subprocess.run([CERVICAL, "bench", "scale", "--subjects", "5"], capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 2 and "--subjects" in bad.stderr
