"""Clinician accounts, sign-in sessions, sign-in throttling, reviews and the audit log.

Kept in the clinic store's database, in tables of their own (never dropped or rebuilt):

* ``users``: passwords hashed with Argon2id (argon2-cffi's RFC 9106 low-memory profile: 64 MiB,
  3 passes), re-hashed on sign-in when the parameters change.
* ``web_sessions``: only the SHA-256 of each session token is stored, so a copy of the database
  opens no session; each has its own CSRF token; idle sessions end after ``IDLE_TIMEOUT_S``,
  every session after ``MAX_AGE_S``.
* ``login_failures``: a user name with ``MAX_FAILURES_PER_USER`` failed sign-ins in
  ``FAILURE_WINDOW_S`` (or a client with ``MAX_FAILURES_PER_CLIENT``) is refused, even with the
  right password, until the oldest failure leaves the window.
* ``audit_log``: who viewed or exported what, signed in or out, failed to sign in.

Reviews (a clinician marked a session's flags as seen) are clinic data and live with the store's
tables (``ble_gateway.store.reviews``); this module writes them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine

from ble_gateway.errors import GatewayError
from ble_gateway.store import reviews

web_metadata = MetaData()
users = Table(
    "users",
    web_metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("created_utc", String(40), nullable=False),
    Column("last_login_utc", String(40)),
)
web_sessions = Table(
    "web_sessions",
    web_metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_id", Integer, nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_unix_s", Float, nullable=False),
    Column("last_seen_unix_s", Float, nullable=False),
)
login_failures = Table(
    "login_failures",
    web_metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, index=True),
    Column("client", String(64), nullable=False, index=True),
    Column("t_unix_s", Float, nullable=False),
)
audit_log = Table(
    "audit_log",
    web_metadata,
    Column("id", Integer, primary_key=True),
    Column("t_utc", String(40), nullable=False, index=True),
    Column("username", String(64), nullable=False),
    Column("client", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("patient_code", String(64)),
    Column("detail", Text, nullable=False),
)
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
MIN_PASSWORD_CHARS = 12
IDLE_TIMEOUT_S = 30 * 60
MAX_AGE_S = 12 * 3600
FAILURE_WINDOW_S = 15 * 60
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_CLIENT = 20
MAX_NAME_CHARS = 64  # a longer user name or client cannot exist; stored cut to this


class AccountError(GatewayError, ValueError):
    """A user name or password the accounts refuse (names which and why)."""


class LoginThrottledError(GatewayError):
    """Too many failed sign-ins for this user name or client; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class WebSession:
    user_id: int
    username: str
    csrf_token: str
    token_sha256: str


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(
        self,
        engine: Engine,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.hasher, self.clock = engine, hasher or PasswordHasher(), clock
        web_metadata.create_all(engine)

    @functools.cached_property
    def _dummy_hash(self) -> str:
        """Verified against when the user name is unknown, so both paths cost one Argon2 hash
        (made on the first sign-in, not by every command that opens the accounts)."""
        return self.hasher.hash(secrets.token_hex(16))

    # -- users -------------------------------------------------------------------------------
    def add_user(self, username: str, password: str) -> None:
        if not USERNAME.fullmatch(username):
            raise AccountError(
                f"user name {username!r}: 2-64 lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if len(password) < MIN_PASSWORD_CHARS:
            raise AccountError(f"password: at least {MIN_PASSWORD_CHARS} characters")
        with self.engine.begin() as db:
            if db.execute(select(users.c.id).where(users.c.username == username)).first():
                raise AccountError(f"user {username!r} exists already")
            db.execute(
                users.insert().values(
                    username=username,
                    password_hash=self.hasher.hash(password),
                    created_utc=_utc_now(),
                )
            )

    def remove_user(self, username: str) -> None:
        with self.engine.begin() as db:
            user_id = db.execute(select(users.c.id).where(users.c.username == username)).scalar()
            if user_id is None:
                raise AccountError(f"user {username!r}: no such user")
            db.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))
            db.execute(delete(users).where(users.c.id == user_id))

    def usernames(self) -> list[str]:
        with self.engine.connect() as db:
            return list(db.execute(select(users.c.username).order_by(users.c.username)).scalars())

    # -- signing in --------------------------------------------------------------------------
    def authenticate(self, username: str, password: str, client: str) -> int | None:
        """The user's id, or None for a wrong name or password (each failure counted).
        Raises LoginThrottledError while the name or the client is throttled.

        The attempt is counted as a failure *before* the password is checked, in the same
        transaction as the throttle check, and the count is withdrawn on success: concurrent
        wrong passwords cannot all pass the check before any is recorded."""
        now = self.clock()
        username, client = username[:MAX_NAME_CHARS], client[:MAX_NAME_CHARS]
        attempt = self._count_attempt(username, client, now)
        with self.engine.begin() as db:
            row = db.execute(
                select(users.c.id, users.c.password_hash).where(users.c.username == username)
            ).first()
            try:
                self.hasher.verify(row[1] if row else self._dummy_hash, password)
                ok = row is not None
            except (VerificationError, InvalidHashError):
                ok = False
            if not ok or row is None:
                return None
            values: dict[str, str] = {"last_login_utc": _utc_now()}
            if self.hasher.check_needs_rehash(row[1]):
                values["password_hash"] = self.hasher.hash(password)
            db.execute(users.update().where(users.c.id == row[0]).values(**values))
            db.execute(
                delete(login_failures).where(
                    (login_failures.c.username == username) | (login_failures.c.id == attempt)
                )
            )
            return int(row[0])

    def _count_attempt(self, username: str, client: str, now: float) -> int:
        """Record the attempt as a failure and check the limits in one write transaction (the
        insert takes SQLite's write lock first, so concurrent attempts are counted in turn);
        a throttled attempt is not recorded. Returns the attempt's row id."""
        since = now - FAILURE_WINDOW_S
        with self.engine.begin() as db:
            attempt = db.execute(
                login_failures.insert().values(username=username, client=client, t_unix_s=now)
            ).inserted_primary_key[0]  # type: ignore[index]
            db.execute(delete(login_failures).where(login_failures.c.t_unix_s < since))
            for column, value, limit in (
                (login_failures.c.username, username, MAX_FAILURES_PER_USER),
                (login_failures.c.client, client, MAX_FAILURES_PER_CLIENT),
            ):
                times = list(
                    db.execute(
                        select(login_failures.c.t_unix_s)
                        .where(column == value, login_failures.c.id != attempt)
                        .order_by(login_failures.c.t_unix_s.desc())
                        .limit(limit)
                    ).scalars()
                )
                if len(times) >= limit:  # raising rolls the attempt back
                    raise LoginThrottledError(max(1.0, times[-1] + FAILURE_WINDOW_S - now))
            return int(attempt)

    # -- sessions ----------------------------------------------------------------------------
    def open_session(self, user_id: int) -> tuple[str, WebSession]:
        """A new session; returns the token for the cookie (only its hash is stored)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        with self.engine.begin() as db:
            db.execute(
                delete(web_sessions).where(
                    or_(
                        web_sessions.c.last_seen_unix_s < now - IDLE_TIMEOUT_S,
                        web_sessions.c.created_unix_s < now - MAX_AGE_S,
                    )
                )
            )
            db.execute(
                web_sessions.insert().values(
                    token_sha256=_sha256(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    created_unix_s=now,
                    last_seen_unix_s=now,
                )
            )
            username = db.execute(select(users.c.username).where(users.c.id == user_id)).scalar()
        return token, WebSession(user_id, str(username), csrf, _sha256(token))

    def session(self, token: str | None) -> WebSession | None:
        """The live session of a cookie's token (its idle clock restarted), else None."""
        if not token:
            return None
        now, digest = self.clock(), _sha256(token)
        with self.engine.begin() as db:
            row = db.execute(
                select(web_sessions.c.user_id, users.c.username, web_sessions.c.csrf_token)
                .join(users, users.c.id == web_sessions.c.user_id)
                .where(
                    and_(
                        web_sessions.c.token_sha256 == digest,
                        web_sessions.c.last_seen_unix_s >= now - IDLE_TIMEOUT_S,
                        web_sessions.c.created_unix_s >= now - MAX_AGE_S,
                    )
                )
            ).first()
            if row is None:
                return None
            db.execute(
                web_sessions.update()
                .where(web_sessions.c.token_sha256 == digest)
                .values(last_seen_unix_s=now)
            )
        return WebSession(int(row[0]), str(row[1]), str(row[2]), digest)

    def close_session(self, session: WebSession) -> None:
        with self.engine.begin() as db:
            db.execute(
                delete(web_sessions).where(web_sessions.c.token_sha256 == session.token_sha256)
            )

    # -- audit and reviews -------------------------------------------------------------------
    def audit(
        self, username: str, client: str, action: str, detail: str, patient_code: str | None = None
    ) -> None:
        with self.engine.begin() as db:
            db.execute(
                audit_log.insert().values(
                    t_utc=_utc_now(),
                    username=username[:MAX_NAME_CHARS],
                    client=client[:MAX_NAME_CHARS],
                    action=action,
                    patient_code=None if patient_code is None else patient_code[:MAX_NAME_CHARS],
                    detail=detail[:500],
                )
            )

    def audit_entries(self, limit: int = 1000) -> list[dict[str, str | None]]:
        """The latest entries, newest first."""
        with self.engine.connect() as db:
            rows = db.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    def mark_reviewed(self, device_id: int, session_id: str, username: str) -> bool:
        """Close a session's open flags; False when it was reviewed already."""
        with self.engine.begin() as db:
            done = db.execute(
                select(func.count())
                .select_from(reviews)
                .where(reviews.c.device_id == device_id, reviews.c.session_id == session_id)
            ).scalar()
            if done:
                return False
            db.execute(
                reviews.insert().values(
                    device_id=device_id,
                    session_id=session_id,
                    username=username,
                    reviewed_utc=_utc_now(),
                )
            )
            return True
