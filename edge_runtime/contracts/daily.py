"""A wearer's days: the wear sessions' monitoring blocks summed per local day, and change against
the wearer's own baseline. One definition for the clinic store, the web view, the exports and
the benches.

A day's record is derived, not written by the hub: the hub keeps one monitoring block per wear
session (``contracts.wear_monitoring``), and a day is their sum. So a day is exact whatever
restarts, power cuts or syncs cut it into, and a day synced in parts is simply summed again.

**Change, never deficit.** A day is judged against the wearer's *baseline*: the first
``baseline_days`` days with enough wear (``min_wear_s``). Per direction its habitual range (the
p95 of the day's excursions, needing ``min_excursions`` of them) is compared with the baseline
days' median; a change is flagged when it exceeds the larger of ``mdc_deg`` and
``spread_factor`` times the baseline days' standard deviation, on ``persist_days`` judged days
running (the same sign on each): one unusual day is ordinary life, a change that lasts is news.
``mdc_deg`` = 9.6 deg is the largest minimal detectable change Fletcher & Bandy (2008, JOSPT
38:640) found for active cervical range of motion (flexion, patients with neck pain; 5.4 deg and
up in the other directions), so a flagged change is beyond the measurement noise of a clinical
range test in every direction; and habitual range varies more from day to day than a test
does, which the baseline's own spread accounts for.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol

from edge_runtime.contracts.record_fields import Fields
from edge_runtime.contracts.wear_monitoring import (
    DIRECTIONS,
    EXCURSION_BIN_DEG,
    LOAD_LEVELS,
    SPEED_BIN_DEG_S,
    WearMonitoring,
    histogram_quantile,
    merge,
)

DAILY_FORMAT = "cervical-daily/1"
DayStatus = Literal["baseline", "judged", "too_little_wear", "no_baseline"]


HABITUAL_QUANTILES = (0.5, 0.95)  # the habitual-range quantiles a day's figures keep


class Day(Protocol):
    """What judging and showing a day needs: ``DailySummary`` (exact, from the histograms) and
    ``DayFigures`` (its numbers, as the clinic store keeps them in columns) both are one."""

    @property
    def day(self) -> date: ...
    @property
    def wear_s(self) -> float: ...
    def range_deg(self, direction: str, q: float) -> float | None: ...
    def excursions(self, direction: str) -> int: ...


@dataclass(frozen=True)
class DailySummary:
    """One local day of wear: how many sessions, and their monitoring summed."""

    day: date
    sessions: int
    monitoring: WearMonitoring

    @property
    def wear_s(self) -> float:
        return self.monitoring.wear_s

    @property
    def flexed_s(self) -> float:
        return self.monitoring.flexed_s

    @property
    def force_s(self) -> float:
        return self.monitoring.force_s

    @property
    def movements(self) -> int:
        return self.monitoring.movements

    @property
    def groups(self) -> list[str]:
        return sorted(self.monitoring.load)

    def range_deg(self, direction: str, q: float) -> float | None:
        """The ``q`` quantile of the day's excursions towards ``direction`` (None: none)."""
        return histogram_quantile(self.monitoring.excursions[direction], q, EXCURSION_BIN_DEG)

    def excursions(self, direction: str) -> int:
        return int(sum(self.monitoring.excursions[direction]))

    def speed_deg_s(self, q: float) -> float | None:
        return histogram_quantile(self.monitoring.speeds, q, SPEED_BIN_DEG_S)

    @property
    def movements_per_hour(self) -> float | None:
        m = self.monitoring
        return m.movements / (m.wear_s / 3600) if m.wear_s > 0 else None

    def load_share_mean(self, group: str) -> float | None:
        """The group's mean share of its capacity over the force seconds (None: no forces)."""
        m = self.monitoring
        if group not in m.load or m.force_s <= 0:
            return None
        return m.load[group].share_s / m.force_s

    def load_fraction_above(self, group: str, level: float) -> float | None:
        """The share of force time the group spent above ``level`` (one of LOAD_LEVELS)."""
        m = self.monitoring
        if group not in m.load or m.force_s <= 0:
            return None
        return m.load[group].above_s[LOAD_LEVELS.index(level)] / m.force_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DAILY_FORMAT,
            "day": self.day.isoformat(),
            "sessions": self.sessions,
            "monitoring": self.monitoring.to_dict(),
        }

    @classmethod
    def read(cls, f: Fields) -> DailySummary:
        if f.raw("format") != DAILY_FORMAT:
            raise f.fail("format", f.data["format"], f"not {DAILY_FORMAT}")
        monitoring = WearMonitoring.read(f.sub("monitoring"))
        day = f.text("day")
        if day != monitoring.day:
            raise f.fail("day", day, f"not the monitoring's day {monitoring.day}")
        summary = cls(date.fromisoformat(day), f.count("sessions"), monitoring)
        f.done()
        return summary


