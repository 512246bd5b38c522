"""The guided test's runner on known head motion: every step of a performed test is found in
order, a direction not performed is missing at its timeout, an aborted test is abandoned, and none
of those ever carries an assessment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.contracts.guided_test import (
    CALIBRATE,
    DIRECTION_ORDER,
    PROMPTS,
    TEST_STEPS,
    GuidedTestError,
    GuidedTestResult,
    GuidedTestRunner,
    GuidedTestSettings,
    StepProgress,
    find_guided_test,
    in_sector,
)
from edge_runtime.contracts.record_fields import Fields
from edge_runtime.synthetic import NEUTRAL_S, RATE_HZ, protocol_angles

AMPLITUDE_RAD = math.radians(40.0)


def _protocol(
    amplitudes_deg: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The synthetic test's true angles, and the time its nod ended (the calibration)."""
    amplitudes = {s: AMPLITUDE_RAD for s in DIRECTION_ORDER}
    for name, deg in (amplitudes_deg or {}).items():
        amplitudes[name] = math.radians(deg)
    t, angles, (_, nod_end), _ = protocol_angles(amplitudes)
    return t, angles, nod_end


def _run(
    runner: GuidedTestRunner, t: np.ndarray, angles: np.ndarray, calibrated_at: float | None,
    nod: str = "flexion", chunk: int = 50,
) -> list[StepProgress | GuidedTestResult]:  # fmt: skip
    """Feed the frames half a second at a time, the calibration announced when it is found."""
    progress: list[StepProgress | GuidedTestResult] = [*runner.start()]
    told = False
    for i in range(0, len(t), chunk):
        if calibrated_at is not None and not told and t[i] >= calibrated_at:
            progress += runner.calibrated(calibrated_at, nod)
            told = True
        valid = np.full(len(t[i : i + chunk]), calibrated_at is not None and told)
        progress += runner.push(t[i : i + chunk], angles[i : i + chunk], valid)
    return progress


def test_a_performed_test_is_complete_every_step_in_order() -> None:
    t, angles, nod_end = _protocol()
    runner = GuidedTestRunner(0.0)
    progress = _run(runner, t, angles, nod_end)
    result = runner.result
    assert result is not None and result.complete and result.missing == ()
    # the nod is the test's flexion: it follows the calibration, then the others in order
    order = [CALIBRATE, "flexion", *(d for d in DIRECTION_ORDER if d != "flexion")]
    assert [r.step for r in result.steps] == order and sorted(order) == sorted(TEST_STEPS)
    done = [p for p in progress if isinstance(p, StepProgress) and p.state == "done"]
    assert [p.step for p in done] == order
    ends = [r.end_s for r in result.steps]
    assert ends == sorted(ends) and ends[-1] < t[-1]
    assert result.steps[0].end_s == pytest.approx(nod_end) and result.steps[0].peak_deg is None
    assert result.steps[1].end_s == pytest.approx(nod_end) and result.steps[1].peak_deg is None
    for r in result.steps[2:]:  # the furthest towards each direction is its amplitude
        assert r.peak_deg == pytest.approx(40.0, abs=0.5), r
    active = [p for p in progress if isinstance(p, StepProgress) and p.state == "active"]
    assert [p.step for p in active] == [s for s in order if s != "flexion"]  # prompted in turn
    assert all(p.prompt == PROMPTS[p.step] for p in active)
    assert result.words().startswith("Test complete")


def test_a_direction_not_performed_is_missing_at_its_timeout_and_the_test_goes_on() -> None:
    """A wearer who does not turn left (no movement at all, or less than the attempt threshold)
    has not performed it: the test is incomplete, the other directions still found."""
    t, angles, nod_end = _protocol({"left_rotation": 2.0})
    settings = GuidedTestSettings(step_timeout_s=6.0)
    # a pause for the timeout to run out, as a wearer who does nothing would leave
    stall = int(settings.step_timeout_s * RATE_HZ) + 10
    cut = _stroke_start(t, nod_end, "left_rotation")
    angles = np.concatenate([angles[:cut], np.zeros((stall, 3)), angles[cut:]])
    t = np.arange(len(angles)) / RATE_HZ
    runner = GuidedTestRunner(0.0, settings)
    _run(runner, t, angles, nod_end)
    result = runner.result
    assert result is not None and result.outcome == "incomplete"
    assert result.missing == ("left_rotation",)
    missed = next(r for r in result.steps if r.step == "left_rotation")
    assert missed.state == "missed" and missed.end_s - missed.start_s == pytest.approx(6.0)
    assert "not performed: left rotation" in result.words()
    assert "No range-of-motion result" in result.words()


