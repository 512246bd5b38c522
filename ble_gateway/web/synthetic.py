"""A synthetic patient history for benchmarks and tests of the clinician view.

Records are shaped like the hub's (session and epoch payloads of ``record_payloads``, the
assessment built through the ``RomAssessment`` contract) and go into the clinic store through
its sync path (``ClinicStore.add_records``), so the view reads them exactly as it reads synced
ones. The patient starts with restricted right rotation and left bending that recover over the
period; some days are missed, a few sessions are not calibrated, a few run outside the model's
training range, and a few percent of the force frames have low confidence (more on the days out
of range). ``with_confidence=False`` gives records as a hub before the force confidence wrote
them (record format 1). Nothing here is clinical data.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from ble_gateway.store import ClinicStore, DeviceKey
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.gatt import SyncRecord
from edge_runtime.contracts.guided_test import (
    CALIBRATE,
    TEST_STEPS,
    GuidedTestResult,
    GuidedTestSettings,
    StepResult,
)
from edge_runtime.contracts.neck_angles import NECK_ANGLE_NAMES
from edge_runtime.contracts.record_payloads import (
    AngleSummary,
    CalibrationInfo,
    EpochRecord,
    ForceConfidence,
    ForceStats,
    ForceSummary,
    OutOfRange,
    SessionRecord,
)
from edge_runtime.contracts.rom_assessment import (
    SECTORS,
    AssessmentConfig,
    RomAssessment,
    SectorResult,
)
from edge_runtime.contracts.wear_monitoring import (
    DIRECTIONS,
    LOAD_LEVELS,
    GroupLoad,
    WearMonitoring,
)

# a personal envelope along each sector's centre (deg), as the demo wearer's bundle gives it
EXPECTED_DEG: dict[str, float] = dict(
    zip(SECTORS, (71.8, 55.9, 39.0, 49.3, 48.4, 49.3, 39.0, 55.9, 61.5, 61.4), strict=True)
)
# restriction at the start of the history (fraction of the envelope reached)
RESTRICTED: dict[str, float] = {
    "right_rotation": 0.5,
    "left_bend": 0.5,
    "extension_left_bend": 0.75,
}
GROUPS_N: dict[str, float] = {  # typical mean group force during a session (N)
    "extension": 60.0,
    "flexion": 25.0,
    "lat_bending": 40.0,
    "rotation_contra": 30.0,
    "rotation_ipsi": 30.0,
    "hyoid": 6.0,
}
MUSCLES = ("stern_mast", "stern_mast_L", "splen_cap", "splen_cap_L", "trap_cl", "trap_cl_L")


PROFILE = Anthropometrics("female", 1.65, 62.0, 0.105, 0.37, 4.1)
CALIBRATION = CalibrationInfo(
    neutral_s=(1.0, 4.0),
    nod_s=(4.5, 6.5),
    nod_peak_deg=24.0,
    nod_direction="flexion",
    trunk_axes=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
)


CONFIDENCE_THRESHOLD = 0.12  # of Fmax: the twin disagreement above which a frame is doubted


def epoch_payload(
    rng: np.random.Generator | random.Random, start_s: float = 0.0, with_confidence: bool = True
) -> EpochRecord:
    """A 10 s epoch like the hub's: the three neck angles' ranges, 72 muscles' forces."""
    uniform = rng.uniform

    def values(lo: float, hi: float, n: int) -> tuple[float, ...]:
        return tuple(round(float(uniform(lo, hi)), 2) for _ in range(n))

    return EpochRecord(
        start_s=start_s,
        end_s=start_s + 9.99,
        frames=1000,
        usable_frames=1000 - int(uniform(0, 100)),
        angles=AngleSummary(
            NECK_ANGLE_NAMES, values(-40, 0, 3), values(0, 40, 3), values(-5, 5, 3)
        ),
        force_mean_n=values(0, 40, 72),
        force_peak_n=values(40, 120, 72),
        # no random draws for the confidence: the other values stay those of format 1 records
        **_trusted(900, 0.02 + 0.02 * math.sin(start_s / 7.0) ** 2, with_confidence),
    )


def _trusted(frames: int, low_share: float, with_confidence: bool) -> dict[str, Any]:
    """The force frames and their confidence, for ``frames`` usable frames with forces."""
    if not with_confidence:
        return {"force_frames": frames, "confidence": None}
    low = round(frames * low_share)
    return {
        "force_frames": frames - low,
        "confidence": ForceConfidence(frames, low, CONFIDENCE_THRESHOLD),
    }


@dataclass(frozen=True)
class SyntheticPatient:
    code: str = "P-0001"
    address: str = "DC:EA:D4:28:92:64"
    store_id: str = "5a" * 16
    model_version: str = "2026.11.24.120000"


