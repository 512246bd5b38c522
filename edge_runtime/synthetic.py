"""Synthetic subjects for validating the range-of-motion assessment end to end.

A subject performs the guided test (``contracts.guided_test``): a neutral hold and a nod (flexion,
or extension when that reaches further; it calibrates the trunk's lateral axis and is the test's
movement in its direction), then each other direction in the test's order, out to the end of its
range, a short hold, and back: each plane both ways, the four diagonals and both rotations. A
healthy subject reaches 90-100% of the personal envelope in every direction. A restricted subject
has one to three restricted sectors (sometimes a whole quadrant: three neighbours), each capped so
that its deficit lies between the flag threshold plus a margin and 85% of the expected range.

The head-on-trunk motion is rendered through the IMU simulator (trunk motion, mounting
misalignment, bias, drift, noise, magnetometer), fused back into neck angles and assessed, so the
figures include every error source of the hub's path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.envelope import MotionEnvelope
from edge_runtime.contracts.guided_test import DIRECTION_ORDER, GuidedTestResult, GuidedTestRunner
from edge_runtime.contracts.guided_test import direction_unit as sector_direction
from edge_runtime.contracts.neck_angles import rotation_from_neck_angles
from edge_runtime.contracts.rom_assessment import (
    PLANAR_SECTORS,
    SECTORS,
    AssessmentConfig,
    RomAssessment,
    assess_session,
    expected_deg,
)
from edge_runtime.fusion import neck_kinematics_from_imus
from edge_runtime.hub.tracking import heading_horizon_s
from edge_runtime.imu_sim import SimulationSetup, simulate_imus

FloatArray = npt.NDArray[np.float64]
RATE_HZ = 100.0
WARMUP_S = 20.0  # the sensors run (filters converge) while the wearer settles, before the protocol
NEUTRAL_S = 3.0
STROKE_OUT_S = 1.2
HOLD_S = 0.4
REST_S = 0.5
RESTRICTION_MARGIN_DEG = 4.0  # restrictions start this far above the flag threshold


def sector_limit_rad(envelope: MotionEnvelope, name: str) -> float:
    """The envelope along a sector's centre from neutral (the assessment's expected range)."""
    return math.radians(expected_deg(envelope)[name])


@dataclass(frozen=True)
class SyntheticSubject:
    reach: dict[str, float]  # fraction of the envelope reached per sector
    restricted: tuple[str, ...]
    seed: int

    def amplitudes_rad(self, envelope: MotionEnvelope) -> dict[str, float]:
        return {s: self.reach[s] * sector_limit_rad(envelope, s) for s in SECTORS}


def random_subject(
    rng: np.random.Generator, envelope: MotionEnvelope, restricted: bool,
    config: AssessmentConfig, seed: int,
) -> SyntheticSubject:  # fmt: skip
    reach = {s: float(rng.uniform(0.9, 1.0)) for s in SECTORS}
    chosen: tuple[str, ...] = ()
    if restricted:
        if rng.random() < 0.25:  # a whole quadrant: a diagonal and its two neighbours
            centre = int(rng.integers(0, 4)) * 2 + 1
            chosen = tuple(PLANAR_SECTORS[(centre + k) % 8] for k in (-1, 0, 1))
        else:
            k = int(rng.integers(1, 4))
            chosen = tuple(str(s) for s in rng.choice(SECTORS, size=k, replace=False))
        for s in chosen:
            expected = math.degrees(sector_limit_rad(envelope, s))
            low = config.min_deficit_deg + RESTRICTION_MARGIN_DEG
            deficit = rng.uniform(low, max(low, 0.85 * expected))
            reach[s] = max(0.0, 1.0 - deficit / expected)
    return SyntheticSubject(reach=reach, restricted=chosen, seed=seed)


def protocol_angles(
    amplitudes_rad: dict[str, float],
) -> tuple[FloatArray, FloatArray, tuple[float, float], Literal["flexion", "extension"]]:
    """The protocol's contract-angle trajectory (t_s, (N, 3)), its nod window (s) and the nod's
    direction (the first movement)."""
    nod: Literal["flexion", "extension"] = (
        "flexion" if amplitudes_rad["flexion"] >= amplitudes_rad["extension"] else "extension"
    )
    order = (nod, *(s for s in DIRECTION_ORDER if s != nod))  # the nod is its direction's move
    dt = 1.0 / RATE_HZ
    pieces = [np.zeros((int(NEUTRAL_S * RATE_HZ), 3))]
    nod_window = (NEUTRAL_S, NEUTRAL_S + 2 * STROKE_OUT_S + HOLD_S)
    out = np.arange(0.0, STROKE_OUT_S, dt) / STROKE_OUT_S
    rise = 0.5 - 0.5 * np.cos(math.pi * out)  # raised cosine 0 -> 1
    for name in order:
        shape = np.concatenate([rise, np.ones(int(HOLD_S * RATE_HZ)), rise[::-1],
                                np.zeros(int(REST_S * RATE_HZ))])  # fmt: skip
        pieces.append(shape[:, None] * amplitudes_rad[name] * sector_direction(name))
    angles = np.concatenate(pieces)
    return np.arange(len(angles), dtype=np.float64) * dt, angles, nod_window, nod


@dataclass(frozen=True)
class SyntheticResult:
    subject: SyntheticSubject
    assessment: RomAssessment | None  # None: the guided test was not complete
    angle_rmse_deg: FloatArray  # (3,) fused vs true neck angles
    guided_test: GuidedTestResult


def run_subject(
    subject: SyntheticSubject,
    envelope: MotionEnvelope,
    config: AssessmentConfig | None = None,
    setup: SimulationSetup | None = None,
    use_magnetometer: bool = True,
) -> SyntheticResult:
    _, truth, (nod_start, nod_end), nod = protocol_angles(subject.amplitudes_rad(envelope))
    warmup = int(WARMUP_S * RATE_HZ)
    angles = np.concatenate([np.zeros((warmup, 3)), truth])
    t = np.arange(len(angles)) / RATE_HZ
    setup = replace(setup or SimulationSetup(), calm_s=WARMUP_S + NEUTRAL_S)
    session = simulate_imus(t, rotation_from_neck_angles(angles), setup, seed=subject.seed)
    kin = neck_kinematics_from_imus(
        session.head,
        session.trunk,
        neutral_s=(WARMUP_S + 0.5, WARMUP_S + NEUTRAL_S - 0.5),
        nod_s=(WARMUP_S + nod_start, WARMUP_S + nod_end),
        nod_direction=nod,
        use_magnetometer=use_magnetometer and setup.magnetometer,
    )
    measured = kin.angles_rad[warmup:]
    horizon = heading_horizon_s(
        kin.t_s[0] + WARMUP_S + 0.5, use_magnetometer and setup.magnetometer
    )
    if horizon is not None:  # as the hub does: no 6-axis angle past its horizon
        measured = np.where((kin.t_s[warmup:] >= horizon)[:, None], np.nan, measured)
    rmse = np.degrees(np.sqrt(np.nanmean((measured - truth) ** 2, axis=0)))
    # the hub judges range only in a complete guided test: follow it on the fused angles
    t_test = kin.t_s[warmup:] - kin.t_s[warmup]
    runner = GuidedTestRunner(0.0)
    runner.start()
    runner.calibrated(nod_end, nod)
    runner.push(t_test, measured, np.asarray(np.isfinite(measured).all(axis=1)))
    test = runner.end_of_recording(float(t_test[-1]))
    assessment = None
    if test.complete:
        assessment = assess_session(kin.t_s[warmup:], measured, envelope, config)
    return SyntheticResult(subject, assessment, rmse, test)


@dataclass(frozen=True)
class Confusion:
    true_positive: int = 0
    false_negative: int = 0
    false_positive: int = 0
    true_negative: int = 0
    insufficient: int = 0
    healthy_subjects: int = 0
    healthy_subjects_flagged: int = 0
    tests_incomplete: int = 0  # guided tests the runner did not find complete

    @property
    def sensitivity(self) -> float:
        return self.true_positive / max(1, self.true_positive + self.false_negative)

    @property
    def specificity(self) -> float:
        return self.true_negative / max(1, self.true_negative + self.false_positive)


def confusion(results: list[SyntheticResult]) -> Confusion:
    """Sector counts; a test that was not complete flags nothing (its restrictions are missed)."""
    tp = fn = fp = tn = insufficient = healthy = healthy_flagged = incomplete = 0
    for r in results:
        flagged = set(r.assessment.flagged) if r.assessment else set()
        insufficient += len(r.assessment.insufficient) if r.assessment else 0
        incomplete += not r.guided_test.complete
        for s in SECTORS:
            restricted = s in r.subject.restricted
            if restricted and s in flagged:
                tp += 1
            elif restricted:
                fn += 1
            elif s in flagged:
                fp += 1
            else:
                tn += 1
        if not r.subject.restricted:
            healthy += 1
            healthy_flagged += bool(flagged)
    return Confusion(tp, fn, fp, tn, insufficient, healthy, healthy_flagged, incomplete)
