"""The hub's wear sessions over hours: each carries its daily-monitoring block on the wearer's
local day, a session is cut at local midnight, and wear goes on across session ends with the
same calibration (nothing lost, no second nod asked for)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.bundle import load_public_key
from edge_runtime.contracts.model_bundle import verify_model_bundle
from edge_runtime.contracts.neck_angles import rotation_from_neck_angles
from edge_runtime.contracts.record_payloads import SessionRecord, parse_record
from edge_runtime.hub.pipeline import HubPipeline, PipelineSettings
from edge_runtime.hub.storage import HubStore
from edge_runtime.imu_sim import SimulationSetup, simulate_imus
from edge_runtime.synthetic import WARMUP_S
from edge_runtime.wear_sim import NEUTRAL_S, free_living_angles
from tests.hub_fixtures import sensor_chunks


def test_wear_is_cut_at_local_midnight_and_goes_on_calibrated(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics,
    tmp_path: Path,
) -> None:  # fmt: skip
    zone = ZoneInfo("Pacific/Auckland")  # far from UTC: the local day is not the UTC day
    _, wear = free_living_angles(190.0, seed=11)
    truth = np.concatenate([np.zeros((int(WARMUP_S * 100), 3)), wear])  # the sensors settle
    t = np.arange(len(truth)) / 100.0
    sim = simulate_imus(
        t, rotation_from_neck_angles(truth), SimulationSetup(calm_s=WARMUP_S + NEUTRAL_S), seed=11
    )
    checked = verify_model_bundle(quantized_bundle, load_public_key(signing_keys[1]))
    store = HubStore(tmp_path / "hub.db")
    settings = replace(PipelineSettings(), max_session_s=60.0, timezone="Pacific/Auckland")
    start = datetime(2026, 3, 1, 23, 58, 30, tzinfo=zone)  # midnight comes 90 s in
    pipeline = HubPipeline(store, checked, wearer, settings, clock=lambda: start)
    for _, role, part in sensor_chunks(sim.head, sim.trunk, 0.5):
        pipeline.push(role, part)  # type: ignore[arg-type]
    pipeline.close()
    sessions = [parse_record("session", r.payload) for r in store.records_of_kind("session")]
    assert all(isinstance(s, SessionRecord) and s.kind == "wear" for s in sessions)
    reasons = [s.end_reason for s in sessions]  # type: ignore[union-attr]
    assert reasons == ["max_duration", "day_changed"] + ["max_duration"] * 2 + ["end_of_input"]
    days = [s.monitoring.day for s in sessions]  # type: ignore[union-attr]
    assert days == ["2026-03-01"] * 2 + ["2026-03-02"] * 3
    starts = [s.started for s in sessions]  # type: ignore[union-attr]
    assert (starts[2] - start).total_seconds() == pytest.approx(90.0, abs=1.0)
    # one calibration (the nod at the start), and every session after it calibrated throughout
    assert len(store.records_of_kind("calibration")) == 1
    assert sum(s.frames for s in sessions) == len(t)  # type: ignore[union-attr]
    for s in sessions[1:]:
        assert s.usable_frames == s.frames  # type: ignore[union-attr]
        assert s.monitoring.wear_s == pytest.approx(s.frames / 100, abs=0.02)  # type: ignore[union-attr]
    assert sum(s.monitoring.movements for s in sessions) > 20  # type: ignore[union-attr]
    loads = sessions[1].monitoring.load  # type: ignore[union-attr]
    assert set(loads) == set(checked.manifest.muscle_groups())
    for group in loads.values():  # load: a share of capacity, the time above its levels falling
        assert group.share_s > 0 and group.above_s == tuple(sorted(group.above_s, reverse=True))
    epochs = store.records_of_kind("epoch")
    assert sum(e.payload["frames"] for e in epochs) == len(t)
    assert np.isclose(sum(s.duration_s for s in sessions), t[-1] + 0.01, atol=0.1)  # type: ignore[union-attr]
    store.close()


def test_an_unknown_time_zone_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="timezone = 'Mars/Olympus': not a known time zone"):
        PipelineSettings(timezone="Mars/Olympus")


def test_six_axis_wear_past_its_heading_horizon_is_not_used_and_calibrates_anew(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The hub's own sensors have no magnetometer: wear past ``six_axis_trust_s`` after the
    calibration counts for nothing (no range, no wear time), and the session after it starts a
    tracker of its own instead of going on with the drifted one."""
    _, wear = free_living_angles(190.0, seed=11)
    truth = np.concatenate([np.zeros((int(WARMUP_S * 100), 3)), wear])
    t = np.arange(len(truth)) / 100.0
    setup = SimulationSetup(calm_s=WARMUP_S + NEUTRAL_S, magnetometer=False)
    sim = simulate_imus(t, rotation_from_neck_angles(truth), setup, seed=11)
    checked = verify_model_bundle(quantized_bundle, load_public_key(signing_keys[1]))
    store = HubStore(tmp_path / "hub.db")
    settings = replace(PipelineSettings(), max_session_s=60.0)
    pipeline = HubPipeline(store, checked, wearer, settings)
    assert not pipeline.use_magnetometer
    for _, role, part in sensor_chunks(sim.head, sim.trunk, 0.5):
        pipeline.push(role, part)  # type: ignore[arg-type]
    pipeline.close()
    sessions = [parse_record("session", r.payload) for r in store.records_of_kind("session")]
    assert [s.end_reason for s in sessions] == ["max_duration"] * 3 + ["end_of_input"]  # type: ignore[union-attr]
    first = sessions[0].calibration  # type: ignore[union-attr]
    assert first is not None
    trust_s = settings.calibration.six_axis_trust_s
    assert trust_s is not None
    horizon_s = sessions[0].source_t0_s + first.neutral_s[0] + trust_s  # type: ignore[union-attr]
    # the second session goes on with the first's tracker until the horizon, then nothing counts
    assert sessions[1].calibration == first  # type: ignore[union-attr]
    usable_s = sessions[1].usable_frames / 100  # type: ignore[union-attr]
    assert usable_s == pytest.approx(horizon_s - sessions[1].source_t0_s, abs=0.05)  # type: ignore[union-attr]
    assert sessions[1].monitoring.wear_s == pytest.approx(usable_s, abs=0.05)  # type: ignore[union-attr]
    # the third has a tracker of its own: the first calibration is not carried over
    assert sessions[2].calibration != first  # type: ignore[union-attr]
    assert sum(s.frames for s in sessions) == len(t)  # type: ignore[union-attr]
    store.close()