def session_payload(
    day: int,
    days: int,
    rng: np.random.Generator,
    started: datetime,
    model_version: str,
    with_confidence: bool = True,
) -> SessionRecord:
    """The summary of one protocol session on ``day`` of ``days`` (recovering restrictions)."""
    progress = day / max(days - 1, 1)
    calibrated = rng.random() > 0.04
    sectors = []
    for name in SECTORS:
        start = RESTRICTED.get(name, 0.97)
        ratio = float(np.clip(start + (0.95 - start) * progress + rng.normal(0, 0.03), 0.2, 1.15))
        expected = EXPECTED_DEG[name]
        deficit = expected * max(0.0, 1 - ratio)
        sectors.append(
            SectorResult(
                sector=name,
                status="deficit" if deficit >= 12.0 else "normal",
                expected_deg=expected,
                reached_deg=round(expected * ratio, 3),
                ratio=round(ratio, 3),
                deficit_deg=round(deficit, 3),
                deficit_pct=round(100 * max(0.0, 1 - ratio), 3),
                peak_speed_deg_s=round(float(rng.uniform(40, 90)), 3),
            )
        )
    duration_s = float(rng.uniform(240, 600))
    assessment = RomAssessment(
        duration_s=duration_s - 20,
        valid_s=duration_s - 25,
        sectors=tuple(sectors),
        spans=(),
        movements=int(rng.integers(18, 30)),
        sparc_median=round(float(rng.normal(-1.7, 0.1)), 3),
        config=AssessmentConfig(),
    )
    frames = int(duration_s * 100)
    out_of_range = int(rng.integers(50, 400)) if rng.random() < 0.1 else 0
    scale = 1 + 0.2 * math.sin(day / 30)

    def stats(mean_n: float) -> ForceStats:
        m = mean_n * scale * float(rng.uniform(0.9, 1.1))
        return ForceStats(
            round(m, 2), round(4 * m, 2), (round(0.8 * m, 2), round(2 * m, 2), round(3.5 * m, 2))
        )

    usable = int(frames * (0.9 if calibrated else 0.0))
    test = guided_test_result(calibrated)
    low_share = (0.12 if out_of_range else 0.02) + 0.02 * math.sin(day / 3) ** 2
    trusted = _trusted(usable, low_share, with_confidence)
    return SessionRecord(
        started_utc=started.isoformat(timespec="seconds"),
        source_t0_s=0.0,
        duration_s=round(duration_s, 3),
        end_reason="end_of_input",
        frames=frames,
        usable_frames=usable,
        calibration=CALIBRATION if calibrated else None,
        calibration_rejected=(),
        assessment=RomAssessment.from_dict(assessment.to_dict()) if calibrated else None,
        assessment_note=None if calibrated else test.words(),
        envelope_clamped_fields=(),
        forces=ForceSummary(
            frames if trusted["confidence"] is None else trusted["force_frames"],
            {m: stats(10.0) for m in MUSCLES},
            {g: stats(n) for g, n in GROUPS_N.items()},
        ),
        out_of_range=OutOfRange(
            out_of_range, {"neck_axial_rotation_left_rad": out_of_range} if out_of_range else {}
        ),
        marks=(),
        bundle_version=model_version,
        profile=PROFILE,
        confidence=trusted["confidence"],
        kind="test",
        guided_test=test,
    )


# habitual excursion (deg, the median of a healthy wearer's) per direction, and its sector
HABITUAL_DEG: dict[str, tuple[float, str]] = {
    "flexion": (22.0, "flexion"),
    "extension": (10.0, "extension"),
    "left_bend": (9.0, "left_bend"),
    "right_bend": (9.0, "right_bend"),
    "left_rotation": (23.0, "left_rotation"),
    "right_rotation": (23.0, "right_rotation"),
}


