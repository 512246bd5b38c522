"""Run a dataset simulation on a Dask cluster: a local cluster of processes by default, or an
existing scheduler (e.g. one started by dask-jobqueue on SLURM/PBS) with the same tasks.

Each shard is one task; workers write their shard into the output directory themselves, so on a
remote cluster the output must be on a filesystem the workers share. A task whose worker dies is
rescheduled by Dask; one that raises is retried twice; finished shards are skipped on re-runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host_training.simulation.dataset import (
    SimulationConfig,
    prepare_output,
    remove_stale_temporaries,
    simulate_shard,
)

log = logging.getLogger(__name__)
TASK_RETRIES = 2


def run_simulation(
    config: SimulationConfig,
    out_dir: Path,
    workers: int | None = None,
    scheduler: str | None = None,
    on_start: Callable[[int], None] | None = None,
    on_shard: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Simulate every missing shard of ``config`` into ``out_dir``; returns per-shard reports."""
    from dask.distributed import Client, LocalCluster, as_completed

    logging.getLogger("distributed").setLevel(logging.WARNING)
    pending = prepare_output(out_dir, config)
    if on_start is not None:
        on_start(len(pending))
    if not pending:
        return []
    cluster: Any = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
        client = Client(cluster)
    else:
        client = Client(scheduler, timeout="30s")
    reports = []
    try:
        futures = [
            client.submit(simulate_shard, config, shard, str(out_dir.resolve()),
                          key=f"shard-{shard}-{config.population_sha256[:8]}",
                          retries=TASK_RETRIES, pure=False)
            for shard in pending
        ]  # fmt: skip
        for future in as_completed(futures):
            report = future.result()
            reports.append(report)
            if on_shard is not None:
                on_shard(report)
        remove_stale_temporaries(out_dir)  # a killed worker's half-written shard
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return reports
