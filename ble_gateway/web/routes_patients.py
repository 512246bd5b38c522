"""The patients list, a patient's page, a session's page, reviews and assigning hubs."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from ble_gateway.store import ClinicStoreError
from ble_gateway.web import common as web
from ble_gateway.web import plots
from ble_gateway.web.pages import days_context, patient_context
from ble_gateway.web.review import (
    MIN_WEAR_S_PER_DAY,
    NotFoundError,
    patients_overview,
    session_detail,
    session_patient,
    unassigned_devices,
)

router = APIRouter()
SESSIONS_SHOWN = 60  # the patient page lists the latest sessions; "all" lists every one


@router.get("/")
def home(_user: web.User) -> Response:
    return RedirectResponse("/patients", status_code=303)


@router.get("/patients", response_class=HTMLResponse)
def patients_page(request: Request, user: web.User) -> Response:
    state = web.state(request)
    overview = patients_overview(state.store.engine)
    state.accounts.audit(user.username, web.client(request), "view", "patients list")
    return web.page(
        request,
        "patients.html",
        user=user,
        patients=overview,
        unassigned=unassigned_devices(state.store.engine),
        min_wear_s=MIN_WEAR_S_PER_DAY,
    )


@router.post("/devices/{device_id}/assign")
def assign(
    request: Request,
    user: web.User,
    device_id: web.DeviceId,
    patient_code: Annotated[str, Form()] = "",  # an empty code is refused after CSRF
    csrf_token: web.CsrfField = "",
) -> Response:
    web.check_csrf(user, csrf_token)
    state = web.state(request)
    code = patient_code.strip()
    try:  # the web view links unassigned hubs only; moving one is a deliberate CLI step
        previous = state.store.assign_device(device_id, code)
    except ClinicStoreError as exc:
        return web.error(request, 400, str(exc), user)
    detail = f"device {device_id}, " + (f"already {previous}" if previous else "unassigned before")
    state.accounts.audit(user.username, web.client(request), "assign", detail, code)
    return RedirectResponse(f"/patients/{quote(code)}", status_code=303)


@router.get("/patients/{code}", response_class=HTMLResponse)
def patient_page(
    request: Request,
    user: web.User,
    code: str,
    start: web.From = None,
    to: str | None = None,
    session: str | None = None,
    compare: str | None = None,
    show_all: Annotated[bool, Query(alias="all")] = False,
) -> Response:
    history = web.history(request, code, start, to)
    days = web.days_of(request, history)
    state = web.state(request)
    context = patient_context(history, session, compare, state.plot_cache, days, state.plot_workers)
    web.state(request).accounts.audit(
        user.username, web.client(request), "view", f"patient page ({history.period.label})", code
    )
    latest_first = history.sessions[::-1]
    shown = latest_first if show_all else latest_first[:SESSIONS_SHOWN]
    return web.page(
        request,
        "patient.html",
        user=user,
        h=history,
        shown=shown,
        show_all=show_all,
        query=history.period.query(),
        **context,
    )


@router.get("/patients/{code}/days", response_class=HTMLResponse)
def days_page(
    request: Request,
    user: web.User,
    code: str,
    start: web.From = None,
    to: str | None = None,
    show_all: Annotated[bool, Query(alias="all")] = False,
) -> Response:
    """Daily monitoring: the patient's days of ordinary wear, apart from the guided tests."""
    history = web.history(request, code, start, to, results=False)  # the tests are not shown
    days = web.days_of(request, history)
    state = web.state(request)
    plots_shown = days_context(history, days, state.plot_cache, state.plot_workers)
    web.state(request).accounts.audit(
        user.username,
        web.client(request),
        "view",
        f"daily monitoring ({history.period.label})",
        code,
    )
    return web.page(
        request, "days.html", user=user, h=history, daily=days, show_all=show_all,
        query=history.period.query(), **plots_shown,
    )  # fmt: skip


@router.get("/patients/{code}/sessions/{device_id}/{session_id}", response_class=HTMLResponse)
def session_page(
    request: Request, user: web.User, code: str, device_id: web.DeviceId, session_id: str
) -> Response:
    state = web.state(request)
    detail = session_detail(state.store.engine, device_id, session_id)
    if detail.patient_code != code:
        raise NotFoundError(f"session {session_id!r}: not a session of patient {code!r}")
    state.accounts.audit(user.username, web.client(request), "view", f"session {session_id}", code)
    envelope = plots.envelope_svg(detail.directions, "this session") if detail.directions else None
    return web.page(
        request,
        "session.html",
        user=user,
        code=code,
        d=detail,
        envelope_svg=envelope,
        summary_json=json.dumps(detail.summary, indent=1),
    )


@router.post("/patients/{code}/sessions/{device_id}/{session_id}/review")
def review(
    request: Request,
    user: web.User,
    code: str,
    device_id: web.DeviceId,
    session_id: str,
    csrf_token: web.CsrfField = "",
) -> Response:
    web.check_csrf(user, csrf_token)
    state = web.state(request)
    if session_patient(state.store.engine, device_id, session_id) != code:
        raise NotFoundError(f"session {session_id!r}: not a session of patient {code!r}")
    state.accounts.mark_reviewed(device_id, session_id, user.username)
    state.accounts.audit(
        user.username, web.client(request), "review", f"session {session_id}", code
    )
    return RedirectResponse(
        f"/patients/{quote(code)}/sessions/{device_id}/{quote(session_id)}", status_code=303
    )