def wear_monitoring_block(
    rng: np.random.Generator, day: str, wear_s: float, progress: float
) -> WearMonitoring:
    """A wear session's monitoring on ``day``: excursions drawn around the habitual range,
    restricted like the tests (``RESTRICTED``) at ``progress`` 0 and recovered at 1."""
    per_hour = 130.0  # excursions per direction and hour of wear
    excursions = {}
    for d in DIRECTIONS:
        median, sector = HABITUAL_DEG[d]
        start = RESTRICTED.get(sector, 1.0)
        ratio = start + (1.0 - start) * progress
        n = int(rng.poisson(per_hour * wear_s / 3600))
        peaks = np.minimum(rng.gamma(3.0, median * ratio / 2.7, n), 120.0)
        excursions[d] = tuple(int(c) for c in np.bincount(peaks.astype(np.intp))) if n else ()
    moves = int(rng.poisson(1000.0 * wear_s / 3600))
    speeds = np.minimum(rng.lognormal(math.log(60.0), 0.5, moves), 599.0)
    force_s = round(wear_s * 0.97, 2)
    load = {}
    for group, mean_n in GROUPS_N.items():
        share = mean_n / 2000.0
        above = tuple(round(force_s * float(np.exp(-level / share)), 2) for level in LOAD_LEVELS)
        load[group] = GroupLoad(round(share * force_s, 4), above)
    flexed = round(float(rng.uniform(0.05, 0.2)) * wear_s, 2)
    return WearMonitoring(
        day, round(wear_s, 2), excursions,
        tuple(int(c) for c in np.bincount((speeds // 10).astype(np.intp))) if moves else (),
        flexed, force_s, load,
    )  # fmt: skip


def wear_session_payload(
    rng: np.random.Generator,
    started: datetime,
    model_version: str,
    progress: float,
    duration_s: float = 1800.0,
) -> SessionRecord:
    """A wear session of ``duration_s`` (its monitoring: ``wear_monitoring_block``)."""
    frames = int(duration_s * 100)
    usable = int(frames * 0.95)
    trusted = _trusted(usable, 0.02, True)

    def stats(mean_n: float) -> ForceStats:
        return ForceStats(
            round(mean_n, 2),
            round(3 * mean_n, 2),
            (round(0.8 * mean_n, 2), round(1.5 * mean_n, 2), round(2.5 * mean_n, 2)),
        )

    block = wear_monitoring_block(rng, started.date().isoformat(), usable / 100, progress)
    return SessionRecord(
        started_utc=started.isoformat(timespec="seconds"),
        source_t0_s=0.0,
        duration_s=round(duration_s, 3),
        end_reason="max_duration",
        frames=frames,
        usable_frames=usable,
        calibration=CALIBRATION,
        calibration_rejected=(),
        assessment=None,
        assessment_note="wear: range of motion is judged in guided tests only",
        envelope_clamped_fields=(),
        forces=ForceSummary(
            trusted["force_frames"],
            {m: stats(6.0) for m in MUSCLES},
            {g: stats(0.6 * n) for g, n in GROUPS_N.items()},
        ),
        out_of_range=OutOfRange(0, {}),
        marks=(),
        bundle_version=model_version,
        profile=PROFILE,
        confidence=trusted["confidence"],
        kind="wear",
        guided_test=None,
        monitoring=block,
    )


def guided_test_result(performed: bool) -> GuidedTestResult:
    """A guided test, every step done in turn (``performed``) or, when the calibration was
    never found, every step missed at its timeout: an incomplete test."""
    settings = GuidedTestSettings()
    steps, t = [], 0.0
    for step in TEST_STEPS:
        took = (8.0 if step == CALIBRATE else 4.5) if performed else (
            settings.calibrate_timeout_s if step == CALIBRATE else settings.step_timeout_s
        )  # fmt: skip
        peak = None if step == CALIBRATE else (30.0 if performed else 0.0)
        steps.append(StepResult(step, "done" if performed else "missed", t, t + took, peak))
        t += took
    if performed:
        return GuidedTestResult("complete", tuple(steps), (), "", settings)
    reason = "a step timed out without the movement"
    return GuidedTestResult("incomplete", tuple(steps), TEST_STEPS, reason, settings)


def fill_history(
    store: ClinicStore,
    days: int,
    patient: SyntheticPatient = SyntheticPatient(),
    seed: int = 0,
    end: datetime | None = None,
    wear_probability: float = 0.85,
    wear_sessions_per_day: int = 0,
    test_every_days: int = 1,
) -> int:
    """Write ``days`` days ending at ``end`` (default: today), through the sync path: on days
    worn (days missed at random) ``wear_sessions_per_day`` wear sessions of 30 min with their
    monitoring, and every ``test_every_days`` days a guided test with an epoch record, all
    restricted at first and recovering. Returns the device id."""
    rng = np.random.default_rng(seed)
    end = end or datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    device_id = store.device_id(DeviceKey(patient.address, patient.store_id), patient.model_version)
    store.assign_device(device_id, patient.code)
    batch: list[SyncRecord] = []
    seq = store.last_seq(device_id)
    for day in range(days):
        if rng.random() > wear_probability:
            continue
        started = end - timedelta(days=days - 1 - day)
        records: list[tuple[datetime, str, Any]] = []
        if day % test_every_days == 0:
            test = session_payload(day, days, rng, started, patient.model_version)
            records += [(started, f"{day:06x}", epoch_payload(rng)), (started, f"{day:06x}", test)]
        for k in range(wear_sessions_per_day):
            at = started + timedelta(minutes=30 * (k + 1))
            wear = wear_session_payload(rng, at, patient.model_version, day / max(days - 1, 1))
            records.append((at, f"{day:06x}{k:02x}", wear))
        for at, suffix, record in records:
            seq += 1
            session_id = at.strftime("%Y%m%dT%H%M%SZ-") + suffix
            t_utc = at.isoformat(timespec="milliseconds")
            batch.append(SyncRecord(seq, t_utc, record.KIND, session_id, record.to_json()))
        if len(batch) >= 400:
            store.add_records(device_id, batch)
            batch = []
    store.add_records(device_id, batch)
    return device_id
