"""The payloads of the hub's records, one frozen dataclass per kind: the hub builds them, the
gateway, clinic store, web view, demo and benches read them. One definition, typed.

Every payload is validated on construction and on reading (``from_dict``): a missing or unknown
key, a value of the wrong type, a non-finite number, a name with characters outside
``NAME_PATTERN`` or a date outside ``DATE_RANGE`` raises :class:`RecordError` naming the record
and the key (``session record: forces.groups.neck_flexors.mean_n = 'x': not a number``); nothing
is silently defaulted. ``to_dict`` writes the JSON the hub stores and syncs, with ``format`` =
``RECORD_FORMAT``; a reader refuses any format outside ``READABLE_FORMATS`` (a new payload shape
is a new format). Format 1 records (hubs before the force confidence) read with
``confidence = None``, the same as a format 2 record from a model without a confidence twin.

Kinds (``hub_records.RECORD_KINDS``): ``epoch`` (10 s summaries), ``session`` (one per session,
with the assessment and force statistics), ``calibration`` (the neutral hold and nod found),
``event`` (hub events, each with its own fields, ``EVENT_FIELDS``) and ``model`` (a model bundle
installed).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.guided_test import (
    GuidedTestResult,
    SessionKind,
    read_session_kind,
)
from edge_runtime.contracts.hub_records import (
    FLAG_NAMES,
    READABLE_FORMATS,
    RECORD_FORMAT,
    RECORD_FORMAT_1,
    RECORD_FORMAT_2,
    RECORD_FORMAT_3,
    RECORD_KINDS,
)
from edge_runtime.contracts.record_fields import NAME_PATTERN, Fields, RecordError
from edge_runtime.contracts.record_forces import (
    FORCE_PERCENTILES,
    ForceConfidence,
    ForceStats,
    ForceSummary,
    read_confidence,
)

__all__ = [
    "DATE_RANGE", "EVENT_FIELDS", "FORCE_PERCENTILES", "NAME_PATTERN", "RECORD_TYPES",
    "AngleSummary", "CalibrationInfo", "CalibrationRecord", "EpochRecord", "EventRecord",
    "ForceConfidence", "ForceStats", "ForceSummary", "HubRecord", "Mark", "ModelRecord",
    "OutOfRange", "RecordError", "SessionRecord", "parse_record",
]  # fmt: skip
from edge_runtime.contracts.rom_assessment import AssessmentError, RomAssessment
from edge_runtime.contracts.wear_monitoring import WearMonitoring

# Session start times a clinic accepts: years every date computation of the view handles (a hub
# without a real-time clock that never got the time starts in 1970; that is still readable).
DATE_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
END_REASONS = (
    "end_of_input",
    "max_duration",
    "sensors_unusable",
    "model_changed",
    "profile_changed",
    "test_started",  # a wear session, closed for a guided test
    "test_finished",  # a test session, at its last step
    "test_aborted",  # a test session, aborted from the gateway
    "day_changed",  # a wear session, at the hub's local midnight (daily monitoring's days)
)
# event name -> its fields (besides ``event``); every event carries exactly these
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "hub_started": ("bundle_version",),
    "hub_stopped": (),
    "sensors_unusable": ("from_t_s", "to_t_s"),
    "storage_full_recovered": ("epochs_dropped",),
    "profile_changed": ("source", "profile"),
}


def _check_format(f: Fields) -> str:
    """The payload's format, one of READABLE_FORMATS."""
    v = f.raw("format")
    if v not in READABLE_FORMATS:
        raise f.fail("format", f.data.get("format"), f"not one of {READABLE_FORMATS}")
    return str(v)


def _span(f: Fields, name: str) -> tuple[float, float]:
    a, b = f.numbers(name, length=2)
    if b < a:
        raise f.fail(name, [a, b], "ends before it starts")
    return (a, b)


@dataclass(frozen=True)
class Mark:
    """A contiguous span of one per-frame flag (s from the session start)."""

    reason: str
    start_s: float
    end_s: float
    frames: int

    @classmethod
    def read(cls, f: Fields) -> Mark:
        reason = f.text("reason")
        if reason not in FLAG_NAMES.values():
            raise f.fail("reason", reason, f"not one of {sorted(FLAG_NAMES.values())}")
        mark = cls(reason, f.number("start_s"), f.number("end_s"), f.count("frames"))
        f.done()
        return mark


