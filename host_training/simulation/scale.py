"""``cervical bench scale``: what simulating the whole population costs, per core.

The population-scale profile (motion set ``population``: a fixed share of every everyday motion's
frames, the QC columns in one shard of ``QC_SHARD_EVERY``) and the everyday set are simulated side
by side in one process pinned to one core, through ``simulate_shard`` itself, its ``StageClock``
summing CPU seconds per stage. The projections for 1,000,000 subjects follow from the per-subject
CPU time and the bytes of the shards written (lean and QC shards in their proportion).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host_training.errors import DatasetError
from host_training.simulation.dataset import (
    QC_SHARD_EVERY,
    SHARD_DIR,
    StageClock,
    lean_columns,
    make_config,
    prepare_output,
    simulate_shard,
)
from host_training.simulation.motions import POPULATION_KEEP_FRACTION

POPULATION = 1_000_000
SHARD_SUBJECTS = 10
# stages of the per-subject breakdown ("solve" less its inverse dynamics is static optimisation,
# with the muscle paths and moment arms it needs)
STAGES = ("population", "personalise", "model_build", "trajectories", "inverse_dynamics",
          "static_optimisation", "features", "write")  # fmt: skip


def _simulate(
    population: Path, out: Path, motions: str, subjects: int, first_shard: int,
    progress: Callable[[str], None],
) -> tuple[StageClock, int, dict[bool, list[int]]]:  # fmt: skip
    """Shards of ``motions`` for ``subjects`` subjects: the clock, frames, and shard bytes by
    whether the shard is lean. ``first_shard`` lets lean and QC shards both be measured."""
    total = first_shard * SHARD_SUBJECTS + subjects
    config = make_config(population, total, motions, 7, "fast", SHARD_SUBJECTS)
    clock, frames = StageClock(), 0
    sizes: dict[bool, list[int]] = {True: [], False: []}
    shards = [s for s in prepare_output(out, config) if s >= first_shard]
    for k, shard in enumerate(shards):
        done = simulate_shard(config, shard, str(out), clock)
        frames += int(done["frames"])
        path = out / SHARD_DIR / f"shard-{shard:06d}.parquet"
        sizes[lean_columns(config, shard)].append(path.stat().st_size)
        progress(f"{motions}: shard {k + 1} of {len(shards)}")
    clock.seconds["static_optimisation"] = clock.seconds.pop("solve", 0.0) - clock.seconds.get(
        "inverse_dynamics", 0.0
    )
    return clock, frames, sizes


def _figures(clock: StageClock, frames: int, subjects: int) -> dict[str, Any]:
    cpu_s = sum(clock.seconds[s] for s in STAGES)
    return {
        "subjects": subjects,
        "frames_per_subject": frames / subjects,
        "cpu_s_per_subject": cpu_s / subjects,
        "subjects_per_core_hour": 3600.0 * subjects / cpu_s,
        "frames_per_core_s": frames / cpu_s,
        "per_subject_s": {s: clock.seconds[s] / subjects for s in STAGES},
    }


def measure_scale(
    subjects: int = 40, everyday_subjects: int = 2, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """The figures of ``cervical bench scale`` (module docstring)."""
    from host_training.population.sampling import write_population

    if subjects < 2 * SHARD_SUBJECTS:
        raise DatasetError(f"--subjects {subjects}: at least {2 * SHARD_SUBJECTS} (two shards)")
    cpu = sorted(os.sched_getaffinity(0))[0]
    affinity = os.sched_getaffinity(0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cervical-bench-scale-") as tmp:
        work = Path(tmp)
        first = QC_SHARD_EVERY - 1  # lean shards, then one QC shard (QC_SHARD_EVERY divides it)
        population = write_population(
            work / "population.parquet", first * SHARD_SUBJECTS + subjects + everyday_subjects, 3
        )
        os.sched_setaffinity(0, {cpu})  # core-seconds: one core, CPU time
        try:
            _simulate(population, work / "warm", "population", 1, 0, lambda _: None)
            clock, frames, sizes = _simulate(
                population, work / "population", "population", subjects, first, progress
            )
            e_clock, e_frames, _ = _simulate(
                population, work / "everyday", "everyday", everyday_subjects, 0, progress
            )
        finally:
            os.sched_setaffinity(0, affinity)
    if not sizes[True] or not sizes[False]:
        raise DatasetError("the measured shards hold no lean or no QC shard")
    lean = sum(sizes[True]) / len(sizes[True]) / SHARD_SUBJECTS
    qc = sum(sizes[False]) / len(sizes[False]) / SHARD_SUBJECTS
    bytes_per_subject = (lean * (QC_SHARD_EVERY - 1) + qc) / QC_SHARD_EVERY
    profile = _figures(clock, frames, subjects)
    everyday = _figures(e_clock, e_frames, everyday_subjects)
    return {
        **profile,
        "keep_fraction": POPULATION_KEEP_FRACTION,
        "bytes_per_subject": bytes_per_subject,
        "bytes_per_subject_lean": lean,
        "bytes_per_subject_qc": qc,
        "projected_core_hours_1m": POPULATION / profile["subjects_per_core_hour"],
        "projected_disk_gb_1m": POPULATION * bytes_per_subject / 1e9,
        "everyday": everyday,
        "everyday_projected_core_hours_1m": POPULATION / everyday["subjects_per_core_hour"],
        "speedup_vs_everyday": profile["subjects_per_core_hour"]
        / everyday["subjects_per_core_hour"],
        "cpu": cpu,
        "wall_s": time.perf_counter() - started,
    }