def _stroke_start(t: np.ndarray, nod_end: float, name: str) -> int:
    """The frame at which the protocol's stroke towards ``name`` begins (the nod, flexion, then
    the others in DIRECTION_ORDER, each out, hold, back and rest)."""
    from edge_runtime.synthetic import HOLD_S, REST_S, STROKE_OUT_S

    stroke = 2 * STROKE_OUT_S + HOLD_S + REST_S
    order = ["flexion", *(d for d in DIRECTION_ORDER if d != "flexion")]
    start = NEUTRAL_S + order.index(name) * stroke
    return int(np.searchsorted(t, start - 0.05))


def test_an_aborted_test_is_abandoned_with_what_remains_missing() -> None:
    t, angles, nod_end = _protocol()
    half = _stroke_start(t, nod_end, "left_rotation")
    runner = GuidedTestRunner(0.0)
    _run(runner, t[:half], angles[:half], nod_end)
    result = runner.abort("stopped from the phone or computer")
    assert result.outcome == "abandoned" and not result.complete
    assert result.missing == DIRECTION_ORDER[DIRECTION_ORDER.index("left_rotation") :]
    assert "Test abandoned (stopped from the phone or computer)" in result.words()
    assert runner.push(t[half:], angles[half:], np.ones(len(t) - half, bool)) == []


def test_without_a_calibration_every_step_times_out_missing() -> None:
    settings = GuidedTestSettings(calibrate_timeout_s=5.0, step_timeout_s=2.0)
    t = np.arange(int(40 * RATE_HZ)) / RATE_HZ
    runner = GuidedTestRunner(0.0, settings)
    _run(runner, t, np.zeros((len(t), 3)), None)
    result = runner.result
    assert result is not None and result.outcome == "incomplete"
    assert result.missing == TEST_STEPS and result.steps[0].step == CALIBRATE
    assert result.steps[0].end_s == pytest.approx(5.0)


def test_the_result_reads_back_and_bad_settings_are_refused() -> None:
    t, angles, nod_end = _protocol()
    runner = GuidedTestRunner(0.0)
    _run(runner, t, angles, nod_end)
    assert runner.result is not None
    again = GuidedTestResult.read(Fields("session", runner.result.to_dict(), "guided_test"))
    assert again == runner.result
    with pytest.raises(GuidedTestError, match="step_timeout_s = 0"):
        GuidedTestSettings(step_timeout_s=0)
    with pytest.raises(GuidedTestError, match="unknown setting"):
        GuidedTestSettings.from_dict({"timeout": 3})


def test_a_recording_that_ends_in_the_last_return_is_complete_one_cut_short_is_not() -> None:
    """Offline, the end of the recording ends the active step as its timeout would: done if the
    movement was made; the steps never reached are missing."""
    t, angles, nod_end = _protocol()
    last = len(t) - int(1.0 * RATE_HZ)  # the last rest and half of the return cut off
    runner = GuidedTestRunner(0.0)
    _run(runner, t[:last], angles[:last], nod_end)
    assert runner.result is None  # online, it would wait for the return
    assert runner.end_of_recording(float(t[last - 1])).complete
    half = _stroke_start(t, nod_end, "left_rotation") + 150  # in the left rotation's movement
    runner = GuidedTestRunner(0.0)
    _run(runner, t[:half], angles[:half], nod_end)
    result = runner.end_of_recording(float(t[half - 1]))
    assert result.outcome == "incomplete" and result.missing == ("right_rotation",)
    assert "recording ended" in result.reason


def test_sectors_of_postures_and_an_unprompted_search_finds_the_performed_test() -> None:
    deg = np.radians
    assert in_sector(deg([30.0, 0.0, 5.0]), "extension")
    assert in_sector(deg([20.0, 18.0, 0.0]), "extension_right_bend")
    assert not in_sector(deg([30.0, 0.0, 5.0]), "extension_right_bend")
    assert in_sector(deg([-5.0, 3.0, 40.0]), "left_rotation")
    assert not in_sector(deg([-5.0, 3.0, 40.0]), "right_rotation")
    assert not in_sector(deg([30.0, 0.0, 35.0]), "extension")  # rotation dominant
    t, angles, _ = _protocol()
    found = find_guided_test(t, angles, np.ones(len(t), dtype=bool))
    assert found.complete, found  # the nod found as the first movement, each stroke in its sector
    assert found.steps[1].step == "flexion"
