"""Server-side plots of the clinician view, as inline SVG (crisp on screen and on paper).

matplotlib's object API (``Figure``, no pyplot state, so it is safe in a threaded server); text
stays text in the SVG. Colours are from the Okabe-Ito palette, readable with colour-blindness and
in grey print; every deficit is marked by shape and label as well as colour.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any, ParamSpec, cast

import matplotlib as mpl
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.projections.polar import PolarAxes
from matplotlib.ticker import FixedLocator, MaxNLocator

from ble_gateway.web.review import Direction, PatientHistory
from edge_runtime.contracts.rom_assessment import AXIAL_SECTORS, PLANAR_SECTORS

BLUE, ORANGE, RED, GREY = "#0072B2", "#E69F00", "#D55E00", "#777777"
LABELS: dict[str, str] = {
    "extension": "extension",
    "extension_right_bend": "ext. + right bend",
    "right_bend": "right bend",
    "flexion_right_bend": "flex. + right bend",
    "flexion": "flexion",
    "flexion_left_bend": "flex. + left bend",
    "left_bend": "left bend",
    "extension_left_bend": "ext. + left bend",
    "left_rotation": "left rotation",
    "right_rotation": "right rotation",
}
_PLOTTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plots")
P = ParamSpec("P")
_RC: dict[Any, Any] = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.titlesize": 10,
    "svg.hashsalt": "cervical",
}


def direction_label(sector: str) -> str:
    return LABELS.get(sector, sector.replace("_", " "))


def _svg(fig: Figure, prefix: str) -> str:
    """Inline SVG (no XML declaration); element ids get ``prefix`` so that several plots on one
    page do not share ids (matplotlib numbers them from 1 in every figure)."""
    buf = io.StringIO()
    with mpl.rc_context(_RC):
        # no creation date: the same data gives the same SVG, wherever it was rendered
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    for old in ('id="', "url(#", 'href="#'):
        text = text.replace(old, f"{old}{prefix}-")
    return text


def _serialised(fn: Callable[P, str]) -> Callable[P, str]:
    """Every plot on one thread of its own: one at a time (rc_context changes matplotlib's
    global settings), and matplotlib's per-thread font cache stays warm (on a server's thread
    pool each new thread would load the fonts again, ~40% of a page's plotting time)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
        return _PLOTTER.submit(fn, *args, **kwargs).result()

    return wrapper


@_serialised
def warm_up() -> str:
    """A small figure with text, so that matplotlib has loaded its fonts before a page needs
    them (a plot worker's first job)."""
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(1.0, 1.0))
        fig.add_subplot().set_title("warm")
        return _svg(fig, "warm")


def _figure(width_in: float, height_in: float) -> Figure:
    with mpl.rc_context(_RC):
        return Figure(figsize=(width_in, height_in), layout="constrained")


@_serialised
def envelope_svg(
    now: dict[str, Direction],
    now_label: str,
    before: dict[str, Direction] | None = None,
    before_label: str = "",
) -> str:
    """Reached range per direction against the personal envelope: the (extension, lateral
    bending) plane as a polar plot (extension up, right bend right, seen from behind the
    patient), axial rotation as bars. Deficits in red, with degrees and percent."""
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(7.2, 3.6))
        grid = fig.add_gridspec(
            1, 2, width_ratios=(1.5, 1), left=0.1, right=0.97, bottom=0.2, top=0.88, wspace=0.55
        )
        polar = cast(PolarAxes, fig.add_subplot(grid[0], projection="polar"))
        _planar_panel(polar, now, now_label, before, before_label)
        _axial_panel(fig.add_subplot(grid[1]), now, now_label, before)
        return _svg(fig, "envelope")


