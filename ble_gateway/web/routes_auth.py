"""Signing in and out (and the health check, which needs no session)."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from ble_gateway.web import common as web
from ble_gateway.web.accounts import LoginThrottledError

router = APIRouter()


@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"ok": True})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    response = web.page(
        request, "login.html", csrf_token=token, next=web.safe_next(next), user=None
    )
    web.set_cookie(request, response, web.LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form()] = "",  # defaults: the CSRF check comes first
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/patients",
    csrf_token: web.CsrfField = "",
) -> Response:
    state, client = web.state(request), web.client(request)
    expected = request.cookies.get(web.LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        raise web.CsrfError
    username = username.strip().lower()
    try:
        user_id = state.accounts.authenticate(username, password, client)
    except LoginThrottledError as exc:
        state.accounts.audit(username, client, "login_throttled", str(exc))
        response = web.page(
            request,
            "login.html",
            429,
            csrf_token=csrf_token,
            next=web.safe_next(next),
            error=f"Too many failed sign-ins. Try again in {exc.retry_after_s / 60:.0f} min.",
            user=None,
        )
        response.headers["Retry-After"] = f"{exc.retry_after_s:.0f}"
        return response
    if user_id is None:
        state.accounts.audit(username, client, "login_failed", "wrong user name or password")
        return web.page(
            request,
            "login.html",
            401,
            csrf_token=csrf_token,
            next=web.safe_next(next),
            error="Wrong user name or password.",
            user=None,
        )
    token, session = state.accounts.open_session(user_id)
    state.accounts.audit(session.username, client, "login", "signed in")
    redirect = RedirectResponse(web.safe_next(next), status_code=303)
    web.set_cookie(request, redirect, web.SESSION_COOKIE, token)
    redirect.delete_cookie(web.LOGIN_CSRF_COOKIE, path="/")
    return redirect


@router.post("/logout")
def logout(request: Request, user: web.User, csrf_token: web.CsrfField = "") -> Response:
    web.check_csrf(user, csrf_token)
    state = web.state(request)
    state.accounts.close_session(user)
    state.accounts.audit(user.username, web.client(request), "logout", "signed out")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web.SESSION_COOKIE, path="/")
    return response
