"""The hub's streaming stages against the offline reference and the simulator's ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.contracts import hub_records as hr
from edge_runtime.contracts.neck_angles import neck_kinematics, rotation_from_neck_angles
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.fusion import neck_kinematics_from_imus
from edge_runtime.hub.forces import ForceStatistics
from edge_runtime.hub.frames import Arrival, FrameBlock, FramePairer
from edge_runtime.hub.tracking import (
    CalibrationSettings,
    KinematicBlock,
    NeckTracker,
    StreamingDerivatives,
    concatenate_blocks,
)
from edge_runtime.imu_sim import SimulationSetup, simulate_imus
from edge_runtime.sensors import SensorRanges, SensorRole
from edge_runtime.sensors.replay import chunked
from edge_runtime.sensors.sim import SimSource, SimSpec


def test_streaming_derivatives_equal_the_offline_filter() -> None:
    rng = np.random.default_rng(0)
    for trial in range(150):
        n = int(rng.integers(5, 400))
        angles = np.cumsum(rng.normal(size=(n, 3)), axis=0) * 0.01
        valid = rng.random(n) > 0.03
        if trial % 3 == 0:
            start = int(rng.integers(0, n))
            valid[start : start + int(rng.integers(1, 30))] = False
        reference = neck_kinematics(angles, 100.0, valid)
        stream, pos, parts = StreamingDerivatives(100.0), 0, []
        while pos < n:
            stop = min(n, pos + int(rng.integers(1, 60)))
            sl = slice(pos, stop)
            parts.append(
                stream.push(
                    np.arange(n)[sl] / 100.0,
                    np.zeros(stop - pos, np.uint16),
                    angles[sl],
                    valid[sl],
                    flush=stop == n,
                ).kinematics
            )
            pos = stop
        np.testing.assert_allclose(np.concatenate(parts), reference, atol=1e-9)


def _run_tracker(
    spec: SimSpec, chunk_s: float = 0.5
) -> tuple[KinematicBlock, NeckTracker, SimSource, SimSource]:
    head, trunk = SimSource(spec, "head"), SimSource(spec, "trunk")
    tracker = NeckTracker(100.0, True, CalibrationSettings())
    return (
        _track_recordings(tracker, head.recording, trunk.recording, chunk_s),
        tracker,
        head,
        trunk,
    )


def _track_recordings(
    tracker: NeckTracker, head: ImuRecording, trunk: ImuRecording, chunk_s: float = 0.5
) -> KinematicBlock:
    """Both recordings through the frame pairer into the tracker, ``chunk_s`` at a time."""
    pairer, out = FramePairer(100.0, SensorRanges(), SensorRanges()), []
    for h, t in zip(chunked(head, chunk_s, False), chunked(trunk, chunk_s, False), strict=True):
        pairer.push("head", h)
        pairer.push("trunk", t)
        block = pairer.take()
        if block is not None:
            out.append(tracker.push(block))
    out.append(tracker.finish())
    return concatenate_blocks(out)


@pytest.mark.parametrize("seed", [3, 8])
def test_neck_angles_from_simulated_imus_within_2_deg_and_equal_to_offline(seed: int) -> None:
    """Acceptance: RMSE <= 2 deg per angle over the standard protocol, with trunk motion, noise,
    bias, drift and misalignment; the calibration is found in the stream by itself, and the
    streaming result equals the offline path given the same calibration windows."""
    kin, tracker, head, trunk = _run_tracker(SimSpec(seed=seed, restrict=("left_bend",)))
    truth = head.protocol.truth_angles_rad
    assert len(kin.t_s) == len(truth) and tracker.calibration_info is not None
    calibrated = (kin.flags & hr.UNCALIBRATED) == 0
    neutral_start = tracker.calibration_info.neutral_s[0]
    assert calibrated.sum() > 0.5 * len(truth) and kin.t_s[calibrated][0] == neutral_start
    error = np.degrees(kin.kinematics[calibrated, :3] - truth[calibrated])
    rmse = np.sqrt((error**2).mean(axis=0))
    assert (rmse < 2.0).all(), rmse
    info = tracker.calibration_info
    offline = neck_kinematics_from_imus(
        head.recording,
        trunk.recording,
        neutral_s=(info.neutral_s[0], info.neutral_s[1] + 0.005),
        nod_s=(info.nod_s[0], info.nod_s[1] + 0.005),
        nod_direction=info.nod_direction,
    )
    np.testing.assert_allclose(
        kin.kinematics[calibrated, :3], offline.angles_rad[calibrated], atol=1e-9
    )
    # derivatives too, past the first half window (the stream's run starts at calibration)
    inner = np.flatnonzero(calibrated)[8:]
    np.testing.assert_allclose(
        kin.kinematics[inner, 3:6], offline.velocities_rad_s[inner], atol=1e-9
    )


def test_a_rotation_first_is_rejected_as_a_nod_and_frames_stay_uncalibrated() -> None:
    rate = 100.0
    stroke = 0.5 - 0.5 * np.cos(np.pi * np.arange(120) / 120)
    rotation = np.concatenate([np.zeros(2300), stroke, np.ones(100), stroke[::-1], np.zeros(300)])
    angles = np.zeros((len(rotation), 3))
    angles[:, 2] = np.radians(60.0) * rotation  # left rotation, no nod
    t = np.arange(len(angles)) / rate
    session = simulate_imus(
        t, rotation_from_neck_angles(angles), SimulationSetup(calm_s=23.0), seed=1
    )
    pairer = FramePairer(rate, SensorRanges(), SensorRanges())
    pairer.push("head", session.head)
    pairer.push("trunk", session.trunk)
    tracker = NeckTracker(rate, True, CalibrationSettings(nod_direction="auto"))
    block = pairer.take()
    assert block is not None
    out = concatenate_blocks([tracker.push(block), tracker.finish()])
    assert tracker.calibration is None and len(tracker.rejected) == 1
    assert "right axis" in tracker.rejected[0] or "vertical" in tracker.rejected[0]
    assert len(out.t_s) == len(t) and (out.flags & hr.UNCALIBRATED).all()
    assert np.isnan(out.kinematics).all()


def _frames(n: int, start: float = 0.0) -> ImuRecording:
    t = start + np.arange(n) / 100.0
    acc = np.tile([0.0, 0.0, 9.81], (n, 1))
    return ImuRecording(t, np.zeros((n, 3)), acc, np.tile([0.0, 20.0, -40.0], (n, 1)))


def test_frame_pairing_flags_every_defect() -> None:
    pairer = FramePairer(100.0, SensorRanges(), SensorRanges(), lost_s=1.0)
    head = _frames(600)
    head.gyr_rad_s[50] = np.nan  # NaN sample
    head.acc_m_s2[60, 2] = 16 * 9.80665  # saturated axis
    keep = np.ones(600, dtype=bool)
    keep[100:105] = False  # five dropped samples
    t = head.t_s.copy()
    t[200] = t[150]  # a timestamp that went backwards
    t[300:] += 0.8  # a jump ahead: 80 frames missing
    jumped = ImuRecording(t[keep], head.gyr_rad_s[keep], head.acc_m_s2[keep], head.mag_ut[keep])  # type: ignore[index]
    pairer.push("head", jumped)
    pairer.push("trunk", _frames(680))
    block = pairer.take()
    assert block is not None and len(block) == 680
    spans = {s["reason"]: s for s in hr.flag_spans(block.flags, block.t_s - block.t_s[0])}
    assert hr.flag_names(int(block.flags[50])) == ["non_finite_samples"]
    assert block.flags[60] & hr.SATURATED
    assert (block.flags[100:105] & hr.DROPPED).all() and not block.flags[105] & hr.DROPPED
    assert block.flags[200] & hr.DROPPED and block.flags[201] & hr.TIME_REVERSED
    assert (block.flags[300:380] & hr.DROPPED).all() and block.flags[380] & hr.TIME_JUMP
    assert spans["timestamp_jump"]["start_s"] == pytest.approx(3.8)
    assert not (block.flags & hr.SENSOR_LOST).any()


def _feed(
    pairer: FramePairer,
    role: SensorRole,
    start_s: float,
    seconds: float,
    at_s: float,
    buffer_s: float,
) -> FrameBlock | None:
    """``seconds`` of one sensor's samples from ``start_s``, taken by its reader at ``at_s``."""
    pairer.push(role, _frames(round(seconds * 100), start=start_s), Arrival(at_s, buffer_s))
    return pairer.take()


