"""What a clinician reviews, read from the clinic store: the patients overview, a patient's
history over a period and one session in full. Pure queries returning frozen dataclasses; the
web pages, the report and the exports all read through here.

Dates and times are UTC throughout (the hub stores UTC; the pages say so).

Definitions:

* a *day with data* has at least ``MIN_WEAR_S_PER_DAY`` of usable sensor time (calibrated, valid
  frames) summed over its sessions; adherence counts such days in the last 14 and 30 days up
  to today, so a device that stopped syncing shows as low adherence, not as a stale good one;
* an *open flag* is a direction flagged as a deficit in a session no clinician has marked as
  reviewed;
* a force frame of *low confidence* is one where the hub's force model and its check network
  disagreed by more than the model's threshold (``contracts.confidence``); its forces are left
  out of the session's force figures, and the share of such frames is shown beside them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from ble_gateway.store import (
    devices,
    patients,
    quarantine,
    records,
    reviews,
    session_directions,
    session_forces,
    sessions,
)
from ble_gateway.web.period import NotFoundError, Period, ReviewError
from edge_runtime.contracts.record_payloads import parse_record
from edge_runtime.contracts.rom_assessment import SECTORS

__all__ = ["NotFoundError", "Period", "ReviewError"]  # (their home: web.period)
MIN_WEAR_S_PER_DAY = 60.0
ADHERENCE_WINDOWS_DAYS = (14, 30)
# a session with more of its force frames of low confidence than this is named in the warnings
LOW_CONFIDENCE_WARN_FRACTION = 0.10


def confidence_words(low_fraction: float | None) -> str:
    """A session's force confidence, as the pages say it."""
    if low_fraction is None:
        return "not checked (no force frames, or a hub model or software without the check)"
    trusted = f"{100 * (1 - low_fraction):.0f} % of the force frames trusted"
    if low_fraction == 0:
        return trusted
    return (
        f"{trusted}; {100 * low_fraction:.1f} % left out of the forces (motion the model "
        "knows too little about to estimate reliably)"
    )


@dataclass(frozen=True)
class PatientSummary:
    code: str
    devices: int
    last_sync_utc: str | None
    last_session_utc: str | None
    days_with_data: dict[int, int]  # window (days) -> days with data in it
    open_flags: dict[str, int]  # direction -> sessions with it open


@dataclass(frozen=True)
class DeviceInfo:
    id: int
    address: str
    model_version: str | None
    first_seen_utc: str
    last_sync_utc: str | None
    patient_code: str | None = None


@dataclass(frozen=True)
class SessionRow:
    device_id: int
    session_id: str
    started_utc: datetime
    duration_s: float
    usable_s: float
    end_reason: str | None
    assessed: bool
    flagged: tuple[str, ...]
    insufficient: tuple[str, ...]
    model_version: str | None
    out_of_range_frames: int
    low_confidence_fraction: float | None  # of the force frames; None: not checked
    note: str | None
    reviewed_by: str | None
    kind: str | None = None  # wear or test (None: recorded before guided tests)

    @property
    def open_flags(self) -> tuple[str, ...]:
        return () if self.reviewed_by else self.flagged

    @property
    def key(self) -> tuple[int, str]:
        return (self.device_id, self.session_id)


@dataclass(frozen=True)
class Direction:
    sector: str
    status: str
    expected_deg: float
    reached_deg: float
    ratio: float
    deficit_deg: float
    deficit_pct: float
    threshold_deg: float


@dataclass(frozen=True)
class GroupForce:
    mean_n: float | None
    peak_n: float | None
    p90_n: float | None


@dataclass(frozen=True)
class WearTotals:
    """The period's sessions summed by the store: how many wear sessions, usable minutes per
    UTC day (all sessions), and the wear sessions outside the model's training range."""

    sessions: int
    minutes_by_day: dict[date, float]
    out_of_range_sessions: int
    out_of_range_frames: int


