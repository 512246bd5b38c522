"""The patient's four weeks before today, as the hub recorded them (stage 5).

The hub's own pipeline (``edge_runtime.hub.pipeline``, the code the daemon runs), with the model
the gateway installed and the profile it set, records the scale's ``wear_days`` days into the
hub's store while the daemon is stopped, faster than real time, with the hub's clock set to each
day: every day ``wear_min_per_day`` of ordinary wear (``wear_sim``), and every seventh day a
guided test first.
The patient recovers: the restricted directions (``scenario.RESTRICTED``) reach
``scenario.FIRST_RATIO`` of their range on the first day and ``scenario.TODAY_RATIO`` today, in
the tests and in ordinary wear alike. The gateway then syncs the weeks and today in one go.

Each day is simulated from scratch (sensors put on, the settling the hub waits for, a neutral
hold and a nod), as a wearer puts the sensors on every morning.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from cervical_demo import scenario
from cervical_demo.progress import StageReporter
from edge_runtime.contracts.anthropometrics import read_profile
from edge_runtime.contracts.bundle import load_public_key
from edge_runtime.contracts.neck_angles import rotation_from_neck_angles
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.hub.models import ModelSlots
from edge_runtime.hub.pipeline import HubPipeline
from edge_runtime.hub.storage import HubStore, NewRecord
from edge_runtime.imu_sim import SimulationSetup, simulate_imus
from edge_runtime.sensors.sim import SimSpec, simulate_protocol
from edge_runtime.synthetic import WARMUP_S
from edge_runtime.wear_sim import NEUTRAL_S, WearRanges, free_living_angles

TEST_EVERY_DAYS = 7
CHUNK_S = 2.0


@dataclass(frozen=True)
class WeeksResult:
    days: int
    tests: int
    wear_hours: float


def ratio_on(day: int, days: int) -> float:
    """How much of their range the restricted directions reach on ``day`` of ``days``."""
    progress = day / days
    return scenario.FIRST_RATIO + (scenario.TODAY_RATIO - scenario.FIRST_RATIO) * progress


def _wear(ratio: float, minutes: float, seed: int) -> tuple[ImuRecording, ImuRecording]:
    ranges = WearRanges(
        left_bend_scale=ratio if "left_bend" in scenario.RESTRICTED else 1.0,
        right_bend_scale=ratio if "right_bend" in scenario.RESTRICTED else 1.0,
        left_rotation_scale=ratio if "left_rotation" in scenario.RESTRICTED else 1.0,
        right_rotation_scale=ratio if "right_rotation" in scenario.RESTRICTED else 1.0,
    )
    _, wear = free_living_angles(minutes * 60.0, seed, ranges)
    truth = np.concatenate([np.zeros((int(WARMUP_S * 100), 3)), wear])  # the sensors settle
    t = np.arange(len(truth)) / 100.0
    setup = SimulationSetup(calm_s=WARMUP_S + NEUTRAL_S)
    sim = simulate_imus(t, rotation_from_neck_angles(truth), setup, seed=seed)
    return sim.head, sim.trunk


def _test(ratio: float, seed: int) -> tuple[ImuRecording, ImuRecording]:
    spec = SimSpec(seed=seed, restrict=scenario.RESTRICTED, ratio=ratio)
    session = simulate_protocol(spec).session
    return session.head, session.trunk


def _feed(pipeline: HubPipeline, head: ImuRecording, trunk: ImuRecording) -> None:
    """Both sensors' samples as the hub's readers deliver them: a chunk of each at a time."""
    n = len(head.t_s)
    step = int(CHUNK_S * 100)
    for start in range(0, n, step):
        for role, rec in (("head", head), ("trunk", trunk)):
            sl = slice(start, min(n, start + step))
            mag = None if rec.mag_ut is None else rec.mag_ut[sl]
            chunk = ImuRecording(rec.t_s[sl], rec.gyr_rad_s[sl], rec.acc_m_s2[sl], mag)
            pipeline.push(role, chunk)  # type: ignore[arg-type]
    pipeline.close()


def _fixed(at: datetime) -> Callable[[], datetime]:
    """The hub's clock stopped at ``at`` (a session's start on its simulated day)."""
    return lambda: at


def _record_day(job: tuple[Path, Path, Path, int, int, float, datetime]) -> list[NewRecord]:
    """One day through the hub's pipeline into a store of its own (a worker process); returns
    its records in order, for the hub's store."""
    hub_dir, pub, scratch, day, days, minutes, morning = job
    bundle = ModelSlots(hub_dir / "models", load_public_key(pub)).active()
    profile = read_profile(hub_dir / "profile.toml")
    ratio = ratio_on(day, days)
    parts = []
    if day % TEST_EVERY_DAYS == 0:
        parts.append(("test", morning, _test(ratio, scenario.SIM_SEED + 1000 + day)))
    later = morning + timedelta(hours=1)
    parts.append(("wear", later, _wear(ratio, minutes, scenario.SIM_SEED + 2000 + day)))
    path = scratch / f"day-{day:03d}.db"
    with HubStore(path) as store:
        for kind, at, (head, trunk) in parts:
            pipeline = HubPipeline(store, bundle, profile, clock=_fixed(at))
            if kind == "test":
                pipeline.start_test()
            _feed(pipeline, head, trunk)
        rows = store.sync_records_after(0, 10**9)
    path.unlink()
    return [NewRecord(r.kind, json.loads(r.payload_json), r.session_id) for r in rows]


def record_weeks(
    hub_dir: Path, pub: Path, days: int, minutes: float, stage: StageReporter, workers: int = 2
) -> WeeksResult:
    """The ``days`` days before today into the hub's store (module docstring): the days are
    simulated side by side, one process per core, and stored in date order."""
    today = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    with tempfile.TemporaryDirectory(dir=hub_dir) as scratch:
        jobs = [
            (hub_dir, pub, Path(scratch), day, days, minutes, today - timedelta(days=days - day))
            for day in range(days)
        ]
        # spawned, not forked: this process runs the gateway's event loop and its threads
        spawn = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool,
            HubStore(hub_dir / "hub.db") as hub,
        ):
            for day, records in enumerate(pool.map(_record_day, jobs)):
                hub.append_many(records)
                stage.update(day + 1, days, "days before today recorded by the hub's pipeline")
    with HubStore(hub_dir / "hub.db") as hub:
        sessions = [r.payload for r in hub.records_of_kind("session")]
    tests = sum(s["kind"] == "test" for s in sessions)
    wear_h = sum(s["duration_s"] for s in sessions if s["kind"] == "wear") / 3600
    stage.note(
        f"the {days} days before today: wear ({minutes:.0f} min a day) and {tests} weekly guided "
        f"tests, recorded by the hub's pipeline with its model and profile (restricted "
        f"directions reaching {scenario.FIRST_RATIO:.0%} of their range at first, "
        f"{scenario.TODAY_RATIO:.0%} today)"
    )
    return WeeksResult(days, tests, wear_h)