def test_a_reader_stall_shorter_than_the_sensor_buffer_loses_nothing() -> None:
    """The head's reader is starved for 1.5 s while the trunk's goes on; the head's FIFO holds
    2 s. (Judged by how far the trunk ran ahead, this lost half a second of frames.)"""
    pairer, blocks = FramePairer(100.0, SensorRanges(), SensorRanges(), lost_s=1.0), []
    for k in range(10):  # both readers take 0.1 s chunks in real time
        _feed(pairer, "head", k / 10, 0.1, k / 10, buffer_s=2.0)
        blocks.append(_feed(pairer, "trunk", k / 10, 0.1, k / 10, buffer_s=2.0))
    for k in range(10, 25):  # the head's reader stalls for 1.5 s
        blocks.append(_feed(pairer, "trunk", k / 10, 0.1, k / 10, buffer_s=2.0))
    blocks.append(_feed(pairer, "head", 1.0, 1.5, 2.55, buffer_s=2.0))  # its FIFO, all of it
    out = [b for b in blocks if b is not None]
    assert sum(len(b) for b in out) == 250
    assert not any(b.flags.any() for b in out)


def test_a_silent_sensor_is_still_reported_lost_beyond_its_buffer() -> None:
    pairer, blocks = FramePairer(100.0, SensorRanges(), SensorRanges(), lost_s=1.0), []
    for k in range(10):
        _feed(pairer, "head", k / 10, 0.1, k / 10, buffer_s=0.5)
        blocks.append(_feed(pairer, "trunk", k / 10, 0.1, k / 10, buffer_s=0.5))
    for k in range(10, 40):  # the head sends nothing for 3 s
        blocks.append(_feed(pairer, "trunk", k / 10, 0.1, k / 10, buffer_s=0.5))
    out = [b for b in blocks if b is not None]
    flags = np.concatenate([b.flags for b in out])
    # silent for longer than its buffer + lost_s: everything older than its 0.5 s buffer is lost
    assert len(flags) == 350 and not flags[:100].any()
    assert (flags[100:] == hr.SENSOR_LOST | hr.DROPPED).all()
    # it comes back with what its FIFO kept (the newest 0.5 s) and goes on: nothing more lost
    back = _feed(pairer, "head", 3.5, 1.0, 4.05, buffer_s=0.5)
    assert back is not None and len(back) == 50 and not back.flags.any()
    late = _feed(pairer, "head", 2.0, 0.5, 4.1, buffer_s=0.5)  # samples for frames long gone
    assert late is None and pairer.grids["head"].available == 50  # 3.5-4.5 s less the 50 paired


