"""Days of simulated wear judged for change (``contracts.daily``), for ``cervical bench
assessment``: healthy wearers must show no change, wearers whose range drops after their
baseline must.

Each wearer-day is ``minutes`` of free-living motion (``wear_sim``, a new seed per day) rendered
as head and trunk IMUs by the simulator (new sensor errors per day), fused and calibrated as the
hub does at the start of a wear day, measured into a monitoring block
(``contracts.wear_monitoring``) and summed into days. A *restricted* wearer keeps the same
habits but, after the baseline week, reaches only ``restriction`` of the range in every
direction (an acute neck problem): the change flags must find it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import numpy as np

from edge_runtime.contracts.daily import ChangeSettings, daily_summaries, judge_days
from edge_runtime.contracts.neck_angles import rotation_from_neck_angles
from edge_runtime.contracts.wear_monitoring import WearMonitoring, wear_monitoring
from edge_runtime.fusion import NeckKinematics, neck_kinematics_from_imus
from edge_runtime.hub.tracking import heading_horizon_s
from edge_runtime.imu_sim import SimulationSetup, simulate_imus
from edge_runtime.wear_sim import NEUTRAL_S, RATE_HZ, WearRanges, free_living_angles, nod_window_s

FIRST_DAY = date(2026, 1, 5)


def simulated_wear(
    seed: int, minutes: float, ranges: WearRanges | None = None, six_axis: bool = False
) -> tuple[np.ndarray, NeckKinematics]:
    """``minutes`` of free-living wear: the true neck angles, and the kinematics the IMU path
    makes of them (simulated sensors, fusion, calibration on the opening hold and nod).
    ``six_axis``: sensors without a magnetometer, as the hub's; frames past the hub's horizon
    for a 6-axis calibration (``hub.tracking``) are not valid, as on the hub."""
    t, truth = free_living_angles(minutes * 60.0, seed, ranges)
    setup = SimulationSetup(calm_s=NEUTRAL_S, magnetometer=not six_axis)
    sim = simulate_imus(t, rotation_from_neck_angles(truth), setup, seed=seed)
    neutral, nod = nod_window_s()
    kin = neck_kinematics_from_imus(
        sim.head, sim.trunk, neutral, nod, use_magnetometer=not six_axis
    )
    horizon = heading_horizon_s(kin.t_s[0] + neutral[0], use_magnetometer=not six_axis)
    if horizon is not None:  # as the hub does: no 6-axis angle past its horizon
        kin = replace(kin, valid=kin.valid & (kin.t_s < horizon))
    return truth, kin


def simulated_day(
    seed: int, day: date, minutes: float, ranges: WearRanges, six_axis: bool = False
) -> WearMonitoring:
    """One wearer-day's monitoring block, end to end from simulated IMUs."""
    _, kin = simulated_wear(seed, minutes, ranges, six_axis)
    valid = kin.valid[:, None]
    angles = np.where(valid, kin.angles_rad, np.nan)
    return wear_monitoring(day, angles, np.where(valid, kin.velocities_rad_s, np.nan), RATE_HZ)


def _wearer(args: tuple[int, int, float, float | None, int, bool]) -> list[WearMonitoring]:
    """A wearer's days (``restriction`` None: healthy throughout)."""
    seed, days, minutes, restriction, baseline_days, six_axis = args
    habitual = WearRanges()
    blocks = []
    for k in range(days):
        ranges = habitual
        if restriction is not None and k >= baseline_days:
            ranges = replace(
                habitual,
                extension_deg=habitual.extension_deg * restriction,
                flexion_deg=habitual.flexion_deg * restriction,
                bend_deg=habitual.bend_deg * restriction,
                rotation_deg=habitual.rotation_deg * restriction,
            )
        blocks.append(
            simulated_day(seed * 1000 + k, FIRST_DAY + timedelta(days=k), minutes, ranges, six_axis)
        )
    return blocks


def measure_wear_days(
    healthy: int,
    restricted: int,
    days: int,
    minutes: float,
    seed: int,
    restriction: float = 0.6,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    settings: ChangeSettings | None = None,
    six_axis: bool = False,
) -> dict[str, Any]:
    """Judged days and their change flags, for healthy and restricted simulated wearers."""
    cfg = settings or ChangeSettings()
    jobs: list[tuple[int, int, float, float | None, int, bool]] = [
        (seed + 200_000 + i, days, minutes, None, cfg.baseline_days, six_axis)
        for i in range(healthy)
    ]
    jobs += [
        (seed + 300_000 + i, days, minutes, restriction, cfg.baseline_days, six_axis)
        for i in range(restricted)
    ]
    counts = {"healthy": [0, 0], "restricted": [0, 0]}  # judged days, days with a change flag
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, blocks in enumerate(pool.map(_wearer, jobs)):
            kind = "healthy" if i < healthy else "restricted"
            for j in judge_days(daily_summaries(blocks), cfg):
                if j.status == "judged":
                    counts[kind][0] += 1
                    counts[kind][1] += bool(j.flagged)
            if progress:
                progress(i + 1)
    return {
        "healthy_wear_days": counts["healthy"][0],
        "healthy_wear_days_with_change_flags": counts["healthy"][1],
        "restricted_wear_days": counts["restricted"][0],
        "restricted_wear_days_with_change_flags": counts["restricted"][1],
        "wear_days_per_wearer": days,
        "wear_day_minutes": minutes,
        "wear_restriction": restriction,
    }
