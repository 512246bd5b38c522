"""What the patient page and the report show beyond the review queries: the chosen session
against a comparison session, the plots, the muscle-group table; and a cache of the plots.

The plots are a pure function of the patient's data over the period and the two sessions shown,
and the data changes only when a hub syncs; so they are cached by the patient's *data version*
(each device's last sync time), which a sync changes. Rendering four figures costs most of a
page; a repeat view of unchanged data skips it.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from ble_gateway.web import plots, plots_daily
from ble_gateway.web.daily import PatientDays
from ble_gateway.web.plot_workers import PlotJob, PlotWorkers
from ble_gateway.web.review import MIN_WEAR_S_PER_DAY, PatientHistory, SessionRow

PLOT_CACHE_ENTRIES = 32  # each a few hundred kB of SVG
_IN_PROCESS = PlotWorkers(processes=0)


class PlotCache:
    """A small thread-safe LRU of rendered plots."""

    def __init__(self, entries: int = PLOT_CACHE_ENTRIES) -> None:
        self.entries, self._lock = entries, threading.Lock()
        self._items: OrderedDict[tuple[Any, ...], dict[str, str]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple[Any, ...]) -> dict[str, str] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return found

    def put(self, key: tuple[Any, ...], value: dict[str, str]) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)


def _parse_key(text: str | None) -> tuple[int, str] | None:
    if not text or ":" not in text:
        return None
    device, _, session_id = text.partition(":")
    # ASCII digits only, within SQLite's integers ('²'.isdigit() is True; 5,000 digits raise)
    return (int(device), session_id) if re.fullmatch(r"[0-9]{1,18}", device) else None


def patient_context(
    history: PatientHistory,
    chosen: str | None,
    compare: str | None,
    cache: PlotCache | None = None,
    days: PatientDays | None = None,
    workers: PlotWorkers = _IN_PROCESS,
) -> dict[str, Any]:
    """The chosen session (default: the latest assessed) against another (default: the first
    assessed of the period), the plots, and the days of wear (their plots: ``days_context``)."""
    assessed = history.assessed
    by_key = {s.key: s for s in assessed}
    now = by_key.get(_parse_key(chosen) or (-1, "")) or (assessed[-1] if assessed else None)
    before = by_key.get(_parse_key(compare) or (-1, "")) or (assessed[0] if assessed else None)
    if before is not None and now is not None and before.key == now.key:
        before = None
    context: dict[str, Any] = {
        "now": now, "before": before, "warnings": history.warnings(), "daily": days,
    }  # fmt: skip
    if now is not None:
        context["now_directions"] = history.directions[now.key]
        context["before_directions"] = history.directions[before.key] if before else {}
    groups = history.group_names()
    if groups:
        context["force_table"] = _force_table(history, groups)
    version = tuple((d.id, d.last_sync_utc) for d in history.devices)
    key = (history.code, history.period, version, now.key if now else None,
           before.key if before else None)  # fmt: skip
    rendered = cache.get(key) if cache else None
    if rendered is None:
        rendered = workers.render(_plot_jobs(history, now, before, groups))
        if cache:
            cache.put(key, rendered)
    return context | rendered


def _plot_jobs(
    history: PatientHistory, now: SessionRow | None, before: SessionRow | None, groups: list[str]
) -> dict[str, PlotJob]:
    """The patient page's plots, heaviest first (``PlotWorkers`` deals them out in order)."""
    jobs: dict[str, PlotJob] = {}
    if now is not None:
        jobs["trend_svg"] = (plots.rom_trend_svg, (history,))
        jobs["envelope_svg"] = (
            plots.envelope_svg,
            (
                history.directions[now.key],
                f"{now.started_utc:%Y-%m-%d}",
                history.directions[before.key] if before else None,
                f"{before.started_utc:%Y-%m-%d}" if before else "",
            ),
        )
    if groups:
        # it reads the sessions and their forces: its worker need not be sent every direction
        slim = replace(history, directions={})
        jobs["forces_svg"] = (plots.forces_trend_svg, (slim, groups))
    return jobs


def days_context(
    history: PatientHistory,
    days: PatientDays,
    cache: PlotCache | None = None,
    workers: PlotWorkers = _IN_PROCESS,
) -> dict[str, Any]:
    """The daily-monitoring page's plots: habitual range, activity, load, and usable wear per
    day (cached like the patient page's)."""
    version = tuple((d.id, d.last_sync_utc) for d in history.devices)
    key = (history.code, history.period, version, "days")
    rendered = cache.get(key) if cache else None
    if rendered is None:
        jobs: dict[str, PlotJob] = {}  # heaviest first
        if days.days:
            jobs["habitual_svg"] = (plots_daily.habitual_range_svg, (days,))
        if history.wear.minutes_by_day:  # it reads the wear totals only
            slim = replace(history, sessions=(), directions={}, forces={})
            jobs["wear_svg"] = (plots.wear_svg, (slim, MIN_WEAR_S_PER_DAY / 60))
        if days.days:
            jobs["activity_svg"] = (plots_daily.activity_svg, (days,))
        if days.groups:
            jobs["load_svg"] = (plots_daily.load_svg, (days,))
        rendered = workers.render(jobs)
        if cache:
            cache.put(key, rendered)
    return rendered


def _force_table(history: PatientHistory, groups: list[str]) -> list[dict[str, Any]]:
    """Per group: mean force over the first and the last 7 sessions of the period."""
    rows = [s for s in history.sessions if s.key in history.forces]

    def mean(sessions: list[Any], group: str, what: str) -> float | None:
        values = [
            getattr(history.forces[s.key][group], what)
            for s in sessions
            if group in history.forces[s.key]
        ]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    table = []
    for g in groups:
        first, last = mean(rows[:7], g, "mean_n"), mean(rows[-7:], g, "mean_n")
        change = 100 * (last - first) / first if first and last is not None else None
        table.append(
            {
                "group": g,
                "first_n": first,
                "last_n": last,
                "change_pct": change,
                "peak_n": mean(rows[-7:], g, "peak_n"),
            }
        )
    return table