def _marks(f: Fields) -> tuple[Mark, ...]:
    return tuple(
        Mark.read(Fields(f.record, m, f"marks[{i}]")) for i, m in enumerate(f.array("marks"))
    )


@dataclass(frozen=True)
class AngleSummary:
    """Per neck angle (``names``) the min, max and mean over an epoch's known frames (deg)."""

    names: tuple[str, ...]
    min_deg: tuple[float, ...] | None
    max_deg: tuple[float, ...] | None
    mean_deg: tuple[float, ...] | None

    def to_dict(self) -> dict[str, Any]:
        def values(v: tuple[float, ...] | None) -> list[float] | None:
            return None if v is None else list(v)

        return {
            "names": list(self.names),
            "min_deg": values(self.min_deg),
            "max_deg": values(self.max_deg),
            "mean_deg": values(self.mean_deg),
        }

    @classmethod
    def read(cls, f: Fields) -> AngleSummary:
        names = f.names("names")
        n = len(names)
        a = cls(
            names, *(f.numbers(k, n, optional=True) for k in ("min_deg", "max_deg", "mean_deg"))
        )
        f.done()
        return a


class _Payload(ABC):
    """What every record kind shares: its kind, its JSON, and validation on construction (the
    payload must read back as its kind, so a record the hub makes is one the clinic can read)."""

    KIND: ClassVar[str]

    def __post_init__(self) -> None:
        _check(self, self.to_dict())

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The payload as stored and synced, ``format`` included."""

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)


class _Frames:
    """Records that count frames (epochs, sessions)."""

    frames: int
    usable_frames: int

    @property
    def usable_fraction(self) -> float:
        return self.usable_frames / self.frames if self.frames else 0.0


@dataclass(frozen=True)
class EpochRecord(_Frames, _Payload):
    """The summary of one epoch of a session (times in s from the session start)."""

    KIND: ClassVar[str] = "epoch"
    start_s: float
    end_s: float
    frames: int
    usable_frames: int
    angles: AngleSummary
    force_frames: int  # usable frames with trusted forces (all of them without a twin)
    force_mean_n: tuple[float, ...] | None  # per muscle, over the force frames
    force_peak_n: tuple[float, ...] | None
    marks: tuple[Mark, ...] = ()
    confidence: ForceConfidence | None = None  # None: no confidence twin (or a format 1 hub)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "frames": self.frames,
            "usable_frames": self.usable_frames,
            "angles": self.angles.to_dict(),
            "force_frames": self.force_frames,
            "force_mean_n": None if self.force_mean_n is None else list(self.force_mean_n),
            "force_peak_n": None if self.force_peak_n is None else list(self.force_peak_n),
            "marks": [asdict(m) for m in self.marks],
            "force_confidence": None if self.confidence is None else self.confidence.to_dict(),
        }

    @classmethod
    def read(cls, f: Fields) -> EpochRecord:
        version = _check_format(f)
        frames = f.count("frames")
        usable = f.count("usable_frames")
        if usable > frames:
            raise f.fail("usable_frames", usable, f"more than the {frames} frames")
        start, end = f.number("start_s"), f.number("end_s")
        if end < start:
            raise f.fail("end_s", end, f"before start_s {start}")
        mean = f.numbers("force_mean_n", optional=True)
        peak = f.numbers("force_peak_n", None if mean is None else len(mean), optional=True)
        force_frames = f.count("force_frames")
        return _build(
            cls, f,
            start_s=start, end_s=end, frames=frames, usable_frames=usable,
            angles=AngleSummary.read(f.sub("angles")), force_frames=force_frames,
            force_mean_n=mean, force_peak_n=peak, marks=_marks(f),
            confidence=read_confidence(f, version, force_frames),
        )  # fmt: skip


@dataclass(frozen=True)
class CalibrationInfo:
    """The neutral hold and nod the hub calibrated the segment axes on (s from session start)."""

    neutral_s: tuple[float, float]
    nod_s: tuple[float, float]
    nod_peak_deg: float
    nod_direction: Literal["flexion", "extension", "auto"]
    trunk_axes: tuple[tuple[float, float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "neutral_s": list(self.neutral_s),
            "nod_s": list(self.nod_s),
            "nod_peak_deg": self.nod_peak_deg,
            "nod_direction": self.nod_direction,
            "trunk_axes": [list(a) for a in self.trunk_axes],
        }

    @classmethod
    def read(cls, f: Fields, ignore: Sequence[str] = ()) -> CalibrationInfo:
        direction = f.text("nod_direction")
        if direction not in ("flexion", "extension", "auto"):
            raise f.fail("nod_direction", direction, "not flexion, extension or auto")
        axes = f.array("trunk_axes")
        if len(axes) != 3:
            raise f.fail("trunk_axes", axes, "not 3 axes")
        rows = tuple(
            tuple(Fields(f.record, {"a": a}, f.key(f"trunk_axes[{i}]")).numbers("a", 3))
            for i, a in enumerate(axes)
        )
        info = cls(
            _span(f, "neutral_s"), _span(f, "nod_s"), f.number("nod_peak_deg"),
            direction, rows,
        )  # fmt: skip
        f.done(ignore)
        return info


@dataclass(frozen=True)
class CalibrationRecord(_Payload):
    KIND: ClassVar[str] = "calibration"
    calibration: CalibrationInfo
    rejected: tuple[str, ...] = ()  # why earlier candidate holds were not used

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            **self.calibration.to_dict(),
            "rejected": list(self.rejected),
        }

    @classmethod
    def read(cls, f: Fields) -> CalibrationRecord:
        _check_format(f)
        rejected = tuple(f.check_text("rejected", r) for r in f.array("rejected"))
        info = CalibrationInfo.read(f, ignore=("format", "rejected"))
        return _build(cls, calibration=info, rejected=rejected)


@dataclass(frozen=True)
class OutOfRange:
    """Frames whose model inputs left the training range, and the count per feature."""

    frames: int
    features: Mapping[str, int]

    @classmethod
    def read(cls, f: Fields) -> OutOfRange:
        features = f.mapping("features")
        g = Fields(f.record, features, f.key("features"))
        out = cls(f.count("frames"), {k: g.count(k) for k in features})
        f.done()
        return out


@dataclass(frozen=True)
class SessionRecord(_Frames, _Payload):
    """One session: what was measured, its assessment and the force statistics."""

    KIND: ClassVar[str] = "session"
    started_utc: str  # ISO 8601 with offset, within DATE_RANGE
    source_t0_s: float
    duration_s: float
    end_reason: str
    frames: int
    usable_frames: int
    calibration: CalibrationInfo | None
    calibration_rejected: tuple[str, ...]
    assessment: RomAssessment | None
    assessment_note: str | None
    envelope_clamped_fields: tuple[str, ...]
    forces: ForceSummary
    out_of_range: OutOfRange
    marks: tuple[Mark, ...]
    bundle_version: str
    profile: Anthropometrics
    confidence: ForceConfidence | None = None  # None: no confidence twin (or a format 1 hub)
    kind: SessionKind | None = None  # None: a format 1 or 2 hub, before guided tests
    guided_test: GuidedTestResult | None = None  # a test session's result (read_session_kind)
    monitoring: WearMonitoring | None = None  # a wear session's (format 4 on), else None

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_utc)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "started_utc": self.started_utc,
            "source_t0_s": self.source_t0_s,
            "duration_s": self.duration_s,
            "end_reason": self.end_reason,
            "frames": self.frames,
            "usable_frames": self.usable_frames,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "calibration_rejected": list(self.calibration_rejected),
            "assessment": None if self.assessment is None else self.assessment.to_dict(),
            "assessment_note": self.assessment_note,
            "envelope_clamped_fields": list(self.envelope_clamped_fields),
            "forces": self.forces.to_dict(),
            "out_of_range": {
                "frames": self.out_of_range.frames,
                "features": dict(self.out_of_range.features),
            },
            "marks": [asdict(m) for m in self.marks],
            "model": {"bundle_version": self.bundle_version},
            "profile": self.profile.to_dict(),
            "force_confidence": None if self.confidence is None else self.confidence.to_dict(),
            "kind": self.kind,
            "guided_test": None if self.guided_test is None else self.guided_test.to_dict(),
            "monitoring": None if self.monitoring is None else self.monitoring.to_dict(),
        }

    @classmethod
    def read(cls, f: Fields) -> SessionRecord:
        version = _check_format(f)
        started = f.text("started_utc")
        try:
            when = datetime.fromisoformat(started)
        except ValueError:
            raise f.fail("started_utc", started, "not an ISO 8601 date and time") from None
        if when.tzinfo is None:
            raise f.fail("started_utc", started, "has no UTC offset")
        if not DATE_RANGE[0] <= when < DATE_RANGE[1]:
            raise f.fail("started_utc", started, "outside the years 1970-2199")
        frames, usable = f.count("frames"), f.count("usable_frames")
        if usable > frames:
            raise f.fail("usable_frames", usable, f"more than the {frames} frames")
        end_reason = f.text("end_reason")
        if end_reason not in END_REASONS:
            raise f.fail("end_reason", end_reason, f"not one of {END_REASONS}")
        cal = f.sub("calibration", optional=True)
        raw_assessment = f.raw("assessment")
        assessment = None
        if raw_assessment is not None:
            assessment = _assessment(f, raw_assessment)
        model = f.sub("model")
        bundle_version = model.text("bundle_version")
        model.done()
        profile = f.sub("profile")
        try:
            wearer = Anthropometrics.from_dict(dict(profile.data))
        except (ContractError, TypeError) as exc:
            raise RecordError(f.record, "profile", str(exc)) from None
        forces = ForceSummary.read(f.sub("forces"))
        return _build(
            cls, f,
            started_utc=started, source_t0_s=f.number("source_t0_s"),
            duration_s=f.number("duration_s", 0.0), end_reason=end_reason,
            frames=frames, usable_frames=usable,
            calibration=None if cal is None else CalibrationInfo.read(cal),
            calibration_rejected=tuple(
                f.check_text("calibration_rejected", r) for r in f.array("calibration_rejected")
            ),
            assessment=assessment, assessment_note=f.text("assessment_note", optional=True),
            envelope_clamped_fields=f.names("envelope_clamped_fields"),
            forces=forces, out_of_range=OutOfRange.read(f.sub("out_of_range")), marks=_marks(f),
            bundle_version=bundle_version, profile=wearer,
            confidence=read_confidence(f, version, forces.frames),
            **read_session_kind(f, version, assessment),
            monitoring=_monitoring(f, version),
        )  # fmt: skip


def _monitoring(f: Fields, version: str) -> WearMonitoring | None:
    """A wear session's monitoring block: format 4 wear sessions carry one, nothing else does
    (formats 1 to 3 have no such key)."""
    if version in (RECORD_FORMAT_1, RECORD_FORMAT_2, RECORD_FORMAT_3):
        return None
    block = f.sub("monitoring", optional=True)
    is_wear = f.data.get("kind") == "wear"
    if (block is None) == is_wear:
        raise f.fail(
            "monitoring", f.data.get("monitoring"),
            "a wear session needs its monitoring block" if is_wear
            else "only a wear session carries a monitoring block",
        )  # fmt: skip
    return None if block is None else WearMonitoring.read(block)


def _assessment(f: Fields, raw: object) -> RomAssessment:
    """The range-of-motion assessment, its numbers and names checked like the record's own."""
    a = Fields(f.record, raw, "assessment")
    sectors = a.array("sectors")
    for i, s in enumerate(sectors):
        sf = Fields(f.record, s, f"assessment.sectors[{i}]")
        sf.text("sector", pattern=NAME_PATTERN)
        sf.text("status", pattern=NAME_PATTERN)
        sf.text("reason")
        for k in ("expected_deg", "reached_deg", "ratio", "deficit_deg", "deficit_pct",
                  "peak_speed_deg_s"):  # fmt: skip
            sf.number(k)
        sf.done()
    for i, s in enumerate(a.array("spans")):
        sf = Fields(f.record, s, f"assessment.spans[{i}]")
        sf.number("start_s")
        sf.number("end_s")
        sf.text("kind", pattern=NAME_PATTERN)
        if not isinstance(sf.raw("filled"), bool):
            raise sf.fail("filled", sf.data["filled"], "not true or false")
        sf.done()
    for note in a.array("notes"):
        a.check_text("notes", note)
    for k in ("duration_s", "valid_s"):
        a.number(k, 0.0)
    a.number("sparc_median", optional=True)
    a.count("movements")
    for k in ("flagged", "insufficient_data"):
        a.names(k)
    try:
        return RomAssessment.from_dict(dict(a.data))
    except (AssessmentError, TypeError, KeyError) as exc:
        raise RecordError(f.record, "assessment", str(exc)) from None