def _planar_panel(
    polar: PolarAxes,
    now: dict[str, Direction],
    now_label: str,
    before: dict[str, Direction] | None,
    before_label: str,
) -> None:
    """The (extension, lateral bending) plane: envelope, the earlier and the current reach."""
    polar.set_theta_zero_location("N")
    polar.set_theta_direction(-1)
    planar = [s for s in PLANAR_SECTORS if s in now]
    theta = [math.radians(45 * PLANAR_SECTORS.index(s)) for s in planar]
    closed = [*theta, theta[0]] if theta else []

    def ring(values: Sequence[float]) -> list[float]:
        return [*values, values[0]] if values else []

    expected = [now[s].expected_deg for s in planar]
    polar.fill(closed, ring(expected), color=GREY, alpha=0.12, label="personal envelope")
    polar.plot(closed, ring(expected), color=GREY, ls="--", lw=1)
    if before:
        back = [before[s].reached_deg if s in before else math.nan for s in planar]
        polar.plot(closed, ring(back), color=ORANGE, lw=1.2, marker="s", ms=3, label=before_label)
    reached = ring([now[s].reached_deg for s in planar])
    polar.plot(closed, reached, color=BLUE, lw=2, marker="o", ms=4, label=now_label)
    for s, th in zip(planar, theta, strict=True):
        d = now[s]
        if d.status == "deficit":
            polar.plot([th], [d.reached_deg], marker="X", ms=9, color=RED)
            polar.annotate(
                f"−{d.deficit_deg:.0f}° ({d.deficit_pct:.0f} %)",
                (th, d.reached_deg),
                xytext=(4, -12),
                textcoords="offset points",
                color=RED,
                fontsize=8,
                fontweight="bold",
            )
    polar.set_xticks(theta, [direction_label(s) for s in planar])
    polar.set_rlabel_position(112)
    polar.tick_params(axis="y", labelsize=7)
    polar.set_title("Flexion–extension and lateral bending (deg)")
    polar.legend(loc="upper left", bbox_to_anchor=(-0.25, -0.05), fontsize=7, frameon=False, ncol=3)


def _axial_panel(
    bars: Axes, now: dict[str, Direction], now_label: str, before: dict[str, Direction] | None
) -> None:
    """Axial rotation as bars against the envelope, labelled right of the bars."""
    axial = [s for s in AXIAL_SECTORS if s in now]
    y = list(range(len(axial)))
    bars.barh(y, [now[s].expected_deg for s in axial], color="none", edgecolor=GREY, ls="--",
              label="envelope")  # fmt: skip
    colours = [RED if now[s].status == "deficit" else BLUE for s in axial]
    bars.barh(y, [now[s].reached_deg for s in axial], height=0.5, color=colours, label=now_label)
    if before:
        for i, s in enumerate(axial):
            if s in before:
                bars.plot([before[s].reached_deg] * 2, [i - 0.35, i + 0.35], color=ORANGE, lw=2)
    top = max([now[s].expected_deg for s in axial] + [now[s].reached_deg for s in axial] + [1])
    for i, s in enumerate(axial):  # labels right of the bars, never over them
        d = now[s]
        text = f"{d.reached_deg:.0f}° of {d.expected_deg:.0f}°"
        if d.status == "deficit":
            text += f"\n−{d.deficit_deg:.0f}° ({d.deficit_pct:.0f} %)"
        colour = RED if d.status == "deficit" else "black"
        bars.text(top * 1.04, i, text, fontsize=8, va="center", color=colour)
    bars.set_xlim(0, top * 1.75)
    bars.set_yticks(y, [direction_label(s) for s in axial])
    bars.set_xlabel("deg")
    bars.set_title("Axial rotation")
    bars.invert_yaxis()


def _date_axis(ax: Axes, ticks: list[float], fmt: str = "%Y-%m-%d") -> None:
    """Fixed date ticks (matplotlib's auto date locator is slow and these plots are static)."""
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(DateFormatter(fmt))  # type: ignore[no-untyped-call]


def _datenums(times: Sequence[datetime]) -> npt.NDArray[np.float64]:
    """UTC datetimes as matplotlib date numbers, converted at once (per-point conversion inside
    matplotlib costs more than drawing)."""
    naive = np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[s]")
    return np.asarray(date2num(naive), dtype=np.float64)  # type: ignore[no-untyped-call]


def _date_ticks(times: Sequence[datetime], n: int = 3) -> list[float]:
    """``n`` evenly spaced tick positions over the span (matplotlib date numbers)."""
    if not times:
        return []
    lo, hi = (float(x) for x in _datenums([min(times), max(times)]))
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)] if hi > lo else [lo]


# opposite directions share a panel, so an asymmetry shows at a glance
TREND_PAIRS: tuple[tuple[str, str], ...] = (
    ("flexion", "extension"),
    ("left_bend", "right_bend"),
    ("left_rotation", "right_rotation"),
    ("flexion_left_bend", "flexion_right_bend"),
    ("extension_left_bend", "extension_right_bend"),
)


