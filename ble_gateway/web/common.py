"""What every route of the clinician view shares: the app's state, the signed-in clinician,
CSRF, parameter types, page rendering and cookies."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ble_gateway.errors import GatewayError
from ble_gateway.store import ClinicStore
from ble_gateway.web.accounts import Accounts, WebSession
from ble_gateway.web.daily import PatientDays, patient_days
from ble_gateway.web.pages import PlotCache
from ble_gateway.web.plot_workers import PlotWorkers, shared_workers
from ble_gateway.web.review import PatientHistory, Period, patient_history

HERE = Path(__file__).parent
SESSION_COOKIE = "cervical_session"
LOGIN_CSRF_COOKIE = "cervical_login_csrf"
PUBLIC_PATHS = ("/login", "/static", "/healthz")


class NotSignedInError(GatewayError):
    """A data route asked for without a live session."""


class CsrfError(GatewayError):
    """A form posted without the session's CSRF token."""


@dataclass
class WebState:
    store: ClinicStore
    accounts: Accounts
    templates: Jinja2Templates
    secure_cookies: bool
    plot_cache: PlotCache = field(default_factory=PlotCache)
    plot_workers: PlotWorkers = field(default_factory=shared_workers)


def state(request: Request) -> WebState:
    web: WebState = request.app.state.web
    return web


def client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def signed_in(request: Request) -> WebSession:
    session = state(request).accounts.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NotSignedInError
    return session


User = Annotated[WebSession, Depends(signed_in)]
CsrfField = Annotated[str, Form()]  # defaults to "": a missing token is a 403, not a 422
From = Annotated[str | None, Query(alias="from")]
# a device number as the store keys it (SQLite integers: below 2**63)
DeviceId = Annotated[int, PathParam(ge=1, lt=2**63)]


def check_csrf(session: WebSession, token: str) -> None:
    if not token or not hmac.compare_digest(session.csrf_token.encode(), token.encode()):
        raise CsrfError


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return state(request).templates.TemplateResponse(request, name, context, status_code=status)


def error(request: Request, status: int, message: str, user: WebSession | None = None) -> Response:
    return page(request, "error.html", status, message=message, user=user)


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=state(request).secure_cookies,
    )


def safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no '//host')."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/patients"


def history(
    request: Request, code: str, start: str | None, end: str | None, results: bool = True
) -> PatientHistory:
    """The patient's history over the period given by the query; ``results``: with the tests'
    assessments and forces (``review.patient_history``)."""
    return patient_history(
        state(request).store.engine, code, Period.parse(start, end), results=results
    )


def days_of(request: Request, history: PatientHistory) -> PatientDays:
    """The patient's days of wear over the history's period (``web.daily``)."""
    ids = [d.id for d in history.devices]
    return patient_days(state(request).store.engine, ids, history.period)