@dataclass(frozen=True)
class EventRecord(_Payload):
    """A hub event; ``details`` holds exactly the event's fields (``EVENT_FIELDS``)."""

    KIND: ClassVar[str] = "event"
    event: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "event": self.event, **self.details}

    @classmethod
    def read(cls, f: Fields) -> EventRecord:
        _check_format(f)
        name = f.text("event")
        if name not in EVENT_FIELDS:
            raise f.fail("event", name, f"not one of {sorted(EVENT_FIELDS)}")
        details: dict[str, Any] = {}
        for k in EVENT_FIELDS[name]:
            if k == "profile":
                try:
                    details[k] = Anthropometrics.from_dict(dict(f.sub(k).data)).to_dict()
                except (ContractError, TypeError) as exc:
                    raise RecordError(f.record, k, str(exc)) from None
            elif k.endswith("_s"):
                details[k] = f.number(k)
            elif k == "epochs_dropped":
                details[k] = f.count(k)
            else:
                details[k] = f.text(k)
        return _build(cls, f, event=name, details=details)


@dataclass(frozen=True)
class ModelRecord(_Payload):
    """A model bundle was installed (over BLE)."""

    KIND: ClassVar[str] = "model"
    bundle_version: str
    event: Literal["installed"] = "installed"

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "event": self.event, "bundle_version": self.bundle_version}

    @classmethod
    def read(cls, f: Fields) -> ModelRecord:
        _check_format(f)
        if f.text("event") != "installed":
            raise f.fail("event", f.data["event"], "not 'installed'")
        return _build(cls, f, bundle_version=f.text("bundle_version"))


