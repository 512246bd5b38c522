"""A patient's days of wear, read from the clinic store's ``days`` (``contracts.daily``), with
the change against the patient's own baseline and what happened since the last review.

Days are the hub's local days (the wearer's), not UTC days. A patient with several hubs (a
replaced one) has each day's blocks summed over them. The baseline is the patient's first
``ChangeSettings.baseline_days`` days with enough wear over their whole history, whatever period
the page shows, so a day's judgement does not depend on how the clinician filters the view.

Change is never a deficit: it says the habitual range of ordinary life moved beyond the
published minimal detectable change (and the patient's own day-to-day spread), in either
direction; deficits come from guided tests only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ble_gateway.store import days, reviews, sessions
from ble_gateway.web.review import Period
from edge_runtime.contracts.daily import (
    ChangeSettings,
    DailySummary,
    DayFigures,
    DayJudgement,
    judge_days,
)
from edge_runtime.contracts.record_fields import Fields
from edge_runtime.contracts.record_payloads import DATE_RANGE
from edge_runtime.contracts.wear_monitoring import DIRECTIONS, merge


@dataclass(frozen=True)
class SinceReview:
    """What happened since the last time a clinician marked one of the patient's sessions as
    reviewed (``reviewed_utc`` None: never; then over the whole history)."""

    reviewed_utc: datetime | None
    days_worn: int
    wear_h: float
    tests: int
    tests_with_deficits: int
    days_with_change: int
    directions_changed: tuple[str, ...]


@dataclass(frozen=True)
class PatientDays:
    days: tuple[DayFigures, ...]  # in the period, date order
    judgements: dict[date, DayJudgement]
    since_review: SinceReview
    settings: ChangeSettings

    @property
    def groups(self) -> list[str]:
        return sorted({g for d in self.days for g in d.load})

    def flagged_days(self) -> list[DayJudgement]:
        return [j for d in self.days if (j := self.judgements[d.day]).flagged]


def _in_period(day: date, period: Period) -> bool:
    return (period.start is None or day >= period.start) and (
        period.end is None or day <= period.end
    )


def read_days(engine: Engine, device_ids: list[int]) -> list[DayFigures]:
    """Every day of the devices' wear, in date order; a day on several devices (a hub replaced
    that day) is their exact sum."""
    with engine.connect() as db:
        rows = db.execute(
            select(*[c for c in days.c if c.name != "summary"])
            .where(days.c.device_id.in_(device_ids))
            .order_by(days.c.day)
        ).all()
        shared = sorted({r.day for r in rows} - {r.day for r in _unique_days(rows)})
        summaries = db.execute(
            select(days.c.day, days.c.summary).where(
                days.c.device_id.in_(device_ids), days.c.day.in_(shared)
            )
        ).all()
    merged: dict[str, list[DailySummary]] = defaultdict(list)
    for day, text in summaries:
        merged[day].append(DailySummary.read(Fields("daily", json.loads(text))))
    out = [_figures(r) for r in _unique_days(rows)]
    for day, parts in merged.items():
        block = merge([p.monitoring for p in parts], day)
        out.append(
            DayFigures.of(
                DailySummary(date.fromisoformat(day), sum(p.sessions for p in parts), block)
            )
        )
    return sorted(out, key=lambda f: f.day)


def _unique_days(rows: Sequence[Any]) -> list[Any]:
    count: dict[str, int] = defaultdict(int)
    for r in rows:
        count[r.day] += 1
    return [r for r in rows if count[r.day] == 1]


def _figures(r: Any) -> DayFigures:
    """A ``days`` row (``store._day_row``) as the day's figures."""
    loads = json.loads(r.loads)
    return DayFigures(
        day=date.fromisoformat(r.day), sessions=r.sessions, wear_s=r.wear_s,
        flexed_s=r.flexed_s, force_s=r.force_s, movements=r.movements,
        speed_deg_s_by_q=(r.speed_p50_deg_s, r.speed_p95_deg_s),
        range_deg_by_q={d: (getattr(r, f"{d}_p50_deg"), getattr(r, f"{d}_p95_deg"))
                        for d in DIRECTIONS},
        excursions_by_direction={d: getattr(r, f"{d}_n") for d in DIRECTIONS},
        load={g: tuple(v) for g, v in loads.items()},
    )  # fmt: skip


def patient_days(
    engine: Engine,
    device_ids: list[int],
    period: Period = Period(),  # noqa: B008 (frozen)
    settings: ChangeSettings | None = None,
) -> PatientDays:
    cfg = settings or ChangeSettings()
    every = read_days(engine, device_ids)
    judgements = {j.day: j for j in judge_days(every, cfg)}
    with engine.connect() as db:
        reviewed = db.execute(
            select(func.max(reviews.c.reviewed_utc)).where(reviews.c.device_id.in_(device_ids))
        ).scalar()
        since = datetime.fromisoformat(reviewed).astimezone(UTC) if reviewed else None
        after_review = sessions.c.started_utc >= (since or DATE_RANGE[0]).isoformat()
        tests = db.execute(
            select(sessions.c.flagged).where(
                sessions.c.device_id.in_(device_ids), sessions.c.kind == "test", after_review
            )
        ).scalars()
        flagged_tests = [bool(f) for f in tests]
    after = [d for d in every if since is None or d.day >= since.date()]
    changed = [judgements[d.day] for d in after if judgements[d.day].flagged]
    return PatientDays(
        days=tuple(d for d in every if _in_period(d.day, period)),
        judgements=judgements,
        since_review=SinceReview(
            reviewed_utc=since,
            days_worn=sum(d.wear_s >= cfg.min_wear_s for d in after),
            wear_h=sum(d.wear_s for d in after) / 3600,
            tests=len(flagged_tests),
            tests_with_deficits=sum(flagged_tests),
            days_with_change=len(changed),
            directions_changed=tuple(sorted({f for j in changed for f in j.flagged})),
        ),
        settings=cfg,
    )
