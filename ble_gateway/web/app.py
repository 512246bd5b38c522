"""The clinician web view: server-rendered pages over the clinic store (FastAPI + Jinja2, no
JavaScript), the printable report and the exports.

Access: every route but the sign-in page, the stylesheet and ``/healthz`` needs a signed-in
clinician (a GET without one is redirected to sign-in, anything else gets 401). The session
cookie is HttpOnly and SameSite=Strict (and Secure when served over TLS); every form carries the
session's CSRF token (the sign-in form a double-submit token), a post without a valid one gets
403. Every page view and export is written to the audit log. Any signed-in clinician may see
every patient of this clinic store (one clinic, one store).

Pages send ``Cache-Control: no-store`` (no patient data left in a shared computer's cache) and a
Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from argon2 import PasswordHasher
from fastapi import Depends, FastAPI, Form, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ble_gateway.errors import GatewayError
from ble_gateway.store import ClinicStore, ClinicStoreError
from ble_gateway.web import exports, plots
from ble_gateway.web.accounts import Accounts, LoginThrottledError, WebSession
from ble_gateway.web.pages import PlotCache, patient_context
from ble_gateway.web.review import (
    MIN_WEAR_S_PER_DAY,
    NotFoundError,
    PatientHistory,
    Period,
    ReviewError,
    patient_history,
    patients_overview,
    session_detail,
    session_patient,
    unassigned_devices,
)
from edge_runtime.contracts.rom_assessment import SECTORS

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SESSION_COOKIE = "cervical_session"
LOGIN_CSRF_COOKIE = "cervical_login_csrf"
PUBLIC_PATHS = ("/login", "/static", "/healthz")
CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
MAX_BODY_BYTES = 64 * 1024
SESSIONS_SHOWN = 60  # the patient page lists the latest sessions; "all" lists every one


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


def create_app(
    store: ClinicStore,
    *,
    secure_cookies: bool = False,
    hasher: PasswordHasher | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The web app over ``store``. ``secure_cookies`` when served over HTTPS."""
    app = FastAPI(title="Cervical clinician view", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(label=plots.direction_label, sectors=SECTORS)
    templates.env.filters["minutes"] = lambda s: f"{(s or 0) / 60:.1f}"
    # the report embeds plots as images: WeasyPrint renders SVG images with its SVG engine
    templates.env.filters["svg_data_uri"] = lambda svg: (
        "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    )
    app.state.web = WebState(
        store, Accounts(store.engine, hasher, clock), templates, secure_cookies
    )
    app.add_middleware(_SecurityHeaders)
    app.add_middleware(_BodyLimit)  # outermost: before anything reads a body
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_error_handlers(app)
    _add_routes(app)
    return app


class _BodyLimit:
    """No request body beyond ``MAX_BODY_BYTES`` is read (every form of the view is a few
    hundred bytes): a declared larger one is answered 413 at once, an undeclared one is cut off
    when it passes the limit, before any route parses it or checks the session."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            await _too_large()(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise _BodyTooLargeError  # the route's body parser gives up here
            return message

        async def answer(message: Message) -> None:
            if seen <= MAX_BODY_BYTES:
                await send(message)
            elif message["type"] == "http.response.start":  # whatever the parser made of it
                await _too_large()(scope, receive, send)

        try:
            await self.app(scope, limited, answer)
        except _BodyTooLargeError:
            await _too_large()(scope, receive, send)


def _too_large() -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", "Connection": "close"}
    return PlainTextResponse(f"request body over {MAX_BODY_BYTES} bytes", 413, headers=headers)


class _BodyTooLargeError(GatewayError):
    pass


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return _harden(request, await call_next(request))


def _harden(request: Request, response: Response) -> Response:
    if _state(request).secure_cookies:  # served over HTTPS: browsers keep to it
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    response.headers.update(SECURITY_HEADERS)
    if not request.url.path.startswith("/static"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def signed_in(request: Request) -> WebSession:
    session = _state(request).accounts.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NotSignedInError
    return session


User = Annotated[WebSession, Depends(signed_in)]
CsrfField = Annotated[str, Form()]  # defaults to "": a missing token is a 403, not a 422
From = Annotated[str | None, Query(alias="from")]
# a device number as the store keys it (SQLite integers: below 2**63)
DeviceId = Annotated[int, PathParam(ge=1, lt=2**63)]


def _check_csrf(session: WebSession, token: str) -> None:
    if not token or not hmac.compare_digest(session.csrf_token.encode(), token.encode()):
        raise CsrfError


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return _state(request).templates.TemplateResponse(request, name, context, status_code=status)


def _error(request: Request, status: int, message: str, user: WebSession | None = None) -> Response:
    return _page(request, "error.html", status, message=message, user=user)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotSignedInError)
    async def not_signed_in(request: Request, _exc: NotSignedInError) -> Response:
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return PlainTextResponse("sign in first", status_code=401)

    @app.exception_handler(CsrfError)
    async def csrf(request: Request, _exc: CsrfError) -> Response:
        log.warning(
            "form post without a valid CSRF token from %s to %s", _client(request), request.url.path
        )
        return _error(
            request,
            403,
            "This form has expired or did not come from this site. Reload the page and try again.",
        )

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(ReviewError)
    async def bad_request(request: Request, exc: ReviewError) -> Response:
        return _error(request, 400, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        """A defect: logged with its traceback; the answer says nothing of it and carries the
        security headers like every other (this handler runs outside the middleware)."""
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        page = _error(request, 500, "Something went wrong on the server; it has been logged.")
        return _harden(request, page)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no '//host')."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/patients"


def _history(request: Request, code: str, start: str | None, end: str | None) -> PatientHistory:
    return patient_history(_state(request).store.engine, code, Period.parse(start, end))


def _add_routes(app: FastAPI) -> None:  # one place lists every route
    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:
        token = secrets.token_urlsafe(32)
        response = _page(request, "login.html", csrf_token=token, next=_safe_next(next), user=None)
        _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    @app.post("/login")
    def login(
        request: Request,
        username: Annotated[str, Form()] = "",  # defaults: the CSRF check comes first
        password: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/patients",
        csrf_token: CsrfField = "",
    ) -> Response:
        state, client = _state(request), _client(request)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
            raise CsrfError
        username = username.strip().lower()
        try:
            user_id = state.accounts.authenticate(username, password, client)
        except LoginThrottledError as exc:
            state.accounts.audit(username, client, "login_throttled", str(exc))
            response = _page(
                request,
                "login.html",
                429,
                csrf_token=csrf_token,
                next=_safe_next(next),
                error=f"Too many failed sign-ins. Try again in {exc.retry_after_s / 60:.0f} min.",
                user=None,
            )
            response.headers["Retry-After"] = f"{exc.retry_after_s:.0f}"
            return response
        if user_id is None:
            state.accounts.audit(username, client, "login_failed", "wrong user name or password")
            return _page(
                request,
                "login.html",
                401,
                csrf_token=csrf_token,
                next=_safe_next(next),
                error="Wrong user name or password.",
                user=None,
            )
        token, session = state.accounts.open_session(user_id)
        state.accounts.audit(session.username, client, "login", "signed in")
        redirect = RedirectResponse(_safe_next(next), status_code=303)
        _set_cookie(request, redirect, SESSION_COOKIE, token)
        redirect.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return redirect

    @app.post("/logout")
    def logout(request: Request, user: User, csrf_token: CsrfField = "") -> Response:
        _check_csrf(user, csrf_token)
        state = _state(request)
        state.accounts.close_session(user)
        state.accounts.audit(user.username, _client(request), "logout", "signed out")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/")
    def home(_user: User) -> Response:
        return RedirectResponse("/patients", status_code=303)

    @app.get("/patients", response_class=HTMLResponse)
    def patients_page(request: Request, user: User) -> Response:
        state = _state(request)
        overview = patients_overview(state.store.engine)
        state.accounts.audit(user.username, _client(request), "view", "patients list")
        return _page(
            request,
            "patients.html",
            user=user,
            patients=overview,
            unassigned=unassigned_devices(state.store.engine),
            min_wear_s=MIN_WEAR_S_PER_DAY,
        )

    @app.post("/devices/{device_id}/assign")
    def assign(
        request: Request,
        user: User,
        device_id: DeviceId,
        patient_code: Annotated[str, Form()] = "",  # an empty code is refused after CSRF
        csrf_token: CsrfField = "",
    ) -> Response:
        _check_csrf(user, csrf_token)
        state = _state(request)
        code = patient_code.strip()
        try:  # the web view links unassigned hubs only; moving one is a deliberate CLI step
            previous = state.store.assign_device(device_id, code)
        except ClinicStoreError as exc:
            return _error(request, 400, str(exc), user)
        detail = f"device {device_id}, " + (
            f"already {previous}" if previous else "unassigned before"
        )
        state.accounts.audit(user.username, _client(request), "assign", detail, code)
        return RedirectResponse(f"/patients/{quote(code)}", status_code=303)

    @app.get("/patients/{code}", response_class=HTMLResponse)
    def patient_page(
        request: Request,
        user: User,
        code: str,
        start: From = None,
        to: str | None = None,
        session: str | None = None,
        compare: str | None = None,
        show_all: Annotated[bool, Query(alias="all")] = False,
    ) -> Response:
        history = _history(request, code, start, to)
        context = patient_context(history, session, compare, _state(request).plot_cache)
        _state(request).accounts.audit(
            user.username, _client(request), "view", f"patient page ({history.period.label})", code
        )
        latest_first = history.sessions[::-1]
        shown = latest_first if show_all else latest_first[:SESSIONS_SHOWN]
        return _page(
            request,
            "patient.html",
            user=user,
            h=history,
            shown=shown,
            show_all=show_all,
            query=history.period.query(),
            **context,
        )

    @app.get("/patients/{code}/sessions/{device_id}/{session_id}", response_class=HTMLResponse)
    def session_page(
        request: Request, user: User, code: str, device_id: DeviceId, session_id: str
    ) -> Response:
        state = _state(request)
        detail = session_detail(state.store.engine, device_id, session_id)
        if detail.patient_code != code:
            raise NotFoundError(f"session {session_id!r}: not a session of patient {code!r}")
        state.accounts.audit(user.username, _client(request), "view", f"session {session_id}", code)
        envelope = (
            plots.envelope_svg(detail.directions, "this session") if detail.directions else None
        )
        return _page(
            request,
            "session.html",
            user=user,
            code=code,
            d=detail,
            envelope_svg=envelope,
            summary_json=json.dumps(detail.summary, indent=1),
        )

    @app.post("/patients/{code}/sessions/{device_id}/{session_id}/review")
    def review(
        request: Request,
        user: User,
        code: str,
        device_id: DeviceId,
        session_id: str,
        csrf_token: CsrfField = "",
    ) -> Response:
        _check_csrf(user, csrf_token)
        state = _state(request)
        if session_patient(state.store.engine, device_id, session_id) != code:
            raise NotFoundError(f"session {session_id!r}: not a session of patient {code!r}")
        state.accounts.mark_reviewed(device_id, session_id, user.username)
        state.accounts.audit(
            user.username, _client(request), "review", f"session {session_id}", code
        )
        return RedirectResponse(
            f"/patients/{quote(code)}/sessions/{device_id}/{quote(session_id)}", status_code=303
        )

    @app.get("/patients/{code}/report", response_class=HTMLResponse)
    def report(
        request: Request, user: User, code: str, start: From = None, to: str | None = None
    ) -> Response:
        history = _exported(request, user, code, start, to, "report html")
        return HTMLResponse(_report_html(request, history, user))

    @app.get("/patients/{code}/report.pdf")
    def report_pdf(
        request: Request, user: User, code: str, start: From = None, to: str | None = None
    ) -> Response:
        history = _exported(request, user, code, start, to, "report pdf")
        pdf = exports.report_pdf(_report_html(request, history, user))
        return Response(
            pdf, media_type="application/pdf", headers=_attachment(f"cervical-report-{code}.pdf")
        )

    @app.get("/patients/{code}/sessions.csv")
    def csv_export(
        request: Request, user: User, code: str, start: From = None, to: str | None = None
    ) -> Response:
        history = _exported(request, user, code, start, to, "sessions csv")
        return Response(
            exports.sessions_csv(history),
            media_type="text/csv; charset=utf-8",
            headers=_attachment(f"cervical-sessions-{code}.csv"),
        )

    @app.get("/patients/{code}/fhir.json")
    def fhir_export(
        request: Request, user: User, code: str, start: From = None, to: str | None = None
    ) -> Response:
        history = _exported(request, user, code, start, to, "fhir bundle")
        return Response(
            json.dumps(exports.fhir_bundle(history), indent=1, allow_nan=False),  # FHIR JSON
            media_type="application/fhir+json",
            headers=_attachment(f"cervical-fhir-{code}.json"),
        )


def _exported(
    request: Request, user: WebSession, code: str, start: str | None, end: str | None, what: str
) -> PatientHistory:
    """The history an export is made of, its making written to the audit log."""
    history = _history(request, code, start, end)
    _state(request).accounts.audit(
        user.username, _client(request), "export", f"{what} ({history.period.label})", code
    )
    return history


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_state(request).secure_cookies,
    )


@functools.cache
def _stylesheet() -> str:
    """The report embeds the stylesheet (it travels as one file); read once."""
    return (HERE / "static" / "style.css").read_text()


def _report_html(request: Request, history: PatientHistory, user: WebSession) -> str:
    state = _state(request)
    css = _stylesheet()
    context = patient_context(history, None, None, state.plot_cache)
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
