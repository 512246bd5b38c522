"""Daily monitoring from wear: the measures on traces whose answer is known, days that add up
exactly, change against the wearer's baseline (never on healthy days, found when the range
drops), and the typed daily record against its golden file."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.daily import (
    ChangeSettings,
    DailySummary,
    daily_summaries,
    judge_days,
)
from edge_runtime.contracts.record_fields import Fields, RecordError
from edge_runtime.contracts.wear_monitoring import (
    DIRECTIONS,
    LOAD_LEVELS,
    LoadMeter,
    WearMonitoring,
    histogram_quantile,
    measure_motion,
    merge,
    wear_monitoring,
)
from edge_runtime.wear_days import measure_wear_days
from edge_runtime.wear_sim import WearRanges, free_living_angles

GOLDEN = Path(__file__).parent / "golden"
RATE = 100.0


def _trace(*pieces: tuple[float, float, int]) -> np.ndarray:
    """(n, 3) angles (rad): each piece (seconds, degrees, axis) ramps there, holds, returns."""
    rows = []
    for seconds, deg, axis in pieces:
        ramp = np.radians(deg) * np.sin(np.linspace(0, math.pi / 2, 50))
        out = np.zeros((50 * 2 + int(seconds * RATE), 3))
        out[:50, axis] = ramp
        out[50:-50, axis] = np.radians(deg)
        out[-50:, axis] = ramp[::-1]
        rows.append(out)
        rows.append(np.zeros((100, 3)))
    return np.concatenate(rows)


def test_each_excursion_counts_once_at_its_peak_and_only_long_flexion_is_sustained() -> None:
    # flexion is negative extension; rotation left positive
    angles = _trace((5.0, -30.0, 0), (2.0, -25.0, 0), (1.0, 40.0, 2), (1.0, -12.0, 2), (1, 4.0, 1))
    rates = np.gradient(angles, 1 / RATE, axis=0)
    wear_s, excursions, speeds, flexed_s = measure_motion(angles, rates, RATE)
    assert wear_s == pytest.approx(len(angles) / RATE)
    peaks = {d: [i for i, c in enumerate(h) for _ in range(c)] for d, h in excursions.items()}
    assert peaks["flexion"] == [25, 30]  # 1 deg bins
    assert peaks["left_rotation"] == [40] and peaks["right_rotation"] == [12]
    assert peaks["extension"] == peaks["left_bend"] == peaks["right_bend"] == []  # 4 deg: none
    assert flexed_s == pytest.approx(5.0 + 0.6, abs=0.2)  # the 2 s hold is not sustained
    assert sum(speeds) == 2 * 4  # out and back of the four moves beyond 20 deg/s
    angles[300:400] = np.nan  # unusable frames: not worn, and they end a run
    assert measure_motion(angles, rates, RATE)[0] == pytest.approx(wear_s - 1.0)


def test_load_is_a_share_of_the_group_capacity_with_time_above_each_level() -> None:
    meter = LoadMeter({"a": [0, 1], "b": [2]}, [100.0, 300.0, 50.0])
    forces = np.zeros((400, 3))
    forces[:100, :2] = 30.0  # a: 60 / 400 = 15% of capacity for 1 s
    forces[100:, 2] = 2.0  # b: 4% for 3 s
    meter.add(forces)
    meter.add(np.zeros((0, 3)))
    force_s, load = meter.result(RATE)
    assert force_s == 4.0
    assert load["a"].share_s == pytest.approx(0.15) and load["a"].above_s == (1.0, 1.0, 1.0)
    assert load["b"].share_s == pytest.approx(0.12) and load["b"].above_s == (3.0, 0.0, 0.0)
    assert LOAD_LEVELS == (0.02, 0.05, 0.10)


def _day_blocks(
    seed: int, day: date, sessions: int, ranges: WearRanges | None = None
) -> list[WearMonitoring]:
    blocks = []
    for k in range(sessions):
        _, a = free_living_angles(600.0, seed * 100 + k, ranges)
        blocks.append(wear_monitoring(day, a, np.gradient(a, 1 / RATE, axis=0), RATE))
    return blocks


def test_a_day_is_the_exact_sum_of_its_sessions_and_reads_back() -> None:
    blocks = _day_blocks(1, date(2026, 3, 2), 3) + _day_blocks(2, date(2026, 3, 3), 1)
    days = daily_summaries(reversed(blocks))
    assert [d.day for d in days] == [date(2026, 3, 2), date(2026, 3, 3)]
    assert [d.sessions for d in days] == [3, 1]
    first = days[0].monitoring
    assert first.wear_s == pytest.approx(sum(b.wear_s for b in blocks[:3]))
    for d in DIRECTIONS:
        assert days[0].excursions(d) == sum(sum(b.excursions[d]) for b in blocks[:3])
    assert first.movements == sum(b.movements for b in blocks[:3])
    assert merge([first, days[1].monitoring], first.day).wear_s == pytest.approx(
        sum(b.wear_s for b in blocks)
    )
    p95 = days[0].range_deg("left_rotation", 0.95)
    p50 = days[0].range_deg("left_rotation", 0.5)
    assert p50 is not None and p95 is not None and 5 < p50 < p95 < 90
    assert days[0].load_share_mean("extension") is None  # no forces offline
    again = DailySummary.read(Fields("daily", json.loads(json.dumps(days[0].to_dict()))))
    assert again == days[0]


def test_histogram_quantiles_read_the_middle_of_their_bin() -> None:
    assert histogram_quantile([], 0.5, 1.0) is None
    assert histogram_quantile([0, 2, 0, 2], 0.5, 1.0) == 1.5
    assert histogram_quantile([0, 2, 0, 2], 0.95, 10.0) == 35.0


def test_the_daily_record_matches_its_golden_file_and_refuses_bad_input() -> None:
    blocks = _day_blocks(3, date(2026, 3, 2), 1)
    load = LoadMeter({"extension": [0, 1]}, [100.0, 100.0])
    load.add(np.full((500, 2), 8.0))
    force_s, loads = load.result(RATE)
    block = WearMonitoring(**{**blocks[0].__dict__, "force_s": force_s, "load": loads})
    summary = daily_summaries([block])[0]
    golden = json.loads((GOLDEN / "daily_summary.json").read_text())
    assert summary.to_dict() == golden
    assert summary.load_share_mean("extension") == pytest.approx(0.08)
    assert summary.load_fraction_above("extension", 0.05) == 1.0
    bad = json.loads(json.dumps(golden))
    bad["day"] = "2026-03-03"
    with pytest.raises(RecordError, match="day: '2026-03-03': not the monitoring's day"):
        DailySummary.read(Fields("daily", bad))
    bad = json.loads(json.dumps(golden))
    bad["monitoring"]["speeds"] = [1] * 1001
    with pytest.raises(RecordError, match=r"monitoring\.speeds: .*more than 1000 bins"):
        DailySummary.read(Fields("daily", bad))


def _days(seed: int, n: int, restricted_from: int | None = None) -> list[DailySummary]:
    small = WearRanges(35.0, 25.0, 20.0, 35.0)
    blocks = []
    for k in range(n):
        ranges = small if restricted_from is not None and k >= restricted_from else None
        blocks += _day_blocks(seed * 1000 + k, date(2026, 3, 2) + timedelta(days=k), 3, ranges)
    return daily_summaries(blocks)


def test_change_is_judged_against_the_baseline_and_must_last() -> None:
    cfg = ChangeSettings(baseline_days=5, min_wear_s=1200)
    healthy = judge_days(_days(5, 9), cfg)
    assert [j.status for j in healthy] == ["baseline"] * 5 + ["judged"] * 4
    assert all(not j.flagged for j in healthy)
    for c in healthy[-1].directions:  # no threshold below the published MDC
        assert c.threshold_deg >= 9.6
    dropped = judge_days(_days(5, 9, restricted_from=5), cfg)
    first, later = dropped[5], dropped[6:]
    assert not first.flagged  # one day is not yet a change
    assert all({"left_rotation", "right_rotation"} <= set(j.flagged) for j in later)
    changes = {c.direction: c for c in later[0].directions}
    assert changes["left_rotation"].change_deg < -changes["left_rotation"].threshold_deg
    short = [DailySummary(d.day, 1, merge([d.monitoring], d.monitoring.day)) for d in _days(6, 2)]
    short[1] = DailySummary(
        short[1].day, 1, WearMonitoring(**{**short[1].monitoring.__dict__, "wear_s": 60.0})
    )
    assert [j.status for j in judge_days(short, ChangeSettings(baseline_days=2))] == [
        "baseline",
        "too_little_wear",
    ]
    assert [j.status for j in judge_days(short[:1], ChangeSettings(baseline_days=2))] == [
        "baseline"
    ]
    with pytest.raises(ValueError, match="baseline_days = 1"):
        ChangeSettings(baseline_days=1)


def test_simulated_wear_days_end_to_end_flag_the_drop_and_not_the_healthy() -> None:
    """The bench's path (simulated IMUs, fusion, monitoring, days) at a small scale."""
    cfg = ChangeSettings(baseline_days=3, min_wear_s=150, min_excursions=5)
    # 8-min days: in 4 a day's p95 is mostly the opening nod and whether a far look came
    f = measure_wear_days(2, 1, 6, 8.0, seed=3, restriction=0.5, workers=1, settings=cfg)
    assert f["healthy_wear_days"] == 6 and f["restricted_wear_days"] == 3
    assert f["healthy_wear_days_with_change_flags"] == 0
    assert f["restricted_wear_days_with_change_flags"] >= 1