@dataclass(frozen=True)
class DayFigures:
    """A day's figures as numbers (no histograms): what the clinic's pages and exports show,
    kept in the store's columns so years of days read fast. Answers the same questions as
    ``DailySummary`` for the quantiles in ``HABITUAL_QUANTILES``."""

    day: date
    sessions: int
    wear_s: float
    flexed_s: float
    force_s: float
    movements: int
    speed_deg_s_by_q: tuple[float | None, float | None]  # at HABITUAL_QUANTILES
    range_deg_by_q: dict[str, tuple[float | None, float | None]]  # direction -> at HABITUAL_...
    excursions_by_direction: dict[str, int]
    load: dict[str, tuple[float, ...]]  # group -> (mean share, fraction above each LOAD_LEVELS)

    @classmethod
    def of(cls, d: DailySummary) -> DayFigures:
        return cls(
            d.day, d.sessions, d.wear_s, d.flexed_s, d.force_s, d.movements,
            (d.speed_deg_s(HABITUAL_QUANTILES[0]), d.speed_deg_s(HABITUAL_QUANTILES[1])),
            {k: (d.range_deg(k, HABITUAL_QUANTILES[0]), d.range_deg(k, HABITUAL_QUANTILES[1]))
             for k in DIRECTIONS},
            {k: d.excursions(k) for k in DIRECTIONS},
            {g: (d.load_share_mean(g) or 0.0,
                 *(d.load_fraction_above(g, lv) or 0.0 for lv in LOAD_LEVELS))
             for g in d.groups},
        )  # fmt: skip

    def _at(self, q: float) -> int:
        if q not in HABITUAL_QUANTILES:
            raise ValueError(f"a day's figures keep the quantiles {HABITUAL_QUANTILES}, not {q}")
        return HABITUAL_QUANTILES.index(q)

    def range_deg(self, direction: str, q: float) -> float | None:
        return self.range_deg_by_q[direction][self._at(q)]

    def excursions(self, direction: str) -> int:
        return self.excursions_by_direction[direction]

    def speed_deg_s(self, q: float) -> float | None:
        return self.speed_deg_s_by_q[self._at(q)]

    @property
    def movements_per_hour(self) -> float | None:
        return self.movements / (self.wear_s / 3600) if self.wear_s > 0 else None

    @property
    def groups(self) -> list[str]:
        return sorted(self.load)

    def load_share_mean(self, group: str) -> float | None:
        return self.load[group][0] if group in self.load and self.force_s > 0 else None

    def load_fraction_above(self, group: str, level: float) -> float | None:
        if group not in self.load or self.force_s <= 0:
            return None
        return self.load[group][1 + LOAD_LEVELS.index(level)]


def daily_summaries(blocks: Iterable[WearMonitoring]) -> list[DailySummary]:
    """The wear sessions' blocks summed per day, in date order."""
    by_day: dict[str, list[WearMonitoring]] = defaultdict(list)
    for b in blocks:
        by_day[b.day].append(b)
    return [
        DailySummary(date.fromisoformat(d), len(bs), merge(bs, d))
        for d, bs in sorted(by_day.items())
    ]


