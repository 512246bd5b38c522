"""The dataset as users make it: ``cervical simulate`` on a local Dask cluster, and on a
scheduler and workers started as processes of their own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from host_training.model.anatomy import load_anatomy
from host_training.population.sampling import write_population
from host_training.simulation.dataset import MANIFEST, read_dataset

CERVICAL = str(Path(sys.executable).with_name("cervical"))


def simulate(population: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [CERVICAL, "simulate", "--population", str(population), "--out", str(out),
            "--motions", "tiny", "--shard-subjects", "1", *extra]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_population(tmp_path_factory.mktemp("pop") / "p.parquet", 50, seed=3)


@pytest.fixture(scope="module")
def reference_run(population: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "one-worker"
    r = simulate(population, out, "--subjects", "4", "--workers", "1")
    assert r.returncode == 0, r.stderr
    return out


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def test_schema_and_content(reference_run: Path) -> None:
    table = read_dataset(reference_run)
    names = table.column_names
    for key in ("subject_id", "motion_id", "frame", "t_s", "neck_extension_rad",
                "neck_axial_rotation_left_rad_s2", "head_mass_kg", "feasible",
                "activations_at_bound", "reserve_pitch2_nm"):  # fmt: skip
        assert key in names
    forces = [n for n in names if n.startswith("force_")]
    assert forces == [f"force_{m}" for m in load_anatomy().muscle_names()]
    assert sorted(set(table.column("subject_id").to_pylist())) == [0, 1, 2, 3]
    numeric = [n for n in names if n not in ("motion_id", "sex", "feasible")]
    for n in numeric:
        assert np.isfinite(table.column(n).to_numpy()).all(), n
    f = np.stack([table.column(c).to_numpy() for c in forces], axis=1)
    assert (f >= 0).all() and f.max() > 10.0  # some muscles really work
    manifest = json.loads((reference_run / MANIFEST).read_text())
    for key in ("population_sha256", "model_builder_version", "solver", "motion_set",
                "motion_set_digest", "seed"):  # fmt: skip
        assert key in manifest["config"]
    meta = pq.read_schema(reference_run / "shards" / "shard-000000.parquet").metadata
    assert b"cervical.shard" in meta


def test_two_workers_give_the_same_bytes(
    population: Path, reference_run: Path, tmp_path: Path
) -> None:
    r = simulate(population, tmp_path / "two", "--subjects", "4", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert _shard_bytes(tmp_path / "two") == _shard_bytes(reference_run)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def test_sigkill_of_a_worker_and_the_driver_then_rerun_equals_an_uninterrupted_run(
    population: Path, reference_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    args = [CERVICAL, "simulate", "--population", str(population), "--out", str(out),
            "--motions", "tiny", "--shard-subjects", "1", "--subjects", "4",
            "--workers", "2"]  # fmt: skip
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    shards = out / "shards"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(shards.glob("shard-*.parquet")):
        time.sleep(0.05)
    assert list(shards.glob("shard-*.parquet")), "no shard appeared"
    workers = [p for p in _descendants(driver.pid) if p != driver.pid]
    assert workers
    os.kill(workers[-1], signal.SIGKILL)
    time.sleep(0.3)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    os.killpg(driver.pid, signal.SIGKILL)  # nannies and workers of the dead driver
    done_before = len(list(shards.glob("shard-*.parquet")))
    r = simulate(population, out, "--subjects", "4", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert not list(shards.glob(".*"))  # no partial shard left visible or hidden
    assert _shard_bytes(out) == _shard_bytes(reference_run)
    assert done_before < 4  # the run really was cut short


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subjects", "51"], "out of range"),
        (["--subjects", "2", "--motions", "walking"], "'walking' does not exist"),
        (["--subjects", "2", "--solver", "magic"], "solver 'magic' does not exist"),
    ],
)
def test_bad_input_is_named_and_nothing_written(
    population: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "bad"
    cmd = [CERVICAL, "simulate", "--population", str(population), "--out", str(out), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    assert message in r.stderr
    assert not out.exists()


def test_missing_population_and_unwritable_output(population: Path, tmp_path: Path) -> None:
    r = simulate(tmp_path / "absent.parquet", tmp_path / "x", "--subjects", "1")
    assert r.returncode == 2 and "no such file" in r.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        r = simulate(population, locked / "ds", "--subjects", "1")
        if os.geteuid() != 0:  # root ignores directory permissions
            assert r.returncode == 2 and "not writable" in r.stderr
    finally:
        locked.chmod(0o700)
    r = simulate(population, Path("/proc/no-dataset"), "--subjects", "1")
    assert r.returncode == 2 and "not writable" in r.stderr


def test_rerun_with_other_settings_is_refused(population: Path, reference_run: Path) -> None:
    before = _shard_bytes(reference_run)
    r = simulate(population, reference_run, "--subjects", "4", "--seed", "8")
    assert r.returncode == 2 and "other settings" in r.stderr
    assert _shard_bytes(reference_run) == before
    again = simulate(population, reference_run, "--subjects", "4", "--workers", "1")
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_a_separate_scheduler_and_workers_survive_a_killed_worker(
    population: Path, reference_run: Path, tmp_path: Path
) -> None:
    """A real cluster on this machine: `dask scheduler` and two `dask worker` processes of their
    own (as dask-jobqueue starts them on SLURM or PBS), `cervical simulate --scheduler` against
    them, one worker killed with its nanny once the first shard is written. Its task is redone
    elsewhere and the dataset is byte-identical to a one-worker run, with nothing half-written
    left behind."""
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([dask, *args], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        started.append(process)
        return process

    try:
        start("scheduler", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
              "--port", "0", "--no-dashboard")  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not scheduler_file.is_file():
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = ("worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                  "--host", "127.0.0.1", "--no-dashboard")  # fmt: skip
        workers = [start(*worker) for _ in range(2)]
        out = tmp_path / "cluster"
        args = [CERVICAL, "simulate", "--population", str(population), "--out", str(out),
                "--motions", "tiny", "--shard-subjects", "1", "--subjects", "4",
                "--scheduler", address]  # fmt: skip
        driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        shards = out / "shards"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not list(shards.glob("shard-*.parquet")):
            time.sleep(0.05)
        assert list(shards.glob("shard-*.parquet")), "no shard appeared"
        done_when_killed = len(list(shards.glob("shard-*.parquet")))
        os.killpg(workers[1].pid, signal.SIGKILL)  # the worker and its nanny
        _, stderr = driver.communicate(timeout=300)
        assert driver.returncode == 0, stderr
        assert done_when_killed < 4  # the kill came mid-run
        assert not list(shards.glob(".*"))  # no half-written shard left
        assert _shard_bytes(out) == _shard_bytes(reference_run)
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
