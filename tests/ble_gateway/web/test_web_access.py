"""Access to the clinician view: no patient data without signing in, CSRF on every form,
throttled sign-in, sessions that end, cookie and header hardening, and the audit log."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from ble_gateway.web.accounts import (
    IDLE_TIMEOUT_S,
    MAX_FAILURES_PER_USER,
    AccountError,
    Accounts,
    LoginThrottledError,
    users,
)
from ble_gateway.web.app import LOGIN_CSRF_COOKIE, PUBLIC_PATHS, SESSION_COOKIE, api_routes
from tests.ble_gateway.web.web_fixtures import (
    PASSWORD,
    PATIENT,
    USER,
    clinic,
    csrf_of,
    sign_in,
    web_app,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _concrete(path: str) -> str:
    return (
        path.replace("{code}", PATIENT.code)
        .replace("{device_id}", "1")
        .replace("{session_id}", "s")
    )


def test_every_data_route_needs_a_signed_in_clinician(tmp_path: Path) -> None:
    app = web_app(clinic(tmp_path, days=10))
    client = TestClient(app)
    routes = api_routes()
    data_routes = [r for r in routes if not r.path.startswith(PUBLIC_PATHS)]
    assert len(data_routes) >= 10  # the list below grows with the app
    for route in data_routes:
        path = _concrete(route.path)
        for method in route.methods:
            response = client.request(method, path, follow_redirects=False)
            if method == "GET":
                assert response.status_code == 303, path
                assert response.headers["location"].startswith("/login?next=")
            else:
                assert response.status_code == 401, (method, path)
            assert PATIENT.code not in response.text
    # a forged or stale cookie is no better
    client.cookies.set(SESSION_COOKIE, "forged")
    assert client.get(f"/patients/{PATIENT.code}", follow_redirects=False).status_code == 303


def test_every_form_post_needs_the_sessions_csrf_token(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=20)
    app = web_app(store)
    client = TestClient(app)
    assert sign_in(client) == 303
    page = client.get(f"/patients/{PATIENT.code}")
    session_path = re.search(r'href="(/patients/[^"]+/sessions/\d+/[^"]+)"', page.text)
    assert session_path
    posts = [r for r in api_routes() if "POST" in r.methods]
    for route in posts:
        if route.path == "/login":
            continue
        path = _concrete(route.path)
        if "{" in route.path and "sessions" in route.path:
            path = session_path.group(1) + "/review"
        for token in (None, "wrong"):
            data = {"patient_code": "P-0002"} | ({"csrf_token": token} if token else {})
            response = client.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, (path, token)
    # the sign-in form's own double-submit token
    client.get("/login")
    response = client.post(
        "/login",
        data={"username": USER, "password": PASSWORD, "csrf_token": "not-the-cookie"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    # nothing was changed by the refused posts: still signed in, no new patient
    assert "P-0002" not in client.get("/patients").text


def test_wrong_passwords_are_throttled_even_with_the_right_one_after(tmp_path: Path) -> None:
    clock = Clock()
    store = clinic(tmp_path, days=5)
    client = TestClient(web_app(store, clock=clock))
    for _ in range(MAX_FAILURES_PER_USER):
        assert sign_in(client, password="wrong password!") == 401
    assert sign_in(client) == 429  # the right password, still refused
    client.get("/login")
    refused = client.post(
        "/login",
        data={
            "username": USER,
            "password": PASSWORD,
            "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE) or "",
        },
    )
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in refused.text
    clock.now += 15 * 60 + 1  # the failures leave the window
    assert sign_in(client) == 303
    actions = [e["action"] for e in Accounts(store.engine).audit_entries()]
    assert actions.count("login_failed") == MAX_FAILURES_PER_USER
    assert "login_throttled" in actions and actions[0] == "login"


class SlowHasher(PasswordHasher):
    """Verifying takes a while (as Argon2 at the product's cost does): the window in which
    concurrent attempts could all pass the throttle before any failure is recorded."""

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        time.sleep(0.2)
        return super().verify(hash, password)


def test_throttling_holds_under_eight_concurrent_attempts(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=1)
    accounts = Accounts(store.engine, SlowHasher(time_cost=1, memory_cost=1024, parallelism=1))
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def attempt() -> None:
        start.wait()
        try:
            result = accounts.authenticate(USER, "a wrong passphrase", "10.0.0.1")
            outcomes.append("refused" if result is None else "signed in")
        except LoginThrottledError:
            outcomes.append("throttled")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("refused") == MAX_FAILURES_PER_USER, outcomes
    assert outcomes.count("throttled") == 8 - MAX_FAILURES_PER_USER
    with pytest.raises(LoginThrottledError):  # the right password, still refused
        accounts.authenticate(USER, PASSWORD, "10.0.0.2")
    store.close()


def test_bodies_beyond_the_limit_are_not_read(tmp_path: Path) -> None:
    """A large body is refused before it is parsed or the session checked: declared (413 at
    once) or streamed without a length (cut off at the limit); user names are stored cut."""
    store = clinic(tmp_path, days=1)
    client = TestClient(web_app(store))
    form = {"content-type": "application/x-www-form-urlencoded"}
    declared = client.post("/devices/1/assign", content=b"a=" + b"x" * 200_000, headers=form)
    assert declared.status_code == 413
    assert declared.headers["Content-Security-Policy"].startswith("default-src 'none'")

    def chunks() -> Iterator[bytes]:
        for _ in range(1000):  # 10 MB, if it were all read
            yield b"x" * 10_000

    streamed = client.post("/login", content=chunks(), headers=form)
    assert streamed.status_code == 413
    client.get("/login")
    token = client.cookies.get(LOGIN_CSRF_COOKIE) or ""
    long_name = "u" * 30_000
    data = {"username": long_name, "password": "x", "csrf_token": token}
    assert client.post("/login", data=data).status_code == 401
    entry = Accounts(store.engine).audit_entries()[0]
    assert entry["username"] == "u" * 64
    store.close()


def test_sessions_end_on_logout_and_when_idle(tmp_path: Path) -> None:
    clock = Clock()
    client = TestClient(web_app(clinic(tmp_path, days=5), clock=clock))
    sign_in(client)
    cookie = client.cookies.get(SESSION_COOKIE)
    assert client.get("/patients").status_code == 200
    clock.now += IDLE_TIMEOUT_S + 1
    assert client.get("/patients", follow_redirects=False).status_code == 303
    sign_in(client)
    page = client.get("/patients")
    out = client.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/patients", follow_redirects=False).status_code == 303
    # the old cookie value opens nothing either (only its hash was stored, and it is gone)
    client.cookies.set(SESSION_COOKIE, cookie or "")
    assert client.get("/patients", follow_redirects=False).status_code == 303


def test_cookie_and_header_hardening(tmp_path: Path) -> None:
    app = web_app(clinic(tmp_path, days=5), secure_cookies=True)
    client = TestClient(app, base_url="https://testserver")  # Secure cookies need HTTPS
    client.get("/login")
    token = client.cookies.get(LOGIN_CSRF_COOKIE) or ""
    response = client.post(
        "/login",
        data={
            "username": USER,
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/patients"  # no open redirect
    cookie = next(c for c in response.headers.get_list("set-cookie") if SESSION_COOKIE in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    page = client.get("/login")
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none'
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"  # under TLS only
    plain = TestClient(web_app(clinic(tmp_path / "plain", days=1)))
    assert "Strict-Transport-Security" not in plain.get("/login").headers


def test_views_and_exports_are_audited_and_hub_text_is_escaped(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=30)
    client = TestClient(web_app(store))
    sign_in(client)
    client.get(f"/patients/{PATIENT.code}")
    assert client.get(f"/patients/{PATIENT.code}/fhir.json?from=2000-01-01").status_code == 200
    entries = Accounts(store.engine).audit_entries()
    assert [(e["action"], e["username"]) for e in entries[:2]] == [("export", USER), ("view", USER)]
    assert entries[0]["patient_code"] == PATIENT.code and "fhir" in str(entries[0]["detail"])
    # bad input: a period that is not one, an unknown patient
    bad = client.get(f"/patients/{PATIENT.code}?from=yesterday")
    assert bad.status_code == 400 and "from = &#39;yesterday&#39;: not a date" in bad.text
    assert client.get("/patients/P-9999").status_code == 404


def test_accounts_refuse_weak_input_and_hash_with_argon2id(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=1)
    accounts = Accounts(store.engine, PasswordHasher())  # the product's default parameters
    with pytest.raises(AccountError, match="at least 12 characters"):
        accounts.add_user("dr.short", "short")
    with pytest.raises(AccountError, match="user name"):
        accounts.add_user("Dr Who", "long enough password")
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_user(USER, "long enough password")
    accounts.add_user("dr.kim", "long enough password")
    with store.engine.connect() as db:
        stored = db.execute(users.select().where(users.c.username == "dr.kim")).one()
    assert stored.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "long enough password" not in stored.password_hash


def test_a_hub_of_a_patient_is_not_moved_from_the_web_view(tmp_path: Path) -> None:
    """Assigning over the web links unassigned hubs only: moving a patient's hub (and with it
    the whole history) is refused with the reason, and nothing changes."""
    store = clinic(tmp_path, days=5)
    client = TestClient(web_app(store))
    sign_in(client)
    token = csrf_of(client.get(f"/patients/{PATIENT.code}").text)
    moved = client.post(
        "/devices/1/assign",
        data={"patient_code": "P-0002", "csrf_token": token},
        follow_redirects=False,
    )
    assert moved.status_code == 400 and "already belongs to patient P-0001" in moved.text
    assert "P-0002" not in client.get("/patients").text
    assert client.get(f"/patients/{PATIENT.code}").status_code == 200


@pytest.mark.parametrize("period", ["to=9999-12-31", "from=0001-01-01", "to=1969-12-31"])
def test_dates_beyond_the_store_range_are_refused_not_a_server_error(
    tmp_path: Path, period: str
) -> None:
    store = clinic(tmp_path, days=5)
    client = TestClient(web_app(store))
    sign_in(client)
    base = f"/patients/{PATIENT.code}"
    for path in (base, f"{base}/report", f"{base}/report.pdf", f"{base}/sessions.csv",
                 f"{base}/fhir.json"):  # fmt: skip
        response = client.get(f"{path}?{period}")
        assert response.status_code == 400, (path, response.status_code)
        assert "not between 1970-01-01 and 2199-12-31" in response.text


HOSTILE = ("²:x", "9" * 5000, str(2**63), "-1", "\x00", "../..", "$\\foo$", "[/x]",
           "9999-12-31", "", "a" * 3000, "1:" + "9" * 30)  # fmt: skip


def test_every_route_answers_any_parameter_without_a_server_error(tmp_path: Path) -> None:
    """Every route x hostile path and query values: no 500, and every answer (errors included)
    carries the security headers. Logout is left out (it would end the session)."""
    store = clinic(tmp_path, days=5)
    app = web_app(store)
    client = TestClient(app, raise_server_exceptions=False)
    assert sign_in(client) == 303
    token = csrf_of(client.get(f"/patients/{PATIENT.code}").text)
    routes = [r for r in api_routes() if r.path != "/logout"]
    for route, value in ((r, v) for r in routes for v in HOSTILE):
        quoted = quote(value, safe="") or "x"
        path = re.sub(
            r"\{[a-z_]+\}", quoted.replace("\\", "\\\\"), route.path.replace("{code}", PATIENT.code)
        )
        for query in ("from", "to", "session", "compare", "next", "all"):
            url = f"{path}?{query}={quoted}"
            if "POST" in route.methods:
                data = {"csrf_token": token, "patient_code": value, "username": value}
                response = client.post(url, data=data, follow_redirects=False)
            else:
                response = client.get(url, follow_redirects=False)
            assert response.status_code < 500, (url[:120], response.status_code)
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        if route.path == "/login":
            assert sign_in(client) == 303  # a hostile sign-in attempt does not sign us out
    store.close()