@dataclass(frozen=True)
class ChangeSettings:
    baseline_days: int = 7
    min_wear_s: float = 20 * 60.0  # a day with less wear is neither baseline nor judged
    min_excursions: int = 10  # per direction, for its habitual range to count
    quantile: float = HABITUAL_QUANTILES[1]  # the habitual range compared
    mdc_deg: float = 9.6  # Fletcher & Bandy 2008 (module docstring)
    spread_factor: float = 3.0
    persist_days: int = 2  # judged days running beyond the threshold, the same way

    def __post_init__(self) -> None:
        if self.persist_days < 1:
            raise ValueError(f"persist_days = {self.persist_days}: must be >= 1")
        if self.baseline_days < 2:
            raise ValueError(f"baseline_days = {self.baseline_days}: a baseline needs 2 days")
        if self.quantile not in HABITUAL_QUANTILES:
            raise ValueError(f"quantile = {self.quantile}: not one of {HABITUAL_QUANTILES}")
        for name in ("min_wear_s", "mdc_deg", "spread_factor"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 0")


@dataclass(frozen=True)
class DirectionChange:
    direction: str
    baseline_deg: float
    day_deg: float
    threshold_deg: float
    flagged: bool  # beyond the threshold on this day and the persist_days - 1 judged before

    @property
    def change_deg(self) -> float:
        return self.day_deg - self.baseline_deg

    @property
    def beyond(self) -> int:
        """+1 / -1: beyond the threshold above / below the baseline; 0: within it."""
        if abs(self.change_deg) <= self.threshold_deg:
            return 0
        return 1 if self.change_deg > 0 else -1


@dataclass(frozen=True)
class DayJudgement:
    """A day against the baseline: each direction that could be compared, and the flags."""

    day: date
    status: DayStatus
    directions: tuple[DirectionChange, ...] = ()

    @property
    def flagged(self) -> tuple[str, ...]:
        return tuple(c.direction for c in self.directions if c.flagged)


def judge_days(days: Sequence[Day], settings: ChangeSettings | None = None) -> list[DayJudgement]:
    """Each day's judgement against the wearer's baseline (module docstring), in date order."""
    cfg = settings or ChangeSettings()
    ordered = sorted(days, key=lambda d: d.day)
    worn = [d for d in ordered if d.wear_s >= cfg.min_wear_s]
    baseline = worn[: cfg.baseline_days]
    complete = len(baseline) == cfg.baseline_days
    reference: dict[str, tuple[float, float]] = {}
    for direction in DIRECTIONS:
        values = [
            v
            for d in baseline
            if d.excursions(direction) >= cfg.min_excursions
            and (v := d.range_deg(direction, cfg.quantile)) is not None
        ]
        if len(values) >= 2:
            spread = statistics.stdev(values)
            threshold = max(cfg.mdc_deg, cfg.spread_factor * spread)
            reference[direction] = (statistics.median(values), threshold)
    in_baseline = {d.day for d in baseline}
    streaks: dict[str, tuple[int, int]] = {}  # direction -> (sign, judged days running)
    out = []
    for d in ordered:
        if d.day in in_baseline:
            out.append(DayJudgement(d.day, "baseline"))
        elif d.wear_s < cfg.min_wear_s:
            out.append(DayJudgement(d.day, "too_little_wear"))
        elif not complete:
            out.append(DayJudgement(d.day, "no_baseline"))
        else:
            out.append(DayJudgement(d.day, "judged", _compare(d, reference, streaks, cfg)))
    return out


def _compare(
    day: Day,
    reference: dict[str, tuple[float, float]],
    streaks: dict[str, tuple[int, int]],
    cfg: ChangeSettings,
) -> tuple[DirectionChange, ...]:
    """The day's directions against the reference, updating each direction's streak."""
    changes = []
    for direction, (base, threshold) in reference.items():
        value = day.range_deg(direction, cfg.quantile)
        if value is None or day.excursions(direction) < cfg.min_excursions:
            continue  # not compared: the streak neither grows nor breaks
        change = DirectionChange(direction, base, value, threshold, flagged=False)
        sign, run = streaks.get(direction, (0, 0))
        run = run + 1 if change.beyond and change.beyond == sign else int(change.beyond != 0)
        streaks[direction] = (change.beyond, run)
        flagged = change.beyond != 0 and run >= cfg.persist_days
        changes.append(DirectionChange(direction, base, value, threshold, flagged))
    return tuple(changes)
