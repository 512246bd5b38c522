"""``cervical bench web``: how fast the clinician view answers with a long history.

One run builds a clinic store with one patient's days over ``--days`` (synthetic, through the
sync path: a guided test and ``WEAR_SESSIONS_PER_DAY`` half-hour wear sessions with their
daily monitoring on each day worn) and a second with 30 days, then times, side by side, the
patient page (the whole request through the ASGI app: session check, queries, three
server-side plots of the guided tests, the days' table, template, audit write) and the
daily-monitoring page (four plots of the days) for each, their stages, the session page and the
exports. The goal is each page within 300 ms with two years of daily records. The pages render
their plots side by side in plot workers started beforehand, as ``cervical gateway serve`` does
(``web.plot_workers``); the stages are each plot alone, in-process.
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
PAGE_GOAL_MS = 300.0
WEAR_SESSIONS_PER_DAY = 8  # four hours of wear a day


def _timed_ms(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """(first call, the repeats after it) in ms."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return times[0], times[1:]


def _history_figures(days: int, repeats: int, work: Path) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from ble_gateway.store import ClinicStore
    from ble_gateway.web import exports
    from ble_gateway.web.accounts import Accounts
    from ble_gateway.web.app import LOGIN_CSRF_COOKIE, create_app
    from ble_gateway.web.daily import patient_days
    from ble_gateway.web.pages import PlotCache
    from ble_gateway.web.review import patient_history
    from ble_gateway.web.synthetic import SyntheticPatient, fill_history

    store = ClinicStore(work / f"clinic-{days}.db")
    patient = SyntheticPatient()
    fill_history(store, days, patient, seed=1, wear_sessions_per_day=WEAR_SESSIONS_PER_DAY)
    Accounts(store.engine).add_user("bench", "bench password 1")
    app = create_app(store)
    client = TestClient(app)
    client.get("/login")
    client.post(
        "/login",
        data={"username": "bench", "password": "bench password 1",
              "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE) or ""},
    )  # fmt: skip
    page = f"/patients/{patient.code}"

    def get(path: str) -> Callable[[], object]:
        def call() -> object:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            return response

        return call

    app.state.web.plot_workers.warm_up()  # as `cervical gateway serve` does at start
    gc.collect()
    gc.freeze()  # as `cervical gateway serve` does once it has started

    def first_view() -> object:  # the first view after a sync: nothing cached
        app.state.web.plot_cache = PlotCache()
        return get(page)()

    _, cold = _timed_ms(first_view, repeats)
    _, warm = _timed_ms(get(page), repeats)

    def first_days_view() -> object:
        app.state.web.plot_cache = PlotCache()
        return get(f"{page}/days")()

    _, days_cold = _timed_ms(first_days_view, repeats)
    history = patient_history(store.engine, patient.code)
    a = history.assessed
    _, query = _timed_ms(lambda: patient_history(store.engine, patient.code), repeats)
    ids = [d.id for d in history.devices]
    daily = patient_days(store.engine, ids)
    stages = {"query": query} | _plot_stages(history, daily, store.engine, ids, repeats)
    session = f"{page}/sessions/{a[-1].device_id}/{a[-1].session_id}"
    figures = {
        "days": days,
        "sessions": len(history.sessions),
        "wear_days": len(daily.days),
        "page_median_ms": round(statistics.median(cold), 1),
        "page_max_ms": round(max(cold), 1),
        "page_cached_median_ms": round(statistics.median(warm), 1),
        "days_page_median_ms": round(statistics.median(days_cold), 1),
        "days_page_max_ms": round(max(days_cold), 1),
        "page_bytes": len(get(page)().content),  # type: ignore[attr-defined]
        "stages_median_ms": {k: round(statistics.median(v), 1) for k, v in stages.items()},
        "session_page_median_ms": round(statistics.median(_timed_ms(get(session), repeats)[1]), 1),
        "fhir_ms": round(_timed_ms(get(f"{page}/fhir.json"), 0)[0], 1),
        "csv_ms": round(_timed_ms(get(f"{page}/sessions.csv"), 0)[0], 1),
        "days_csv_ms": round(_timed_ms(get(f"{page}/days.csv"), 0)[0], 1),
        "report_pdf_ms": round(_timed_ms(get(f"{page}/report.pdf"), 0)[0], 1),
        "fhir_observations": sum(len(history.directions[s.key]) for s in a),
        "fhir_daily_observations": len(daily.days),
        "fhir_bytes": len(json.dumps(exports.fhir_bundle(history, days=daily))),
    }
    store.close()
    gc.unfreeze()
    return figures


def _plot_stages(
    history: Any, daily: Any, engine: Any, ids: list[int], repeats: int
) -> dict[str, list[float]]:
    """Each plot of the two pages alone, in-process, and the days query (ms per repeat)."""
    from ble_gateway.web import plots, plots_daily
    from ble_gateway.web.daily import patient_days
    from ble_gateway.web.review import MIN_WEAR_S_PER_DAY

    a = history.assessed
    return {
        "envelope plot": _timed_ms(lambda: plots.envelope_svg(
            history.directions[a[-1].key], "now", history.directions[a[0].key], "first"), repeats
        )[1],
        "trend plot": _timed_ms(lambda: plots.rom_trend_svg(history), repeats)[1],
        "wear plot": _timed_ms(lambda: plots.wear_svg(history, MIN_WEAR_S_PER_DAY / 60), repeats)[
            1
        ],
        "forces plot": _timed_ms(
            lambda: plots.forces_trend_svg(history, history.group_names()), repeats)[1],
        "days query": _timed_ms(lambda: patient_days(engine, ids), repeats)[1],
        "habitual range plot": _timed_ms(lambda: plots_daily.habitual_range_svg(daily), repeats)[1],
        "activity plot": _timed_ms(lambda: plots_daily.activity_svg(daily), repeats)[1],
        "load plot": _timed_ms(lambda: plots_daily.load_svg(daily), repeats)[1],
    }  # fmt: skip


def bench_web(
    days: Annotated[int, typer.Option(help="Days of daily sessions (two years: 730).")] = 730,
    repeats: Annotated[int, typer.Option(help="Timed repeats of each request.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Patient page time with a long history against a month, its stages, and the exports."""
    with tempfile.TemporaryDirectory() as tmp:
        with console.status(f"{days} days of history"):
            long = _history_figures(days, repeats, Path(tmp))
        with console.status("30 days of history"):
            month = _history_figures(30, repeats, Path(tmp))
    figures = {
        "long": long,
        "month": month,
        "page_ratio_long_to_month": round(long["page_median_ms"] / month["page_median_ms"], 2),
        "page_goal_ms": PAGE_GOAL_MS,
        "page_within_goal": long["page_median_ms"] <= PAGE_GOAL_MS,
        "days_page_within_goal": long["days_page_median_ms"] <= PAGE_GOAL_MS,
    }
    if as_json:
        print(json.dumps(figures))
        return
    table = Table(title="Clinician view, in-process ASGI requests (ms)")
    table.add_column("")
    table.add_column(f"{days} days ({long['sessions']} tests, {long['wear_days']} days worn)",
                     justify="right")  # fmt: skip
    table.add_column(f"30 days ({month['sessions']} tests)", justify="right")
    rows = [
        ("patient page, first view after a sync (median)", "page_median_ms"),
        ("patient page, first view (max)", "page_max_ms"),
        ("patient page, repeat view (plots cached)", "page_cached_median_ms"),
        ("daily-monitoring page, first view after a sync (median)", "days_page_median_ms"),
        ("daily-monitoring page, first view (max)", "days_page_max_ms"),
        ("session page (median)", "session_page_median_ms"),
        ("FHIR bundle", "fhir_ms"),
        ("CSV of the sessions", "csv_ms"),
        ("CSV of the days", "days_csv_ms"),
        ("PDF report", "report_pdf_ms"),
    ]
    for label, key in rows:
        table.add_row(label, f"{long[key]:.0f}", f"{month[key]:.0f}")
    for stage, ms in long["stages_median_ms"].items():
        table.add_row(f"  of which {stage}", f"{ms:.0f}", f"{month['stages_median_ms'][stage]:.0f}")
    table.add_row(
        "page size (kB)", f"{long['page_bytes'] / 1e3:.0f}", f"{month['page_bytes'] / 1e3:.0f}"
    )
    Console().print(table)
    verdict = "within" if figures["page_within_goal"] else "OVER"
    Console().print(
        f"patient page with {days} days, first view after a sync: median "
        f"{long['page_median_ms']:.0f} ms, {verdict} the {PAGE_GOAL_MS:.0f} ms goal "
        f"({figures['page_ratio_long_to_month']}x the 30-day page); repeat views "
        f"{long['page_cached_median_ms']:.0f} ms; daily-monitoring page "
        f"{long['days_page_median_ms']:.0f} ms "
        f"({'within' if figures['days_page_within_goal'] else 'OVER'} the goal)",
        markup=False,
    )