@_serialised
def rom_trend_svg(history: PatientHistory) -> str:
    """Reached range per direction over the period (opposite directions in one panel), against
    the envelope (dashed) and with every deficit drawn over in thick red."""
    rows = history.assessed
    with mpl.rc_context(_RC):
        # a fixed layout and fixed date ticks: constrained layout and date auto-locators over
        # several axes cost more than everything else on the page
        fig = Figure(figsize=(9.0, 2.5))
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.2, top=0.8, wspace=0.3)
        axes = fig.subplots(1, len(TREND_PAIRS))  # not sharex: shared axes re-measure ticks
        ticks = _date_ticks([s.started_utc for s in rows])
        for ax, pair in zip(axes, TREND_PAIRS, strict=True):
            for sector, colour in zip(pair, (BLUE, ORANGE), strict=True):
                points = [
                    (s.started_utc, d) for s in rows if (d := history.directions[s.key].get(sector))
                ]
                if not points:
                    continue
                t = _datenums([p[0] for p in points])
                ax.plot(t, [d.expected_deg for _, d in points], color=colour, ls="--", lw=0.8)
                reached = [d.reached_deg for _, d in points]
                ax.plot(t, reached, color=colour, lw=1, label=direction_label(sector))
                deficit = [r if d.status == "deficit" else math.nan
                           for r, (_, d) in zip(reached, points, strict=True)]  # fmt: skip
                ax.plot(t, deficit, color=RED, lw=2.4)
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_locator(MaxNLocator(4))  # every tick costs a page ~1 ms to draw
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6.5, loc="lower left", frameon=False, handlelength=1.2)
            _date_axis(ax, ticks, "%y-%m-%d")
            for label in ax.get_xticklabels():
                label.set_rotation(25)
        fig.suptitle(
            "Reached range (deg) per session: dashed = personal envelope, thick red = deficit",
            fontsize=9,
        )
        return _svg(fig, "trend")


@_serialised
def wear_svg(history: PatientHistory, min_minutes: float) -> str:
    """Usable sensor minutes per day over the period."""
    wear = history.wear_by_day()
    days: list[date] = []
    if wear:  # every day of the span, zero where nothing was worn: one filled path, not N bars
        first, last = min(wear), max(wear)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    with mpl.rc_context(_RC):
        fig = _figure(9.0, 1.9)
        ax = fig.add_subplot()
        ax.fill_between(
            cast(Any, days), [wear.get(d, 0.0) for d in days], step="mid", color=BLUE, lw=0
        )
        ax.axhline(min_minutes, color=GREY, ls=":", lw=1)
        if days:  # the axis spans the days with data, not matplotlib's padded guess
            ends = [datetime(d.year, d.month, d.day) for d in (days[0], days[-1])]
            lo, hi = (float(v) for v in _datenums(ends))
            ax.set_xlim(lo - 0.5, hi + 0.5)
            _date_axis(ax, _date_ticks(ends, 6) if hi > lo else [lo])
        ax.set_ylabel("min / day")
        ax.set_title("Usable wear time per day (UTC); days without a bar have no data")
        ax.tick_params(labelsize=7)
        return _svg(fig, "wear")


@_serialised
def forces_trend_svg(history: PatientHistory, groups: Sequence[str]) -> str:
    """Mean force of each muscle group per session (thin) and over the last 7 sessions (thick)."""
    rows = [s for s in history.sessions if s.key in history.forces]
    palette = [BLUE, ORANGE, "#009E73", "#CC79A7", "#56B4E9", "#000000", RED, "#F0E442"]
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(9.0, 2.6))
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.12, top=0.88)
        ax = fig.add_subplot()
        _date_axis(ax, _date_ticks([s.started_utc for s in rows], 6))
        for colour, group in zip(palette, groups, strict=False):
            points = [
                (s.started_utc, f.mean_n)
                for s in rows
                if (f := history.forces[s.key].get(group)) is not None and f.mean_n is not None
            ]
            if not points:
                continue
            times, v = zip(*points, strict=True)
            t = _datenums(times)
            ax.plot(t, v, color=colour, lw=0.5, alpha=0.4)
            smooth = [
                sum(v[max(0, i - 6) : i + 1]) / len(v[max(0, i - 6) : i + 1]) for i in range(len(v))
            ]
            ax.plot(t, smooth, color=colour, lw=1.8, label=group.replace("_", " "))
        ax.set_ylabel("mean force (N)")
        ax.set_ylim(bottom=0)
        ax.set_title("Muscle-group mean force per session (thick: mean of the last 7 sessions)")
        ax.legend(fontsize=7, ncol=4, frameon=False, loc="upper left")
        ax.tick_params(labelsize=7)
        return _svg(fig, "forces")