HubRecord = EpochRecord | SessionRecord | CalibrationRecord | EventRecord | ModelRecord
RECORD_TYPES: dict[str, type[HubRecord]] = {
    t.KIND: t for t in (EpochRecord, SessionRecord, CalibrationRecord, EventRecord, ModelRecord)
}
assert tuple(sorted(RECORD_TYPES)) == tuple(sorted(RECORD_KINDS))


def _build(cls: type[Any], f: Fields | None = None, **values: Any) -> Any:
    """An instance from values already checked by ``read`` (``__post_init__`` not run again)."""
    if f is not None:
        f.done()
    record = object.__new__(cls)
    for k, v in values.items():
        object.__setattr__(record, k, v)
    return record


def _check(record: _Payload, payload: dict[str, Any]) -> None:
    """Construction validates like reading: the payload must read back."""
    try:
        json.dumps(payload, allow_nan=False)
    except ValueError:
        raise RecordError(record.KIND, "", "a number is not finite") from None
    RECORD_TYPES[record.KIND].read(Fields(record.KIND, payload))


def parse_record(kind: str, payload: str | bytes | Mapping[str, Any]) -> HubRecord:
    """A stored or synced payload (JSON text or decoded) as its kind's record."""
    if kind not in RECORD_TYPES:
        raise RecordError(str(kind)[:40], "", f"unknown kind, known: {RECORD_KINDS}")
    data: object = payload
    if isinstance(payload, str | bytes):
        try:
            data = json.loads(payload, parse_constant=_refuse_constant)
        except RecursionError:
            raise RecordError(kind, "", "JSON nested too deeply") from None
        except ValueError as exc:
            raise RecordError(kind, "", f"not JSON ({exc})") from None
    return RECORD_TYPES[kind].read(Fields(kind, data))


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")