@dataclass(frozen=True)
class PatientHistory:
    code: str
    period: Period
    devices: tuple[DeviceInfo, ...]
    sessions: tuple[SessionRow, ...]  # oldest first
    directions: dict[tuple[int, str], dict[str, Direction]]
    forces: dict[tuple[int, str], dict[str, GroupForce]]
    days_with_data: dict[int, int] = field(default_factory=dict)
    unreadable_records: int = 0  # synced records of the patient's hubs that were quarantined
    # wear sessions are summed (their days: web.daily), not listed, unless asked for
    wear: WearTotals = field(default_factory=lambda: WearTotals(0, {}, 0, 0))

    @property
    def assessed(self) -> list[SessionRow]:
        return [s for s in self.sessions if s.key in self.directions]

    def session(self, device_id: int, session_id: str) -> SessionRow:
        for s in self.sessions:
            if s.key == (device_id, session_id):
                return s
        raise NotFoundError(f"session {session_id!r} of device {device_id}: not in this period")

    def wear_by_day(self) -> dict[date, float]:
        """Usable sensor minutes per UTC day, every session of the period (wear included)."""
        return self.wear.minutes_by_day

    def group_names(self) -> list[str]:
        return sorted({g for f in self.forces.values() for g in f})

    def warnings(self) -> list[str]:
        """Out-of-range and data-quality warnings over the period, most important first."""
        out: list[str] = []
        if self.unreadable_records:
            out.append(
                f"{self.unreadable_records} record(s) synced from this patient's hub(s) could not "
                "be read and are not shown; they are kept as received for the device engineers."
            )
        if self.wear.out_of_range_sessions:
            frames = self.wear.out_of_range_frames
            out.append(
                f"{self.wear.out_of_range_sessions} wear session(s) moved outside the force "
                f"model's training range ({frames / 100:.0f} s at 100 Hz): their forces there are "
                "extrapolated."
            )
        beyond = [s for s in self.sessions if s.out_of_range_frames]
        if beyond:
            frames = sum(s.out_of_range_frames for s in beyond)
            out.append(
                f"{len(beyond)} session(s) moved outside the force model's training range "
                f"({frames} frames, {frames / 100:.0f} s at 100 Hz): forces there are "
                "extrapolated; the last on "
                f"{beyond[-1].started_utc:%Y-%m-%d}."
            )
        out += self._confidence_warnings()
        # wear is never assessed (range is judged in guided tests): only tests are missing one
        unassessed = [s for s in self.sessions if not s.assessed and s.kind != "wear"]
        if unassessed:
            notes = Counter(s.note or s.end_reason or "no assessment" for s in unassessed)
            text = "; ".join(f"{n} x {reason}" for reason, n in notes.most_common())
            out.append(
                f"{len(unassessed)} session(s) without a range-of-motion assessment: {text}."
            )
        insufficient = Counter(d for s in self.sessions for d in s.insufficient)
        if insufficient:
            text = ", ".join(f"{d.replace('_', ' ')} ({n})" for d, n in insufficient.most_common())
            out.append(f"Too little data to judge some directions: {text}.")
        versions = {s.model_version for s in self.sessions if s.model_version}
        if len(versions) > 1:
            out.append(
                f"Results come from {len(versions)} model versions "
                f"({', '.join(sorted(versions))}); compare forces across a change with care."
            )
        return out

    def _confidence_warnings(self) -> list[str]:
        checked = [s for s in self.sessions if s.low_confidence_fraction is not None]
        doubtful = [
            s for s in checked if (s.low_confidence_fraction or 0) > LOW_CONFIDENCE_WARN_FRACTION
        ]
        if not doubtful:
            return []
        worst = max(doubtful, key=lambda s: s.low_confidence_fraction or 0)
        return [
            f"{len(doubtful)} of {len(checked)} session(s) had more than "
            f"{100 * LOW_CONFIDENCE_WARN_FRACTION:.0f} % of their force frames of low "
            "confidence (motion the model knows too little about): their force figures are "
            "computed without those frames; the most: "
            f"{100 * (worst.low_confidence_fraction or 0):.0f} % on "
            f"{worst.started_utc:%Y-%m-%d}."
        ]

    def confidence_summary(self) -> str | None:
        """One sentence on the force confidence over the period (None: no session checked)."""
        fractions = [s.low_confidence_fraction for s in self.sessions]
        checked = sorted(f for f in fractions if f is not None)
        if not checked:
            return None
        median = checked[len(checked) // 2]
        unchecked = len(self.sessions) - len(checked)
        text = (
            f"Force confidence: in the median session {100 * (1 - median):.0f} % of the force "
            f"frames were trusted (the worst session: {100 * (1 - checked[-1]):.0f} %); frames of "
            "low confidence are left out of the forces"
        )
        return text + (f"; {unchecked} session(s) without a check." if unchecked else ".")


@dataclass(frozen=True)
class SessionDetail:
    patient_code: str | None
    device: DeviceInfo
    row: SessionRow
    summary: dict[str, Any]  # the hub's session record payload, read through SessionRecord
    directions: dict[str, Direction]


# -- queries ---------------------------------------------------------------------------------
def _session_columns() -> list[Any]:
    return [
        sessions.c.device_id,
        sessions.c.session_id,
        sessions.c.started_utc,
        sessions.c.duration_s,
        sessions.c.usable_s,
        sessions.c.end_reason,
        sessions.c.assessed,
        sessions.c.flagged,
        sessions.c.insufficient,
        sessions.c.model_version,
        sessions.c.out_of_range_frames,
        sessions.c.low_confidence_fraction,
        sessions.c.note,
        reviews.c.username,
        sessions.c.kind,
    ]


def _session_row(r: Any) -> SessionRow:
    started = datetime.fromisoformat(r[2]).astimezone(UTC)
    return SessionRow(
        int(r[0]),
        str(r[1]),
        started,
        float(r[3] or 0),
        float(r[4] or 0),
        r[5],
        bool(r[6]),
        tuple(r[7].split()),
        tuple(r[8].split()),
        r[9],
        int(r[10] or 0),
        None if r[11] is None else float(r[11]),
        r[12],
        r[13],
        r[14],
    )


def _with_reviews() -> Any:
    return sessions.outerjoin(
        reviews,
        and_(
            reviews.c.device_id == sessions.c.device_id,
            reviews.c.session_id == sessions.c.session_id,
        ),
    )


def _days_with_data(wear: dict[date, float], today: date) -> dict[int, int]:
    return {
        window: sum(
            1
            for day, minutes in wear.items()
            if today - timedelta(days=window) < day <= today and minutes * 60 >= MIN_WEAR_S_PER_DAY
        )
        for window in ADHERENCE_WINDOWS_DAYS
    }


def patients_overview(engine: Engine, today: date | None = None) -> list[PatientSummary]:
    today = today or datetime.now(UTC).date()
    since = (today - timedelta(days=max(ADHERENCE_WINDOWS_DAYS))).isoformat()
    with engine.connect() as db:
        base = db.execute(
            select(
                patients.c.code,
                func.count(devices.c.id),
                func.max(devices.c.last_sync_utc),
            )
            .select_from(patients.outerjoin(devices, devices.c.patient_id == patients.c.id))
            .group_by(patients.c.code)
            .order_by(patients.c.code)
        ).all()
        recent = db.execute(
            select(patients.c.code, sessions.c.started_utc, sessions.c.usable_s)
            .select_from(sessions.join(devices).join(patients))
            .where(sessions.c.started_utc >= since)
        ).all()
        last: dict[str, str] = dict(
            db.execute(  # type: ignore[arg-type]
                select(patients.c.code, func.max(sessions.c.started_utc))
                .select_from(sessions.join(devices).join(patients))
                .group_by(patients.c.code)
            ).all()
        )
        flagged = db.execute(
            select(patients.c.code, sessions.c.flagged)
            .select_from(
                _with_reviews()
                .join(devices, devices.c.id == sessions.c.device_id)  # not via reviews' key
                .join(patients, patients.c.id == devices.c.patient_id)
            )
            .where(reviews.c.username.is_(None), sessions.c.flagged != "")
        ).all()
    wear: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for code, started, usable_s in recent:
        wear[code][datetime.fromisoformat(started).astimezone(UTC).date()] += (usable_s or 0) / 60
    open_flags: dict[str, Counter[str]] = defaultdict(Counter)
    for code, flags in flagged:
        open_flags[code].update(flags.split())
    return [
        PatientSummary(
            code=code,
            devices=int(n),
            last_sync_utc=last_sync,
            last_session_utc=last.get(code),
            days_with_data=_days_with_data(wear[code], today),
            open_flags=dict(open_flags[code].most_common()),
        )
        for code, n, last_sync in base
    ]


def _device_info(r: Any) -> DeviceInfo:
    return DeviceInfo(int(r[0]), r[1], r[2], r[3], r[4], r[5] if len(r) > 5 else None)


_DEVICE_COLUMNS = (
    devices.c.id,
    devices.c.address,
    devices.c.model_version,
    devices.c.first_seen_utc,
    devices.c.last_sync_utc,
)


_DIRECTION_COLUMNS = (
    session_directions.c.sector,
    session_directions.c.status,
    session_directions.c.expected_deg,
    session_directions.c.reached_deg,
    session_directions.c.ratio,
    session_directions.c.deficit_deg,
    session_directions.c.deficit_pct,
    session_directions.c.threshold_deg,
)


def _direction(r: Any) -> Direction:
    """A row of ``_DIRECTION_COLUMNS``."""
    return Direction(r[0], r[1], *map(float, r[2:]))


def session_patient(engine: Engine, device_id: int, session_id: str) -> str | None:
    """The patient code of a session's device (None: not assigned); NotFoundError if no such
    session. For checks that need no more than that (the summary itself is large)."""
    with engine.connect() as db:
        row = db.execute(
            select(patients.c.code)
            .select_from(
                sessions.join(devices, devices.c.id == sessions.c.device_id).outerjoin(
                    patients, patients.c.id == devices.c.patient_id
                )
            )
            .where(sessions.c.device_id == device_id, sessions.c.session_id == session_id)
        ).first()
    if row is None:
        raise NotFoundError(f"session {session_id!r} of device {device_id}: not in the store")
    return row[0]


def unassigned_devices(engine: Engine) -> list[DeviceInfo]:
    with engine.connect() as db:
        rows = db.execute(
            select(*_DEVICE_COLUMNS).where(devices.c.patient_id.is_(None)).order_by(devices.c.id)
        ).all()
    return [_device_info(r) for r in rows]


def patient_history(
    engine: Engine,
    code: str,
    period: Period = Period(),  # noqa: B008 (frozen)
    today: date | None = None,
    include_wear: bool = False,
    results: bool = True,
) -> PatientHistory:
    """The patient's tests (and sessions from before tests) over the period, with their
    assessments and forces (``results`` False: without them, for pages that show neither);
    wear sessions only summed (``include_wear``: listed as well)."""
    today = today or datetime.now(UTC).date()
    with engine.connect() as db:
        patient_id = db.execute(select(patients.c.id).where(patients.c.code == code)).scalar()
        if patient_id is None:
            raise NotFoundError(f"patient {code!r}: not in the clinic store")
        device_rows = db.execute(
            select(*_DEVICE_COLUMNS)
            .where(devices.c.patient_id == patient_id)
            .order_by(devices.c.id)
        ).all()
        ids = [int(r[0]) for r in device_rows]
        in_period = and_(sessions.c.device_id.in_(ids), period.where(sessions.c.started_utc))
        wear = _wear_totals(db, in_period)
        if not include_wear:
            in_period = and_(in_period, or_(sessions.c.kind.is_(None), sessions.c.kind != "wear"))
        session_rows = db.execute(
            select(*_session_columns())
            .select_from(_with_reviews())
            .where(in_period)
            .order_by(sessions.c.started_utc)
        ).all()
        directions, forces = _directions_and_forces(db, in_period) if results else ({}, {})
        recent = db.execute(
            select(sessions.c.started_utc, sessions.c.usable_s).where(
                sessions.c.device_id.in_(ids),
                sessions.c.started_utc
                >= (today - timedelta(days=max(ADHERENCE_WINDOWS_DAYS))).isoformat(),
            )
        ).all()
        unreadable = db.execute(
            select(func.count()).select_from(quarantine).where(quarantine.c.device_id.in_(ids))
        ).scalar()
    recent_wear: dict[date, float] = defaultdict(float)
    for started, usable_s in recent:
        recent_wear[datetime.fromisoformat(started).astimezone(UTC).date()] += (usable_s or 0) / 60
    return PatientHistory(
        code=code,
        period=period,
        devices=tuple(_device_info(r) for r in device_rows),
        sessions=tuple(_session_row(r) for r in session_rows),
        directions=directions,
        forces=forces,
        days_with_data=_days_with_data(recent_wear, today),
        unreadable_records=int(unreadable or 0),
        wear=wear,
    )


def _directions_and_forces(
    db: Any, in_period: ColumnElement[bool]
) -> tuple[
    dict[tuple[int, str], dict[str, Direction]], dict[tuple[int, str], dict[str, GroupForce]]
]:
    """Per session of the period: its directions' results and its muscle groups' forces."""
    key = (sessions.c.device_id, sessions.c.session_id)
    direction_rows = db.execute(
        select(
            session_directions.c.device_id,
            session_directions.c.session_id,
            *_DIRECTION_COLUMNS,
        )
        .select_from(
            session_directions.join(sessions, and_(*_same_session(session_directions, key)))
        )
        .where(in_period)
    ).all()
    force_rows = db.execute(
        select(
            session_forces.c.device_id,
            session_forces.c.session_id,
            session_forces.c.muscle_group,
            session_forces.c.mean_n,
            session_forces.c.peak_n,
            session_forces.c.p90_n,
        )
        .select_from(session_forces.join(sessions, and_(*_same_session(session_forces, key))))
        .where(in_period)
    ).all()
    directions: dict[tuple[int, str], dict[str, Direction]] = defaultdict(dict)
    for r in direction_rows:
        directions[(int(r[0]), str(r[1]))][r[2]] = _direction(r[2:])
    forces: dict[tuple[int, str], dict[str, GroupForce]] = defaultdict(dict)
    for r in force_rows:
        forces[(int(r[0]), str(r[1]))][r[2]] = GroupForce(r[3], r[4], r[5])
    return dict(directions), dict(forces)


def _wear_totals(db: Any, in_period: ColumnElement[bool]) -> WearTotals:
    day = func.substr(sessions.c.started_utc, 1, 10)
    minutes = {
        date.fromisoformat(d): float(total or 0) / 60
        for d, total in db.execute(
            select(day, func.sum(sessions.c.usable_s)).where(in_period).group_by(day)
        ).all()
    }
    is_wear = and_(in_period, sessions.c.kind == "wear")
    count, beyond, frames = db.execute(
        select(
            func.count(),
            func.count().filter(sessions.c.out_of_range_frames > 0),
            func.coalesce(func.sum(sessions.c.out_of_range_frames), 0),
        ).where(is_wear)
    ).one()
    return WearTotals(int(count), minutes, int(beyond), int(frames))


def _same_session(table: Any, key: tuple[Any, Any]) -> list[ColumnElement[bool]]:
    return [table.c.device_id == key[0], table.c.session_id == key[1]]


def session_detail(engine: Engine, device_id: int, session_id: str) -> SessionDetail:
    with engine.connect() as db:
        row = db.execute(
            select(*_session_columns())
            .select_from(_with_reviews())
            .where(sessions.c.device_id == device_id, sessions.c.session_id == session_id)
        ).first()
        if row is None:
            raise NotFoundError(f"session {session_id!r} of device {device_id}: not in the store")
        device = db.execute(
            select(*_DEVICE_COLUMNS, patients.c.code)
            .select_from(devices.outerjoin(patients, patients.c.id == devices.c.patient_id))
            .where(devices.c.id == device_id)
        ).one()
        payload = db.execute(
            select(records.c.payload)
            .join(
                sessions,
                and_(records.c.device_id == sessions.c.device_id, records.c.seq == sessions.c.seq),
            )
            .where(sessions.c.device_id == device_id, sessions.c.session_id == session_id)
        ).scalar_one()
        direction_rows = db.execute(
            select(*_DIRECTION_COLUMNS).where(
                session_directions.c.device_id == device_id,
                session_directions.c.session_id == session_id,
            )
        ).all()
    info = _device_info(device)
    order = {s: i for i, s in enumerate(SECTORS)}
    found = {r[0]: _direction(r) for r in direction_rows}
    return SessionDetail(
        patient_code=info.patient_code,
        device=info,
        row=_session_row(row),
        summary=parse_record("session", payload).to_dict(),
        directions=dict(sorted(found.items(), key=lambda kv: order.get(kv[0], 99))),
    )
