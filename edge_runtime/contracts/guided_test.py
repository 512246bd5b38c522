"""The guided range-of-motion test: its steps, their prompts, its result, and the runner that
follows a wearer through it. One definition for the hub (which runs tests), the gateway (which
prompts), the offline assessment and the clinic (which read results).

A *test* is the only kind of session whose range of motion is judged against the wearer's
personal envelope; every other session is *wear*, ordinary life, and never yields a deficit (a
healthy wearer who did not happen to turn fully to the left has not shown a restriction).

Steps, in order (``TEST_STEPS``):

1. ``calibrate``: sit upright, look ahead, hold still, then bring the chin down to the chest as far
   as is comfortable and back: the nod. The session's calibration (``hub.tracking``) finds the
   neutral hold and the nod; the step is done when it has, and the nod is the test's movement in
   its direction (flexion, or extension for a wearer who nods that way), so the wearer does not
   repeat it. Its timeout (``calibrate_timeout_s``, 60 s) leaves the new session's orientation
   filters time to settle before the hold.
2. The other directions of the assessment, in ``DIRECTION_ORDER``: around the circle of extension,
   bending and flexion (each a small change from the last), then both rotations. A direction is
   done when the head has moved at least ``min_attempt_deg`` towards it (the posture's projection
   on the direction's centre, so a flexion that drifts a little sideways still counts) and then
   come back to the centre (within ``centre_deg`` for ``rest_s``). At its timeout
   (``step_timeout_s``, 20 s: time to hear the prompt, move slowly, hold and return) it is done if
   the attempt was made, else *missed*, and the test goes on to the next direction.

``min_attempt_deg`` (5 deg) is above the fused angles' noise and drift over a test, and far below
any clinically relevant range (the smallest normal active range, lateral bending, is about 35-45
deg), so a restricted wearer's short movement is still a performed direction, which the
assessment may then judge a deficit.

Outcomes: *complete* (every step done: the test's frames are assessed and deficits may be
flagged), *incomplete* (a step missed: what is missing is reported, never a deficit) and
*abandoned* (aborted by the gateway, the sensors lost, the model changed: likewise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_runtime.common.numbers import is_finite_number
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.hub_records import RECORD_FORMAT_1, RECORD_FORMAT_2
from edge_runtime.contracts.record_fields import NAME_PATTERN, Fields
from edge_runtime.contracts.rom_assessment import (
    AXIAL_SECTORS,
    PLANAR_SECTORS,
    SECTOR_WIDTH_RAD,
    SECTORS,
    planar_sector_centre_rad,
)

FloatArray = npt.NDArray[np.float64]
CALIBRATE = "calibrate"
# the assessment's own order: around the (extension, bend) circle from extension, each move a
# small change from the last, then the two rotations
DIRECTION_ORDER: tuple[str, ...] = SECTORS
TEST_STEPS: tuple[str, ...] = (CALIBRATE, *DIRECTION_ORDER)

# What the gateway says at each step (plain words, second person, one instruction each)
PROMPTS: dict[str, str] = {
    CALIBRATE: "Sit upright and look straight ahead. Hold still for a few seconds, then bring "
    "your chin down towards your chest as far as is comfortable, and back to the centre.",
    "flexion": "Bring your chin down towards your chest as far as is comfortable, "
    "then come back to the centre.",
    "extension": "Tilt your head back and look up as far as is comfortable, "
    "then come back to the centre.",
    "left_bend": "Tilt your left ear towards your left shoulder as far as is comfortable, "
    "then come back to the centre.",
    "right_bend": "Tilt your right ear towards your right shoulder as far as is comfortable, "
    "then come back to the centre.",
    "left_rotation": "Turn your head to the left as far as it goes, then come back to the centre.",
    "right_rotation": "Turn your head to the right as far as it goes, "
    "then come back to the centre.",
    "flexion_right_bend": "Look down and tilt your right ear towards your right shoulder, "
    "as far as is comfortable, then come back to the centre.",
    "extension_left_bend": "Look up and tilt your left ear towards your left shoulder, "
    "as far as is comfortable, then come back to the centre.",
    "flexion_left_bend": "Look down and tilt your left ear towards your left shoulder, "
    "as far as is comfortable, then come back to the centre.",
    "extension_right_bend": "Look up and tilt your right ear towards your right shoulder, "
    "as far as is comfortable, then come back to the centre.",
}

Outcome = Literal["complete", "incomplete", "abandoned"]
OUTCOMES: tuple[str, ...] = ("complete", "incomplete", "abandoned")
StepState = Literal["active", "done", "missed"]
STEP_STATES: tuple[str, ...] = ("active", "done", "missed")


class GuidedTestError(ContractError, ValueError):
    """A test that cannot run as asked (bad settings, a second test, no model or envelope);
    ``reason``: ``running`` (one already runs), ``no_model`` or ``refused`` (anything else)."""

    def __init__(self, message: str, reason: Literal["running", "no_model", "refused"] = "refused"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GuidedTestSettings:
    """Timeouts and thresholds of the test (module docstring for their reasons)."""

    calibrate_timeout_s: float = 60.0
    step_timeout_s: float = 20.0
    min_attempt_deg: float = 5.0
    centre_deg: float = 8.0
    rest_s: float = 0.3

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not is_finite_number(value) or value <= 0:
                raise GuidedTestError(f"guided test settings: {f.name} = {value!r} must be > 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuidedTestSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GuidedTestError(f"guided test settings: unknown setting(s) {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class StepProgress:
    """One change of the test's state, for the gateway's prompts: ``step`` became ``state`` at
    ``t_s`` (s from the test's start); ``peak_deg``: the furthest the head went towards a
    direction so far (None for the calibration step)."""

    step_index: int
    step: str
    state: StepState
    t_s: float
    peak_deg: float | None = None

    @property
    def prompt(self) -> str:
        return PROMPTS[self.step]


@dataclass(frozen=True)
class StepResult:
    step: str
    state: Literal["done", "missed"]
    start_s: float
    end_s: float
    peak_deg: float | None  # towards the direction (None: calibration)


@dataclass(frozen=True)
class GuidedTestResult:
    """What a test came to: its outcome, each finished step, what is missing and why."""

    outcome: Outcome
    steps: tuple[StepResult, ...]
    missing: tuple[str, ...]
    reason: str = ""
    settings: GuidedTestSettings = field(default_factory=GuidedTestSettings)

    @property
    def complete(self) -> bool:
        return self.outcome == "complete"

    def words(self) -> str:
        """The result in a sentence a wearer or clinician reads."""
        if self.complete:
            return "Test complete: every direction was performed."
        what = ", ".join(m.replace("_", " ") for m in self.missing)
        head = "Test abandoned" if self.outcome == "abandoned" else "Test incomplete"
        because = f" ({self.reason})" if self.reason else ""
        return f"{head}{because}; not performed: {what}. No range-of-motion result is given."

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "steps": [
                {
                    "step": s.step,
                    "state": s.state,
                    "start_s": s.start_s,
                    "end_s": s.end_s,
                    "peak_deg": s.peak_deg,
                }
                for s in self.steps
            ],
            "missing": list(self.missing),
            "reason": self.reason,
            "settings": {f.name: getattr(self.settings, f.name) for f in fields(self.settings)},
        }

    @classmethod
    def read(cls, f: Fields) -> GuidedTestResult:
        """From a record's ``guided_test`` object, every value checked (``RecordError``)."""
        outcome = f.text("outcome")
        if outcome not in OUTCOMES:
            raise f.fail("outcome", outcome, f"not one of {OUTCOMES}")
        steps = []
        for i, raw in enumerate(f.array("steps")):
            sf = Fields(f.record, raw, f"{f.key('steps')}[{i}]")
            step, state = sf.text("step"), sf.text("state")
            if step not in TEST_STEPS:
                raise sf.fail("step", step, f"not one of {TEST_STEPS}")
            if state not in ("done", "missed"):
                raise sf.fail("state", state, "not done or missed")
            peak = sf.number("peak_deg", optional=True)
            steps.append(StepResult(step, state, sf.number("start_s"), sf.number("end_s"), peak))
            sf.done()
        missing = f.names("missing", NAME_PATTERN)
        unknown = [m for m in missing if m not in TEST_STEPS]
        if unknown:
            raise f.fail("missing", unknown, f"not steps of {TEST_STEPS}")
        if (outcome == "complete") != (not missing):
            raise f.fail("missing", list(missing), f"contradicts the outcome {outcome!r}")
        settings_fields = f.sub("settings")
        try:
            settings = GuidedTestSettings.from_dict(dict(settings_fields.data))
        except (GuidedTestError, TypeError) as exc:
            raise f.fail("settings", dict(settings_fields.data), str(exc)) from None
        reason = f.text("reason")
        f.done()
        return cls(outcome, tuple(steps), missing, reason, settings)


def direction_unit(name: str) -> FloatArray:
    """A direction's centre in (extension, right bend, left rotation) space, unit length."""
    if name in AXIAL_SECTORS:
        return np.array([0.0, 0.0, 1.0 if name == "left_rotation" else -1.0])
    theta = planar_sector_centre_rad(name)
    return np.array([math.cos(theta), math.sin(theta), 0.0])


def in_sector(angles_rad: FloatArray, name: str) -> bool:
    """Whether a posture (extension, right bend, left rotation; rad) lies in a direction's sector:
    the assessment's 45-deg planar sectors with the bending plane dominant over rotation, or
    rotation to that side dominant over the planar excursion."""
    e, b, r = (float(v) for v in angles_rad)
    rho = math.hypot(e, b)
    if name in AXIAL_SECTORS:
        return (r > 0) == (name == "left_rotation") and abs(r) >= rho
    theta = math.atan2(b, e) % (2 * math.pi)
    nearest = round(theta / SECTOR_WIDTH_RAD) % len(PLANAR_SECTORS)  # as the assessment does
    return rho >= abs(r) and PLANAR_SECTORS[nearest] == name


class GuidedTestRunner:
    """Follows one test from its start (module docstring). Feed it the session's calibrated
    frames (``push``) and tell it when the calibration was found (``calibrated``); every call
    returns the progress it made. Times are the session's (s); the runner reports them from the
    test's start."""

    def __init__(
        self, t0_s: float, settings: GuidedTestSettings | None = None, unprompted: bool = False
    ) -> None:
        self.settings = settings or GuidedTestSettings()
        self.t0_s = t0_s
        # a recording searched for a test (nobody prompted): a movement counts for a direction
        # only while the head is inside that direction's sector, where a prompted wearer's
        # drifting a little sideways still counts (module docstring)
        self.unprompted = unprompted
        self.order: list[str] = list(TEST_STEPS)  # the nod's direction moves up (calibrated)
        self.nod: str | None = None
        self.index = 0
        self.step_start_s = t0_s
        self.peak_rad = 0.0  # the furthest towards the active direction (never below neutral)
        self.rest_since_s: float | None = None
        self.results: list[StepResult] = []
        self.result: GuidedTestResult | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def step(self) -> str:
        return self.order[min(self.index, len(self.order) - 1)]

    def start(self) -> list[StepProgress]:
        return [StepProgress(0, CALIBRATE, "active", 0.0)]

    def calibrated(self, t_s: float, nod_direction: str | None) -> list[StepProgress]:
        """The session's calibration was found at ``t_s``, its nod towards ``nod_direction``
        (flexion or extension; None: unknown): the first step is done, and the nod's direction
        with it."""
        if self.finished or self.index != 0:
            return []
        end = max(t_s, self.step_start_s)
        progress = self._finish_step("done", end)
        if nod_direction in DIRECTION_ORDER:
            self.nod = nod_direction
            self.order.remove(nod_direction)
            self.order.insert(1, nod_direction)
            self.step_start_s = self.t0_s  # the nod was part of the calibration step
            progress = progress[:1] + self._finish_step("done", end)
        return progress

    def clock(self, t_s: float) -> list[StepProgress]:
        """Time has reached ``t_s`` (frames or not): a step past its timeout ends."""
        if self.finished:
            return []
        timeout = self.settings.calibrate_timeout_s if self.index == 0 else (
            self.settings.step_timeout_s
        )  # fmt: skip
        if t_s - self.step_start_s < timeout:
            return []
        attempted = self.index > 0 and self._attempted()
        return self._finish_step("done" if attempted else "missed", self.step_start_s + timeout)

    def push(
        self, t_s: FloatArray, angles_rad: FloatArray, valid: npt.NDArray[np.bool_]
    ) -> list[StepProgress]:
        """Calibrated frames: times (N,), neck angles (N, 3) and whether each is usable."""
        progress: list[StepProgress] = []
        for i in range(len(t_s)):
            if self.finished:
                break
            progress += self.clock(float(t_s[i]))
            if self.finished or self.index == 0 or not valid[i] or t_s[i] < self.step_start_s:
                continue  # (frames before the calibration was found: the hold and the nod)
            progress += self._frame(float(t_s[i]), angles_rad[i])
        return progress

    def end_of_recording(self, t_s: float) -> GuidedTestResult:
        """A recording (offline) ended at ``t_s``: the active step ends as at its timeout (done
        if the movement was made), the steps after it are missing (an incomplete test)."""
        if self.result is None and self.index > 0:
            self._finish_step("done" if self._attempted() else "missed", t_s)
        if self.result is None:
            done = {r.step for r in self.results if r.state == "done"}
            missing = tuple(s for s in TEST_STEPS if s not in done)
            reason = "the recording ended before the test did"
            self.result = GuidedTestResult("incomplete", tuple(self.results), missing, reason,
                                           self.settings)  # fmt: skip
        return self.result

    def abort(self, reason: str) -> GuidedTestResult:
        """End the test now (the gateway's abort, the session ended); what remains is missing."""
        if self.result is None:
            self.result = self._result("abandoned", reason)
        return self.result

    def _attempted(self) -> bool:
        return math.degrees(self.peak_rad) >= self.settings.min_attempt_deg

    def _frame(self, t: float, angles: FloatArray) -> list[StepProgress]:
        name = self.order[self.index]
        if not self.unprompted or in_sector(angles, name):
            self.peak_rad = max(self.peak_rad, float(angles @ direction_unit(name)))
        if not self._attempted():
            return []
        if math.degrees(float(np.linalg.norm(angles))) > self.settings.centre_deg:
            self.rest_since_s = None
            return []
        self.rest_since_s = t if self.rest_since_s is None else self.rest_since_s
        if t - self.rest_since_s >= self.settings.rest_s:
            return self._finish_step("done", t)
        return []

    def _progress(self, state: StepState, t: float) -> StepProgress:
        peak = None  # the calibration and its nod (the tracker measured the nod)
        if self.index > 0 and self.order[self.index] != self.nod:
            peak = round(max(0.0, math.degrees(self.peak_rad)), 2)
        return StepProgress(self.index, self.order[self.index], state, round(t - self.t0_s, 3),
                            peak)  # fmt: skip

    def _finish_step(self, state: Literal["done", "missed"], t: float) -> list[StepProgress]:
        ended = self._progress(state, t)
        self.results.append(StepResult(ended.step, state, round(self.step_start_s - self.t0_s, 3),
                                       ended.t_s, ended.peak_deg))  # fmt: skip
        progress = [ended]
        self.index += 1
        self.step_start_s, self.peak_rad, self.rest_since_s = t, 0.0, None
        if self.index == len(self.order):
            missed = [r.step for r in self.results if r.state == "missed"]
            reason = "" if not missed else "a step timed out without the movement"
            self.result = self._result("incomplete" if missed else "complete", reason)
        else:
            progress.append(self._progress("active", t))
        return progress

    def _result(self, outcome: Outcome, reason: str) -> GuidedTestResult:
        done = {r.step for r in self.results if r.state == "done"}
        missing = tuple(s for s in TEST_STEPS if s not in done)
        if outcome == "complete":
            assert not missing
        return GuidedTestResult(outcome, tuple(self.results), missing, reason, self.settings)


# a recording searched for a test: nobody waits for a prompt, so directions follow closely (a
# protocol's movement out, hold and back takes 3-5 s)
OFFLINE_SETTINGS = GuidedTestSettings(step_timeout_s=8.0)


def find_guided_test(
    t_s: FloatArray, angles_rad: FloatArray, valid: npt.NDArray[np.bool_]
) -> GuidedTestResult:
    """The guided test's runner over a whole recording of calibrated neck angles (offline: a
    marker session, a simulated one), unprompted (each movement inside its direction's sector,
    ``OFFLINE_SETTINGS``): the calibration step is done once the recording's first movement, the
    nod, is back at the centre (a first
    movement that is not a nod leaves every direction to find); at the last frame the active step
    ends as at its timeout and what remains is missing."""
    runner = GuidedTestRunner(float(t_s[0]), OFFLINE_SETTINGS, unprompted=True)
    runner.start()
    nod, nod_end_s = _first_movement(t_s, angles_rad, valid, runner.settings)
    runner.calibrated(nod_end_s, nod)
    runner.push(t_s, angles_rad, valid)
    return runner.end_of_recording(float(t_s[-1]))


def _first_movement(
    t_s: FloatArray,
    angles_rad: FloatArray,
    valid: npt.NDArray[np.bool_],
    settings: GuidedTestSettings,
) -> tuple[str | None, float]:
    """The direction of the recording's first movement if it is a nod (flexion or extension
    dominant at its furthest), and when it came back to the centre."""
    size_deg = np.degrees(np.linalg.norm(np.nan_to_num(angles_rad), axis=1))
    usable = valid & np.isfinite(angles_rad).all(axis=1)
    out = np.flatnonzero(usable & (size_deg >= settings.min_attempt_deg))
    if out.size == 0:
        return None, float(t_s[0])
    first = int(out[0])
    back = np.flatnonzero(usable[first:] & (size_deg[first:] <= settings.centre_deg))
    stop = first + int(back[0]) if back.size else len(t_s) - 1
    furthest = first + int(np.argmax(size_deg[first : stop + 1]))
    e, b, r = angles_rad[furthest]
    if abs(e) < max(abs(b), abs(r)):
        return None, float(t_s[0])
    return ("flexion" if e < 0 else "extension"), float(t_s[stop])


SessionKind = Literal["wear", "test"]
SESSION_KINDS: tuple[str, ...] = ("wear", "test")


def read_session_kind(f: Fields, version: str, assessment: object | None) -> dict[str, Any]:
    """A session record's ``kind`` and ``guided_test`` (format 3); formats 1 and 2 have neither
    (``kind`` None). Only a complete test carries an assessment: a wear session or an incomplete
    or abandoned test with one is refused (it could show a deficit nobody tested)."""
    if version in (RECORD_FORMAT_1, RECORD_FORMAT_2):
        return {"kind": None, "guided_test": None}
    kind = f.text("kind")
    if kind not in SESSION_KINDS:
        raise f.fail("kind", kind, f"not one of {SESSION_KINDS}")
    sub = f.sub("guided_test", optional=True)
    test = None if sub is None else GuidedTestResult.read(sub)
    if (kind == "test") != (test is not None):
        need = "needs" if kind == "test" else "has no"
        raise f.fail("guided_test", None if test is None else test.outcome,
                     f"a {kind} session {need} test result")  # fmt: skip
    if assessment is not None and (test is None or not test.complete):
        what = "a wear session" if test is None else f"an {test.outcome} test"
        raise f.fail("assessment", "present", f"{what} carries no range-of-motion assessment")
    return {"kind": kind, "guided_test": test}