def test_without_arrival_times_silence_is_judged_by_the_sensor_timestamps() -> None:
    """An offline replay: one sensor's file has a 1.5 s hole, the other's ends early."""
    pairer = FramePairer(100.0, SensorRanges(), SensorRanges(), lost_s=1.0, max_lag_s=60.0)
    pairer.push("head", _frames(100))
    pairer.push("head", _frames(200, start=2.5))  # 1.5 s without samples: lost
    pairer.push("trunk", _frames(600))
    block = pairer.take()
    assert block is not None and len(block) == 450
    assert (block.flags[100:250] == hr.SENSOR_LOST | hr.DROPPED).all()
    assert block.flags[250] & hr.TIME_JUMP and not block.flags[:100].any()
    assert pairer.take() is None  # the head's data ends: its silence is not known yet...
    rest = pairer.take(flush=True)  # ...until the input ends
    assert rest is not None and len(rest) == 150 and (rest.flags & hr.SENSOR_LOST).all()


def test_a_sensor_too_far_behind_is_lost_whatever_the_clocks_say() -> None:
    pairer = FramePairer(100.0, SensorRanges(), SensorRanges(), lost_s=1.0, max_lag_s=5.0)
    pairer.push("head", _frames(100))
    pairer.push("trunk", _frames(700))
    block = pairer.take()
    assert block is not None and len(block) == 700
    assert (block.flags[100:] & hr.SENSOR_LOST).all() and not block.flags[:100].any()


