"""The hub's processing chain, one object fed with sensor chunks: frames -> neck kinematics ->
forces -> epoch records, and at each session's end its summary (range-of-motion assessment
against the wearer's envelope, force statistics, everything marked). The daemon and
``cervical edge replay`` run this same object.

A *session* runs from the first usable frame until either sensor has been unusable for
``break_s`` (taken off, out of battery, out of range), ``max_session_s`` have passed, or (wear)
the hub's local day changed. A session after a break calibrates again, since the sensors may
have moved on the body; a wear session that follows one closed for its length, the day or a
finished test goes on with the same tracker and calibration (the sensors never left the body,
and the wearer is not asked to nod again every half hour), unless the tracker's 6-axis heading
is past its horizon (``hub.tracking``): then the next session looks for a new calibration.

Each wear session carries its daily-monitoring block (``contracts.wear_monitoring``: habitual
range, movements, sustained flexion, muscle load as a share of capacity) on the local day it
started on (``timezone``; the hub's own zone when empty); the clinic sums the blocks into days.

Sessions are *wear* (ordinary life: no range-of-motion judgement, so no deficit can be shown) or
*test*: ``start_test`` (the gateway's test control) closes the open wear session and the next
session runs a guided test (``contracts.guided_test``), reporting each step to ``test_listener``;
it ends at the test's last step, or aborted (``abort_test``, the sensors lost, a new model), and
only a complete test is assessed against the wearer's envelope.

Every defect (hub_records flags) is logged once per session with its first time, and every
record carries the spans it affected. Records that cannot be stored because the disk is full
wait in memory (up to ``max_pending_records``, then the oldest epoch records are dropped and
counted; session summaries are kept) and are written when space returns.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.envelope import MotionEnvelope
from edge_runtime.contracts.guided_test import (
    TEST_STEPS,
    GuidedTestError,
    GuidedTestResult,
    GuidedTestRunner,
    StepProgress,
)
from edge_runtime.contracts.hub_records import (
    FLAG_NAMES,
    INVALID,
    OUT_OF_RANGE,
    UNCALIBRATED,
    flag_spans,
)
from edge_runtime.contracts.model_bundle import VerifiedBundle
from edge_runtime.contracts.neck_angles import NECK_ANGLE_NAMES
from edge_runtime.contracts.record_payloads import (
    AngleSummary,
    CalibrationRecord,
    EpochRecord,
    EventRecord,
    ForceConfidence,
    HubRecord,
    Mark,
    OutOfRange,
    SessionRecord,
)
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.contracts.rom_assessment import assess_session
from edge_runtime.contracts.wear_monitoring import LoadMeter, wear_monitoring
from edge_runtime.hub.forces import ForceEstimator, ForceStatistics, force_ceiling_n
from edge_runtime.hub.frames import Arrival, FrameBlock, FramePairer
from edge_runtime.hub.pipeline_settings import PipelineSettings
from edge_runtime.hub.storage import HubStore, NewRecord, StorageFullError
from edge_runtime.hub.tracking import KinematicBlock, NeckTracker
from edge_runtime.sensors import SensorRanges, SensorRole

__all__ = ["HubPipeline", "PipelineSettings", "Session"]  # (PipelineSettings: pipeline_settings)
log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]


# sessions that end for these go on with the same tracker when the next one is wear
_CONTINUING = ("max_duration", "day_changed", "test_finished")


def _session_id(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


class _Epoch:
    def __init__(self, index: int, muscles: int) -> None:
        self.index, self.frames = index, 0
        self.t: list[FloatArray] = []
        self.flags: list[npt.NDArray[np.uint16]] = []
        self.angles: list[FloatArray] = []
        self.force_sum, self.force_peak = np.zeros(muscles), np.zeros(muscles)
        self.force_frames = 0  # usable frames with trusted forces
        self.low_confidence_frames = 0  # usable frames left out for low confidence


class Session:
    """One session's state: tracker, epoch in progress, and what its summary needs."""

    def __init__(
        self,
        pipeline: HubPipeline,
        t0_s: float,
        test: bool = False,
        tracker: NeckTracker | None = None,
        started: datetime | None = None,
    ) -> None:
        now = started or pipeline.clock()  # a continuation's start: its predecessor's + its length
        self.started = now
        self.p, self.id, self.t0_s = pipeline, _session_id(now), t0_s
        self.runner = GuidedTestRunner(t0_s, pipeline.settings.guided_test) if test else None
        self.abort_words = ""  # why the gateway stopped the test (abort_test)
        self.started_utc = now.astimezone(UTC).isoformat(timespec="seconds")
        cfg = pipeline.settings
        local = now.astimezone(cfg.zone())
        self.day: date = local.date()
        midnight = datetime.combine(self.day + timedelta(days=1), time(0), local.tzinfo)
        self.day_ends_t_s = t0_s + (midnight - local).total_seconds()  # hub time of midnight
        self.tracker = tracker or NeckTracker(
            cfg.rate_hz, pipeline.use_magnetometer, cfg.calibration
        )
        self.stats = ForceStatistics(pipeline.spec.outputs, pipeline.groups, pipeline.ceiling)
        self.load = LoadMeter(pipeline.groups, pipeline.fmax_n)
        self.t: list[FloatArray] = []
        self.angles: list[FloatArray] = []
        self.rates: list[FloatArray] = []
        self.flags: list[npt.NDArray[np.uint16]] = []
        self.out_of_range = np.zeros(pipeline.spec.n_inputs)
        self.low_confidence_frames = 0
        self.logged = 0  # flag bits already logged in this session
        self.epoch: _Epoch | None = None
        self.calibration_recorded = tracker is not None  # (by the session it came from)
        self.next_t_s = t0_s  # the frame after the last one consumed
        self.pushed_until_t_s = t0_s  # the frame after the last one pushed to the tracker

    def consume(self, block: KinematicBlock) -> list[NewRecord]:
        records: list[NewRecord] = []
        if len(block.t_s) == 0:
            return records
        if self.tracker.calibration is not None and not self.calibration_recorded:
            self.calibration_recorded = True
            info = self.tracker.calibration_info
            assert info is not None
            info = replace(
                info,
                neutral_s=(
                    round(info.neutral_s[0] - self.t0_s, 3),
                    round(info.neutral_s[1] - self.t0_s, 3),
                ),
                nod_s=(round(info.nod_s[0] - self.t0_s, 3), round(info.nod_s[1] - self.t0_s, 3)),
            )
            records.append(
                self.p.record(CalibrationRecord(info, tuple(self.tracker.rejected)), self.id)
            )
            if self.runner is not None:
                nod_end = info.nod_s[1] + self.t0_s
                self.p.tell(self.runner.calibrated(nod_end, info.nod_direction))
        kin = block.kinematics
        est = self.p.estimator.estimate(kin)
        forces = est.forces
        flags = block.flags | np.where(est.out_of_range, OUT_OF_RANGE, 0).astype(np.uint16)
        self.out_of_range += est.out_of_range_counts
        self._log_new_flags(flags, block.t_s)
        usable = np.isfinite(forces).all(axis=1) & ((flags & INVALID) == 0)
        doubtful = usable & (False if est.low_confidence is None else est.low_confidence)
        usable &= ~doubtful  # forces of low confidence stay out of every statistic
        self.low_confidence_frames += int(doubtful.sum())
        self.stats.add(forces[usable])
        if self.runner is None:
            self.load.add(forces[usable])
        angles = np.where(((flags & INVALID) == 0)[:, None], kin[:, :3], np.nan)
        if self.runner is not None:
            trusted = (flags & (INVALID | UNCALIBRATED)) == 0
            self.p.tell(self.runner.push(block.t_s, angles, trusted))
        self.next_t_s = float(block.t_s[-1]) + 1 / self.p.settings.rate_hz
        self.t.append(block.t_s)
        self.angles.append(angles)
        self.rates.append(kin[:, 3:6])
        self.flags.append(flags)
        epoch_of = np.floor((block.t_s - self.t0_s) / self.p.settings.epoch_s).astype(np.int64)
        for e in np.unique(epoch_of):
            rows = epoch_of == e
            if self.epoch is not None and self.epoch.index != e:
                records.append(self._epoch_record(self.epoch))
                self.epoch = None
            if self.epoch is None:
                self.epoch = _Epoch(int(e), len(self.p.spec.outputs))
            ep = self.epoch
            ep.frames += int(rows.sum())
            ep.t.append(block.t_s[rows])
            ep.flags.append(flags[rows])
            ep.angles.append(angles[rows])
            ep.low_confidence_frames += int(doubtful[rows].sum())
            used = forces[rows & usable]
            if len(used):
                ep.force_sum += used.sum(axis=0)
                ep.force_peak = np.maximum(ep.force_peak, used.max(axis=0))
                ep.force_frames += len(used)
        return records

    def _log_new_flags(self, flags: npt.NDArray[np.uint16], t: FloatArray) -> None:
        for bit, name in FLAG_NAMES.items():
            if bit == UNCALIBRATED or self.logged & bit:
                continue
            hit = np.flatnonzero(flags & bit)
            if hit.size:
                self.logged |= bit
                log.warning(
                    "session %s: %s from t = %.2f s (logged once per session; the "
                    "spans are marked in the records)",
                    self.id,
                    name,
                    t[hit[0]] - self.t0_s,
                )

    def _epoch_record(self, ep: _Epoch) -> NewRecord:
        t, flags = np.concatenate(ep.t), np.concatenate(ep.flags)
        angles = np.degrees(np.concatenate(ep.angles))
        known = np.isfinite(angles).all(axis=1)

        def over_known(fn: Any) -> tuple[float, ...] | None:
            return tuple(np.round(fn(angles[known], axis=0), 2).tolist()) if known.any() else None

        def per_muscle(values: FloatArray) -> tuple[float, ...] | None:
            return tuple(np.round(values, 2).tolist()) if ep.force_frames else None

        record = EpochRecord(
            start_s=round(float(t[0] - self.t0_s), 3),
            end_s=round(float(t[-1] - self.t0_s), 3),
            frames=ep.frames,
            usable_frames=int(((flags & (INVALID | UNCALIBRATED)) == 0).sum()),
            angles=AngleSummary(
                NECK_ANGLE_NAMES, over_known(np.min), over_known(np.max), over_known(np.mean)
            ),
            force_frames=ep.force_frames,
            force_mean_n=per_muscle(ep.force_sum / max(ep.force_frames, 1)),
            force_peak_n=per_muscle(ep.force_peak),
            marks=_marks(flags, t - self.t0_s),
            confidence=self.p.confidence(ep.force_frames, ep.low_confidence_frames),
        )
        return self.p.record(record, self.id)

    @property
    def test_finished(self) -> bool:
        return self.runner is not None and self.runner.finished

    def close(self, reason: str, hand_over: bool = False) -> list[NewRecord]:
        """The session's last records; ``hand_over``: the tracker goes on in the next session
        (frames it still holds back come out there)."""
        records = [] if hand_over else self.consume(self.tracker.finish())
        if self.runner is not None:  # the test's end, told once: finished or abandoned here
            if not self.runner.finished:
                words = self.abort_words or _ABORT_WORDS.get(reason, reason.replace("_", " "))
                self.runner.abort(words)
            assert self.runner.result is not None
            self.p.tell([self.runner.result])
        if self.epoch is not None:
            records.append(self._epoch_record(self.epoch))
            self.epoch = None
        records.append(self.p.record(self._summary(reason), self.id))
        return records

    def _summary(self, reason: str) -> SessionRecord:
        p = self.p
        t = np.concatenate(self.t) if self.t else np.zeros(0)
        flags = np.concatenate(self.flags) if self.flags else np.zeros(0, dtype=np.uint16)
        angles = np.concatenate(self.angles) if self.angles else np.zeros((0, 3))
        calibrated = (flags & UNCALIBRATED) == 0
        assessment = None
        test = None if self.runner is None else self.runner.result
        if test is None:
            note = "wear: range of motion is judged in guided tests only"
        elif not test.complete:
            note = test.words()
        elif p.envelope is None:  # (a test is refused without one; the model may have changed)
            note = "the installed model bundle carries no motion envelope"
        elif calibrated.sum() < 2:
            note = "not calibrated: no neutral hold followed by a nod was found"
        else:
            note = None
            assessment = assess_session(
                t[calibrated] - self.t0_s, angles[calibrated], p.envelope, p.settings.assessment
            )
        features = zip(p.spec.features, self.out_of_range, strict=True)
        monitoring = None
        if self.runner is None:
            rates = np.concatenate(self.rates) if self.rates else np.zeros((0, 3))
            known = ((flags & (INVALID | UNCALIBRATED)) == 0)[:, None]
            monitoring = wear_monitoring(
                self.day, np.where(known, angles, np.nan), rates, p.settings.rate_hz, self.load
            )
        return SessionRecord(
            started_utc=self.started_utc,
            source_t0_s=round(self.t0_s, 3),
            duration_s=round(float(t[-1] - t[0]) + 1 / p.settings.rate_hz, 3) if len(t) else 0.0,
            end_reason=reason,
            frames=len(t),
            usable_frames=int(((flags & (INVALID | UNCALIBRATED)) == 0).sum()),
            calibration=self.tracker.calibration_info,
            calibration_rejected=tuple(self.tracker.rejected),
            assessment=assessment,
            assessment_note=note,
            envelope_clamped_fields=tuple(p.envelope_clamped),
            forces=self.stats.summary(),
            out_of_range=OutOfRange(
                int(((flags & OUT_OF_RANGE) != 0).sum()), {f: int(c) for f, c in features if c}
            ),
            marks=_marks(flags, t - self.t0_s),
            bundle_version=p.bundle_version,
            profile=p.profile,
            confidence=p.confidence(self.stats.count, self.low_confidence_frames),
            kind="wear" if self.runner is None else "test",
            guided_test=test,
            monitoring=monitoring,
        )


