"""A patient's period as a printable report, PDF, CSV and FHIR bundle; every export audited."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from ble_gateway.web import common as web
from ble_gateway.web import exports, exports_daily, plots
from ble_gateway.web.accounts import WebSession
from ble_gateway.web.pages import days_context, patient_context
from ble_gateway.web.review import MIN_WEAR_S_PER_DAY, PatientHistory
from edge_runtime.contracts.rom_assessment import SECTORS

router = APIRouter()


@router.get("/patients/{code}/report", response_class=HTMLResponse)
def report(
    request: Request, user: web.User, code: str, start: web.From = None, to: str | None = None
) -> Response:
    history = _exported(request, user, code, start, to, "report html")
    return HTMLResponse(_report_html(request, history, user))


@router.get("/patients/{code}/report.pdf")
def report_pdf(
    request: Request, user: web.User, code: str, start: web.From = None, to: str | None = None
) -> Response:
    history = _exported(request, user, code, start, to, "report pdf")
    pdf = exports.report_pdf(_report_html(request, history, user))
    return Response(
        pdf, media_type="application/pdf", headers=_attachment(f"cervical-report-{code}.pdf")
    )


@router.get("/patients/{code}/sessions.csv")
def csv_export(
    request: Request, user: web.User, code: str, start: web.From = None, to: str | None = None
) -> Response:
    history = _exported(request, user, code, start, to, "sessions csv")
    return Response(
        exports.sessions_csv(history),
        media_type="text/csv; charset=utf-8",
        headers=_attachment(f"cervical-sessions-{code}.csv"),
    )


@router.get("/patients/{code}/days.csv")
def days_csv_export(
    request: Request, user: web.User, code: str, start: web.From = None, to: str | None = None
) -> Response:
    history = _exported(request, user, code, start, to, "days csv")
    return Response(
        exports_daily.days_csv(web.days_of(request, history)),
        media_type="text/csv; charset=utf-8",
        headers=_attachment(f"cervical-days-{code}.csv"),
    )


@router.get("/patients/{code}/fhir.json")
def fhir_export(
    request: Request, user: web.User, code: str, start: web.From = None, to: str | None = None
) -> Response:
    history = _exported(request, user, code, start, to, "fhir bundle")
    bundle = exports.fhir_bundle(history, days=web.days_of(request, history))
    return Response(
        json.dumps(bundle, indent=1, allow_nan=False),  # FHIR JSON
        media_type="application/fhir+json",
        headers=_attachment(f"cervical-fhir-{code}.json"),
    )


def _exported(
    request: Request, user: WebSession, code: str, start: str | None, end: str | None, what: str
) -> PatientHistory:
    """The history an export is made of, its making written to the audit log."""
    history = web.history(request, code, start, end)
    web.state(request).accounts.audit(
        user.username, web.client(request), "export", f"{what} ({history.period.label})", code
    )
    return history


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


@functools.cache
def _stylesheet() -> str:
    """The report embeds the stylesheet (it travels as one file); read once."""
    return (web.HERE / "static" / "style.css").read_text()


def _report_html(request: Request, history: PatientHistory, user: WebSession) -> str:
    state = web.state(request)
    css = _stylesheet()
    days = web.days_of(request, history)
    context = patient_context(history, None, None, state.plot_cache, days, state.plot_workers)
    context |= days_context(history, days, state.plot_cache, state.plot_workers)
    template = state.templates.get_template("report.html")
    return template.render(
        h=history,
        user=user,
        css=css,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        min_wear_s=MIN_WEAR_S_PER_DAY,
        label=plots.direction_label,
        sectors=SECTORS,
        **context,
    )