def test_a_sensor_clock_that_resets_is_re_anchored(caplog: pytest.LogCaptureFixture) -> None:
    pairer = FramePairer(100.0, SensorRanges(), SensorRanges())
    pairer.push("head", _frames(300))
    pairer.push("head", _frames(500))  # the head sensor's clock restarted at 0 (3 s back)
    pairer.push("trunk", _frames(800))
    block = pairer.take()
    assert block is not None and "re-anchored" in caplog.text
    # discarded while behind (2 s, a gap), then re-anchored as if the samples came in real time
    assert len(block) == 800 and not (block.flags & hr.SENSOR_LOST).any()
    assert (block.flags[300:500] & hr.DROPPED).all() and block.flags[500] & hr.TIME_REVERSED
    assert not block.flags[501:].any()


def test_force_statistics_match_numpy_within_a_bin() -> None:
    rng = np.random.default_rng(1)
    forces = rng.gamma(0.6, 30.0, size=(20_000, 3))
    stats = ForceStatistics(["a", "b", "c"], {"ab": [0, 1]}, np.array([400.0, 400.0, 400.0]))
    for part in np.array_split(forces, 7):
        stats.add(part)
    summary = stats.summary().to_dict()
    series = np.concatenate([forces, forces[:, :2].sum(axis=1, keepdims=True)], axis=1)
    for j, name in enumerate(["a", "b", "c"]):
        entry = summary["muscles"][name]
        assert entry["mean_n"] == pytest.approx(series[:, j].mean(), abs=0.01)
        assert entry["peak_n"] == pytest.approx(series[:, j].max(), abs=0.01)
        for q in (50, 90, 99):
            exact = np.percentile(series[:, j], q)
            bin_n = 2 * np.sqrt(exact) * np.sqrt(400.0) / 256 + 0.1  # one bin on the sqrt scale
            assert entry[f"p{q}_n"] == pytest.approx(exact, abs=bin_n)
    assert summary["groups"]["ab"]["p90_n"] == pytest.approx(
        np.percentile(series[:, 3], 90), rel=0.03
    )


def test_a_six_axis_tracker_trusts_its_heading_for_its_horizon_only() -> None:
    """Without a magnetometer the heading drifts: frames past ``six_axis_trust_s`` after the
    neutral hold come out UNCALIBRATED (NaN), those before it are accurate; with a magnetometer
    the same wear stays calibrated throughout."""
    from edge_runtime.wear_sim import NEUTRAL_S, free_living_angles

    _, wear = free_living_angles(150.0, seed=5)
    settle = np.zeros((int(12.0 * 100), 3))  # the filters settle (``settle_s``) before the hold
    truth = np.concatenate([settle, wear])
    t = np.arange(len(truth)) / 100.0
    for magnetometer in (False, True):
        setup = SimulationSetup(calm_s=12.0 + NEUTRAL_S, magnetometer=magnetometer)
        sim = simulate_imus(t, rotation_from_neck_angles(truth), setup, seed=5)
        tracker = NeckTracker(100.0, magnetometer, CalibrationSettings(six_axis_trust_s=60.0))
        kin = _track_recordings(tracker, sim.head, sim.trunk)
        assert tracker.calibration_info is not None
        neutral_start = tracker.calibration_info.neutral_s[0]
        calibrated = (kin.flags & hr.UNCALIBRATED) == 0
        trusted = (kin.t_s >= neutral_start) & (kin.t_s < neutral_start + 60.0)
        assert calibrated[trusted].all()
        error = np.abs(np.degrees(kin.kinematics[trusted, :3] - truth[trusted]))
        assert np.percentile(error, 95, axis=0).max() < 5.0, np.percentile(error, 95, axis=0)
        later = kin.t_s >= neutral_start + 60.0
        assert later.sum() > 60 * 100
        if magnetometer:
            assert calibrated[later].all() and not tracker.heading_expired
        else:
            assert not calibrated[later].any() and np.isnan(kin.kinematics[later]).all()
            assert tracker.heading_expired