# what an abandoned test says of the session end that stopped it
_ABORT_WORDS = {
    "sensors_unusable": "the sensors stopped sending usable data",
    "model_changed": "a new model was installed",
    "profile_changed": "the wearer's profile changed",
    "max_duration": "the session reached its maximum length",
    "end_of_input": "the hub stopped",
}


def _marks(flags: npt.NDArray[np.uint16], t_s: FloatArray) -> tuple[Mark, ...]:
    return tuple(Mark(**span) for span in flag_spans(flags, t_s))


class HubPipeline:
    """Sensor chunks in, records into the store (module docstring)."""

    def __init__(
        self,
        store: HubStore,
        bundle: VerifiedBundle,
        profile: Anthropometrics,
        settings: PipelineSettings | None = None,
        head: SensorRanges | None = None,
        trunk: SensorRanges | None = None,
        use_magnetometer: bool | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store, self.settings = store, settings or PipelineSettings()
        self.clock = clock or (lambda: datetime.now(UTC))  # wall time (the demo's runs weeks)
        self._configure(bundle, profile)
        self.pairer = FramePairer(
            self.settings.rate_hz,
            head or SensorRanges(),
            trunk or SensorRanges(),
            self.settings.lost_s,
        )
        self._use_magnetometer = use_magnetometer
        self.session: Session | None = None
        self.invalid_run = 0
        self.pending: deque[NewRecord] = deque()
        self.dropped_epochs = 0
        self.storage_full_logged = False
        self.sessions_closed = 0
        self.unusable_since_s: float | None = None  # hub time the sensors became unusable
        self.test_requested = False  # a test starts with the next session
        self.test_listener: Callable[[StepProgress | GuidedTestResult], None] | None = None

    def _configure(self, bundle: VerifiedBundle, profile: Anthropometrics) -> None:
        self.bundle, self.profile = bundle, profile
        self.spec = bundle.spec
        self.bundle_version = bundle.version
        self.estimator = ForceEstimator.for_bundle(bundle, profile)
        self.groups = bundle.manifest.muscle_groups()
        self.fmax_n = [m.fmax_n for m in bundle.manifest.muscles]
        self.ceiling = force_ceiling_n(bundle.spec)
        self.envelope: MotionEnvelope | None = None
        self.envelope_clamped: list[str] = []
        if bundle.envelope is not None:
            self.envelope, self.envelope_clamped = bundle.envelope.for_subject(profile)

    def reconfigure(
        self, bundle: VerifiedBundle | None = None, profile: Anthropometrics | None = None
    ) -> None:
        """A new model or wearer profile (from the BLE service): the open session is closed
        under the old one (its records stay consistent), the next session uses the new one."""
        reason = "model_changed" if bundle is not None else "profile_changed"
        if self.session is not None:
            self._write(self._close_session(reason))
        self._configure(bundle or self.bundle, profile or self.profile)

    @property
    def use_magnetometer(self) -> bool:
        if self._use_magnetometer is not None:
            return self._use_magnetometer
        return self.pairer.has_magnetometers

    def confidence(self, trusted_frames: int, low_frames: int) -> ForceConfidence | None:
        """What a record says of its forces' confidence (None: the model has no twin)."""
        twin = self.estimator.twin
        if twin is None:
            return None
        return ForceConfidence(trusted_frames + low_frames, low_frames, twin.threshold_of_fmax)

    # -- guided tests --------------------------------------------------------------------
    @property
    def guided_test_running(self) -> bool:
        return self.test_requested or (self.session is not None and self.session.runner is not None)

    def start_test(self) -> None:
        """Run a guided test from the next frames on (module docstring); ``GuidedTestError``
        when one already runs or the model has no envelope to test against (nothing changes)."""
        if self.guided_test_running:
            raise GuidedTestError("a guided test is already running: abort it first", "running")
        if self.envelope is None:
            raise GuidedTestError(
                "the installed model bundle carries no motion envelope: a test cannot be assessed"
            )
        if self.session is not None:
            self._write(self._close_session("test_started"))
        self.test_requested = True

    def abort_test(self, words: str = "stopped from the phone or computer") -> bool:
        """Stop the running test (False: none runs); it is recorded as abandoned, ``words``
        saying why."""
        if self.test_requested:  # not begun (no usable frames yet): nothing to record
            self.test_requested = False
            result = GuidedTestResult("abandoned", (), TEST_STEPS, words, self.settings.guided_test)
            self.tell([result])
            return True
        if self.session is None or self.session.runner is None:
            return False
        self.session.abort_words = words
        self._write(self._close_session("test_aborted"))
        return True

    def tell(self, progress: Sequence[StepProgress | GuidedTestResult]) -> None:
        """Report a test's progress to whoever listens (the BLE service's test control)."""
        for item in progress:
            log.info("guided test: %s", item)
            if self.test_listener is not None:
                self.test_listener(item)

    def _close_session(self, reason: str) -> list[NewRecord]:
        assert self.session is not None
        old = self.session
        # (a 6-axis tracker past its heading's horizon is not: the next one calibrates anew)
        expired = old.tracker.heading_expired
        hand_over = reason in _CONTINUING and not self.test_requested and not expired
        records = old.close(reason, hand_over)
        # wear goes on at once with the same tracker (the frames it holds back come out there)
        self.session = None
        if hand_over:  # (its wall time from the first frame not yet pushed: the day is right)
            started = old.started + timedelta(seconds=old.pushed_until_t_s - old.t0_s)
            self.session = Session(self, old.next_t_s, False, old.tracker, started)
        self.sessions_closed += 1
        return records

    def record(self, payload: HubRecord, session_id: str | None) -> NewRecord:
        return NewRecord(payload.KIND, payload.to_dict(), session_id)

    def store_record(self, payload: HubRecord) -> None:
        """Store a record outside any session (waits in memory like any record on a full disk)."""
        self._write([self.record(payload, None)])

    def event(self, name: str, **fields: Any) -> None:
        """Store an event record (waits in memory like any record when the disk is full)."""
        self.store_record(EventRecord(name, fields))

    # -- feeding -------------------------------------------------------------------------
    def push(self, role: SensorRole, chunk: ImuRecording, arrival: Arrival | None = None) -> None:
        """A sensor's chunk; ``arrival`` (when its reader took it) lets a silent sensor be told
        from a stalled reader (``hub.frames``)."""
        self.pairer.push(role, chunk, arrival)
        self._process(self.pairer.take())

    def close(self) -> None:
        """End of input: flush the sensors, close the session, write what waits."""
        self._process(self.pairer.take(flush=True))
        if self.session is not None:
            self._write(self._close_session("end_of_input"))
        self._write([])

    def _process(self, block: FrameBlock | None) -> None:
        if block is None:
            return
        records: list[NewRecord] = []
        rate = self.settings.rate_hz
        start = 0
        invalid = (block.flags & INVALID) != 0
        while start < len(block):
            if self.session is None:
                usable = np.flatnonzero(~invalid[start:])
                if usable.size == 0:
                    break
                start += int(usable[0])
                self.invalid_run = 0
                if self.unusable_since_s is not None:  # the span between sessions, marked
                    span = {
                        "from_t_s": round(self.unusable_since_s, 3),
                        "to_t_s": round(float(block.t_s[start]), 3),
                    }
                    records.append(self.record(EventRecord("sensors_unusable", span), None))
                    self.unusable_since_s = None
                self.session = Session(self, float(block.t_s[start]), self.test_requested)
                if self.session.runner is not None:
                    self.test_requested = False
                    self.tell(self.session.runner.start())
            stop = self._session_stop(block, invalid, start)
            part = block.slice(start, stop)
            records += self.session.consume(self.session.tracker.push(part))
            self.session.pushed_until_t_s = float(block.t_s[stop - 1]) + 1 / rate
            start = stop
            if self.session.test_finished:  # at the test's last step: wear from the next block
                records += self._close_session("test_finished")
            elif stop < len(block) or self._break_reached():
                if self.invalid_run >= self.settings.break_s * rate:
                    reason = "sensors_unusable"
                elif stop < len(block) and block.t_s[stop] >= self.session.day_ends_t_s:
                    reason = "day_changed"  # (only a wear session stops there)
                else:
                    reason = "max_duration"
                records += self._close_session(reason)
                if reason == "sensors_unusable":
                    self.unusable_since_s = float(block.t_s[stop - 1])
        self._write(records)

    def _session_stop(self, block: FrameBlock, invalid: npt.NDArray[np.bool_], start: int) -> int:
        """Where the open session ends within the block (len(block) when it goes on)."""
        assert self.session is not None
        rate, cfg = self.settings.rate_hz, self.settings
        limit = len(block)
        elapsed = (block.t_s - self.session.t0_s) >= cfg.max_session_s
        if self.session.runner is None:  # wear: the day's end too (a test runs on)
            elapsed |= block.t_s >= self.session.day_ends_t_s
        if elapsed[start:].any():  # (a session takes at least a frame: no endless closing)
            limit = max(start + 1, start + int(np.argmax(elapsed[start:])))
        break_frames = round(cfg.break_s * rate)
        run = self.invalid_run
        for i in range(start, limit):
            run = run + 1 if invalid[i] else 0
            if run >= break_frames:
                self.invalid_run = run
                return i + 1
        self.invalid_run = run
        return limit

    def _break_reached(self) -> bool:
        return self.invalid_run >= round(self.settings.break_s * self.settings.rate_hz)

    # -- storing -------------------------------------------------------------------------
    def _write(self, records: list[NewRecord]) -> None:
        self.pending.extend(records)
        while len(self.pending) > self.settings.max_pending_records:
            victim = next((r for r in self.pending if r.kind == "epoch"), None)
            if victim is None:
                break
            self.pending.remove(victim)
            self.dropped_epochs += 1
        if not self.pending:
            return
        batch = list(self.pending)
        try:
            self.store.append_many(batch)
        except StorageFullError as exc:
            if not self.storage_full_logged:
                log.error(
                    "%s; %d record(s) wait in memory and will be written when space returns",
                    exc,
                    len(batch),
                )
                self.storage_full_logged = True
            return
        self.pending.clear()
        if self.storage_full_logged or self.dropped_epochs:
            self.storage_full_logged = False
            event = EventRecord("storage_full_recovered", {"epochs_dropped": self.dropped_epochs})
            self.dropped_epochs = 0
            self.store.append_many([self.record(event, None)])
            log.warning("storage: space is back; the waiting records are written")
