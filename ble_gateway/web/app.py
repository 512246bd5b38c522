"""The clinician web view: server-rendered pages over the clinic store (FastAPI + Jinja2, no
JavaScript), the printable report and the exports. Routes: ``routes_auth`` (sign-in),
``routes_patients`` (pages, reviews, assigning hubs), ``routes_exports``; shared request helpers
in ``common``; headers and body limits in ``hardening``.

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
import logging
import time
from collections.abc import Callable
from urllib.parse import quote

from argon2 import PasswordHasher
from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ble_gateway.store import ClinicStore
from ble_gateway.web import common as web
from ble_gateway.web import plots, routes_auth, routes_exports, routes_patients
from ble_gateway.web.accounts import Accounts
from ble_gateway.web.common import LOGIN_CSRF_COOKIE, PUBLIC_PATHS, SESSION_COOKIE
from ble_gateway.web.hardening import MAX_BODY_BYTES, BodyLimit, SecurityHeaders, harden
from ble_gateway.web.review import (
    LOW_CONFIDENCE_WARN_FRACTION,
    NotFoundError,
    ReviewError,
    confidence_words,
)
from ble_gateway.web.words import guided_test_words, session_kind_words
from edge_runtime.contracts.rom_assessment import SECTORS

__all__ = [
    "LOGIN_CSRF_COOKIE", "MAX_BODY_BYTES", "PUBLIC_PATHS", "SESSION_COOKIE", "api_routes",
    "create_app",
]  # fmt: skip
log = logging.getLogger(__name__)
ROUTERS = (routes_auth.router, routes_patients.router, routes_exports.router)  # every route


def create_app(
    store: ClinicStore,
    *,
    secure_cookies: bool = False,
    hasher: PasswordHasher | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The web app over ``store``. ``secure_cookies`` when served over HTTPS."""
    app = FastAPI(title="Cervical clinician view", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=web.HERE / "templates")
    templates.env.globals.update(
        label=plots.direction_label,
        sectors=SECTORS,
        low_confidence_warn=LOW_CONFIDENCE_WARN_FRACTION,
    )
    templates.env.filters["minutes"] = lambda s: f"{(s or 0) / 60:.1f}"
    templates.env.filters["confidence_words"] = confidence_words
    templates.env.filters["session_kind"] = session_kind_words
    templates.env.filters["guided_test_words"] = guided_test_words
    # the report embeds plots as images: WeasyPrint renders SVG images with its SVG engine
    templates.env.filters["svg_data_uri"] = lambda svg: (
        "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    )
    app.state.web = web.WebState(
        store, Accounts(store.engine, hasher, clock), templates, secure_cookies
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit)  # outermost: before anything reads a body
    app.mount("/static", StaticFiles(directory=web.HERE / "static"), name="static")
    _add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


def api_routes() -> list[APIRoute]:
    """Every route of the view (what the access tests walk), from the routers it includes."""
    return [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(web.NotSignedInError)
    async def not_signed_in(request: Request, _exc: web.NotSignedInError) -> Response:
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return PlainTextResponse("sign in first", status_code=401)

    @app.exception_handler(web.CsrfError)
    async def csrf(request: Request, _exc: web.CsrfError) -> Response:
        log.warning(
            "form post without a valid CSRF token from %s to %s",
            web.client(request),
            request.url.path,
        )
        return web.error(
            request,
            403,
            "This form has expired or did not come from this site. Reload the page and try again.",
        )

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Response:
        return web.error(request, 404, str(exc))

    @app.exception_handler(ReviewError)
    async def bad_request(request: Request, exc: ReviewError) -> Response:
        return web.error(request, 400, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        """A defect: logged with its traceback; the answer says nothing of it and carries the
        security headers like every other (this handler runs outside the middleware)."""
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        page = web.error(request, 500, "Something went wrong on the server; it has been logged.")
        return harden(request, page)
