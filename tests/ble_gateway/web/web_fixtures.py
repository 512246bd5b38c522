"""A clinic store with a synthetic patient history, the web app over it, and signed-in clients."""

from __future__ import annotations

import re
from pathlib import Path

from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ble_gateway.store import ClinicStore
from ble_gateway.web.accounts import Accounts
from ble_gateway.web.app import LOGIN_CSRF_COOKIE, create_app
from ble_gateway.web.synthetic import SyntheticPatient, fill_history

# Argon2id at test strength (the product's default costs 64 MiB per hash; a test checks it)
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
USER, PASSWORD = "dr.lee", "a long enough passphrase"
PATIENT = SyntheticPatient()


def clinic(tmp_path: Path, days: int = 90, seed: int = 0, wear_per_day: int = 3) -> ClinicStore:
    """A patient's ``days``: a guided test and ``wear_per_day`` wear sessions each day worn."""
    store = ClinicStore(tmp_path / "clinic.db")
    fill_history(store, days, PATIENT, seed=seed, wear_sessions_per_day=wear_per_day)
    Accounts(store.engine, FAST_HASHER).add_user(USER, PASSWORD)
    return store


def web_app(store: ClinicStore, **kwargs: object) -> FastAPI:
    return create_app(store, hasher=FAST_HASHER, **kwargs)  # type: ignore[arg-type]


def sign_in(client: TestClient, user: str = USER, password: str = PASSWORD) -> int:
    """Sign in through the form as a browser would; returns the status of the post."""
    client.get("/login")
    token = client.cookies.get(LOGIN_CSRF_COOKIE) or ""
    response = client.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": token, "next": "/patients"},
        follow_redirects=False,
    )
    return response.status_code


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page carries a CSRF token"
    return found.group(1)
