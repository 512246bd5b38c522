"""Plots of a patient's days of wear (``web.daily``): habitual range against the baseline,
activity, and muscle load as a share of the wearer's capacity. Inline SVG like ``web.plots``;
each x axis spans exactly the days shown. A change is marked by shape (a triangle) as well as
colour, and is never drawn in the deficit red of the test plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ble_gateway.web.daily import PatientDays
from ble_gateway.web.plots import _RC, BLUE, GREY, ORANGE, _date_axis, _datenums, _serialised, _svg
from edge_runtime.contracts.daily import DayFigures

PAIRS = (("flexion", "extension"), ("left_bend", "right_bend"), ("left_rotation", "right_rotation"))
PURPLE = "#CC79A7"
PALETTE = (BLUE, ORANGE, "#009E73", PURPLE, "#56B4E9", "#000000", "#F0E442")


def _x(days: Sequence[DayFigures]) -> np.ndarray:
    return _datenums([datetime(d.day.year, d.day.month, d.day.day) for d in days])


def _fit_days(ax: Axes, days: Sequence[DayFigures], n_ticks: int = 4) -> None:
    """The x axis spans the days shown, half a day either side, with fixed date ticks."""
    first, last = days[0].day, days[-1].day
    lo, hi = (float(v) for v in _datenums([_midnight(first), _midnight(last)]))
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ticks = [lo + (hi - lo) * i / (n_ticks - 1) for i in range(n_ticks)] if hi > lo else [lo]
    _date_axis(ax, ticks, "%y-%m-%d")
    ax.tick_params(labelsize=7)


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)


@_serialised
def habitual_range_svg(p: PatientDays) -> str:
    """Per day with enough wear to judge (``ChangeSettings.min_wear_s``) the p95 (solid) and p50
    (dotted) of each direction's excursions; the band is the baseline +- the change threshold;
    triangles mark days flagged as a change. A few minutes of wear (a test day's tail) would
    show the test's movements as habits, so such days are left out."""
    days = [d for d in p.days if d.wear_s >= p.settings.min_wear_s]
    q = p.settings.quantile
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(9.0, 2.5))
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.2, top=0.8, wspace=0.25)
        axes = fig.subplots(1, len(PAIRS))
        x = _x(days)
        for ax, pair in zip(axes, PAIRS, strict=True):
            for direction, colour in zip(pair, (BLUE, ORANGE), strict=True):
                high = [d.range_deg(direction, q) or np.nan for d in days]
                ax.plot(x, high, color=colour, lw=1, label=direction.replace("_", " "))
                ax.plot(x, [d.range_deg(direction, 0.5) or np.nan for d in days],
                        color=colour, lw=0.8, ls=":")  # fmt: skip
                change = _change_band(p, days, direction)
                if change is not None:
                    base, threshold = change
                    ax.axhspan(base - threshold, base + threshold, color=colour, alpha=0.12, lw=0)
                flagged = [
                    (xi, h) for xi, h, d in zip(x, high, days, strict=True)
                    if direction in p.judgements[d.day].flagged
                ]  # fmt: skip
                if flagged:
                    fx, fy = zip(*flagged, strict=True)
                    ax.plot(fx, fy, ls="none", marker="v", ms=5, color="black", zorder=5)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=6.5, loc="upper left", frameon=False, handlelength=1.2)
            if days:
                _fit_days(ax, days, 3)
            for label in ax.get_xticklabels():
                label.set_rotation(25)
        fig.suptitle(
            f"Habitual range (deg), days worn {p.settings.min_wear_s / 60:.0f} min or more: solid "
            f"p{q * 100:.0f}, dotted p50; band: baseline +- threshold; triangle: change"
            + ("" if days else " (no such day yet)"),
            fontsize=9,
        )
        return _svg(fig, "habitual")


def _change_band(
    p: PatientDays, days: Sequence[DayFigures], direction: str
) -> tuple[float, float] | None:
    for d in days:
        for c in p.judgements[d.day].directions:
            if c.direction == direction:
                return c.baseline_deg, c.threshold_deg
    return None


@_serialised
def activity_svg(p: PatientDays) -> str:
    """Per day: hours worn, movements per hour, and the share of wear in sustained flexion, each
    in a panel of its own (their scales have nothing in common)."""
    days = list(p.days)
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(9.0, 2.2))
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.2, top=0.8, wspace=0.3)
        axes = fig.subplots(1, 3)
        x = _x(days)
        panels = (
            ("hours worn", [d.wear_s / 3600 for d in days], GREY),
            ("movements per hour", [d.movements_per_hour or np.nan for d in days], BLUE),
            ("% of wear in sustained flexion",
             [100 * d.flexed_s / d.wear_s if d.wear_s else np.nan for d in days], ORANGE),
        )  # fmt: skip
        for ax, (title, values, colour) in zip(axes, panels, strict=True):
            if title == "hours worn":
                ax.fill_between(x, values, step="mid", color=colour, alpha=0.5, lw=0)
            else:
                ax.plot(x, values, color=colour, lw=1)
            ax.set_title(title, fontsize=8)
            ax.set_ylim(bottom=0)
            if days:
                _fit_days(ax, days, 3)
            for label in ax.get_xticklabels():
                label.set_rotation(25)
        fig.suptitle("Wear and activity per day (the wearer's local days)", fontsize=9)
        return _svg(fig, "activity")


@_serialised
def load_svg(p: PatientDays, level: float = 0.05) -> str:
    """Per muscle group and day: the mean share of its capacity (solid) and the share of wear
    above ``level`` of capacity (dotted), both in %."""
    days = [d for d in p.days if d.force_s > 0]
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(9.0, 2.6))
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.12, top=0.85)
        ax = fig.add_subplot()
        x = _x(days)
        for colour, group in zip(PALETTE, p.groups, strict=False):
            mean = [100 * (d.load_share_mean(group) or np.nan) for d in days]
            above = [100 * (d.load_fraction_above(group, level) or np.nan) for d in days]
            ax.plot(x, mean, color=colour, lw=1.4, label=group.replace("_", " "))
            ax.plot(x, above, color=colour, lw=0.8, ls=":")
        ax.set_ylabel("% of capacity / % of time")
        ax.set_ylim(bottom=0)
        if days:
            _fit_days(ax, days, 6)
        ax.legend(fontsize=7, ncol=4, frameon=False, loc="upper left")
        ax.set_title(
            f"Muscle load per day: solid = mean share of the group's capacity (sum of Fmax); "
            f"dotted = % of the time above {level:.0%} of it",
            fontsize=9,
        )
        return _svg(fig, "load")
