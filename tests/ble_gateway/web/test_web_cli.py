"""The clinician view's commands as a clinic's IT runs them: accounts, assigning a hub, the audit
log, and `serve` refusing plain HTTP beyond this computer."""

from __future__ import annotations

import http.cookiejar
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ble_gateway.store import ClinicStore, DeviceKey
from ble_gateway.web.accounts import Accounts
from ble_gateway.web.app import LOGIN_CSRF_COOKIE

CERVICAL = str(Path(sys.executable).with_name("cervical"))


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERVICAL, "gateway", *args], input=stdin, capture_output=True, text=True, timeout=120,
        check=False, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip


def test_accounts_assign_and_audit_from_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "clinic.db")
    store = ClinicStore(db)
    store.device_id(DeviceKey("AA:BB:CC:DD:EE:01", "ab" * 16), "2026.1")
    store.close()
    added = run("add-user", "dr.cli", "--db", db, "--password-stdin", stdin="a passphrase here\n")
    assert added.returncode == 0 and "user dr.cli added" in added.stdout
    short = run("add-user", "dr.two", "--db", db, "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    assigned = run("assign", "AA:BB:CC:DD:EE:01", "--patient", "P-7", "--db", db)
    assert assigned.returncode == 0, assigned.stderr
    unknown = run("assign", "AA:BB:CC:DD:EE:99", "--patient", "P-7", "--db", db)
    assert unknown.returncode == 2 and "never synced" in unknown.stderr
    bad_code = run("assign", "AA:BB:CC:DD:EE:01", "--patient", "<script>", "--db", db)
    assert bad_code.returncode == 2 and "patient code" in bad_code.stderr
    audit = run("audit", "--db", db)
    assert "add_user" in audit.stdout and "dr.cli" in audit.stdout
    removed = run("remove-user", "dr.cli", "--db", db)
    assert removed.returncode == 0
    store = ClinicStore(db)
    assert Accounts(store.engine).usernames() == []
    store.close()


def test_a_hub_of_another_patient_moves_only_when_asked_and_the_audit_says_from_whom(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "clinic.db")
    store = ClinicStore(db)
    store.device_id(DeviceKey("AA:BB:CC:DD:EE:01", "ab" * 16), "2026.1")
    store.close()
    assert run("assign", "AA:BB:CC:DD:EE:01", "--patient", "P-1", "--db", db).returncode == 0
    moved = run("assign", "AA:BB:CC:DD:EE:01", "--patient", "P-2", "--db", db)
    assert moved.returncode == 2 and "already belongs to patient P-1" in moved.stderr
    again = run("assign", "AA:BB:CC:DD:EE:01", "--patient", "P-1", "--db", db)
    assert again.returncode == 0  # the same patient again: nothing moves
    forced = run("assign", "AA:BB:CC:DD:EE:01", "--patient", "P-2", "--reassign", "--db", db)
    assert forced.returncode == 0, forced.stderr
    audit = run("audit", "--db", db)
    assert "moved from patient P-1" in audit.stdout


def test_the_audit_shows_stored_names_as_data(tmp_path: Path) -> None:
    """User names come from sign-in attempts: markup and escape sequences in them are shown,
    never interpreted (a '[/bogus]' once crashed the command)."""
    db = str(tmp_path / "clinic.db")
    store = ClinicStore(db)
    accounts = Accounts(store.engine)
    accounts.audit("[/bogus]", "127.0.0.1", "login_failed", "wrong password")
    accounts.audit("[bold red]clinician[/bold red]", "127.0.0.1", "login_failed", "x")
    accounts.audit("\x1b[2Jevil\r", "127.0.0.1", "login_failed", "x")
    store.close()
    audit = run("audit", "--db", db)
    assert audit.returncode == 0, audit.stderr
    assert "[/bogus]" in audit.stdout and "[bold red]clinician[/bold red]" in audit.stdout
    assert "\x1b" not in audit.stdout and "\\x1b[2Jevil\\r" in audit.stdout


def test_serve_refuses_plain_http_beyond_loopback(tmp_path: Path) -> None:
    r = run("serve", "--db", str(tmp_path / "clinic.db"), "--host", "0.0.0.0")
    assert r.returncode == 2 and "needs HTTPS" in r.stderr
    r = run("serve", "--db", str(tmp_path / "c.db"), "--tls-cert", str(tmp_path / "cert.pem"))
    assert r.returncode == 2 and "go together" in r.stderr


def test_serve_does_not_believe_x_forwarded_for_unless_told(tmp_path: Path) -> None:
    """A client naming another address in X-Forwarded-For is throttled and audited under the
    address it connects from (uvicorn's default believes the header from loopback)."""
    db = str(tmp_path / "clinic.db")
    ClinicStore(db).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [CERVICAL, "gateway", "serve", "--db", db, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                opener.open(f"{base}/login", timeout=5).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        token = next(c.value for c in jar if c.name == LOGIN_CSRF_COOKIE)
        form = urllib.parse.urlencode(
            {"username": "nobody", "password": "wrong", "csrf_token": token}
        ).encode()
        request = urllib.request.Request(
            f"{base}/login", data=form, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        with pytest.raises(urllib.error.HTTPError, match="401"):
            opener.open(request, timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)
    store = ClinicStore(db)
    entry = Accounts(store.engine).audit_entries()[0]
    store.close()
    assert entry["action"] == "login_failed" and entry["client"] == "127.0.0.1"


def test_add_user_refuses_what_is_not_a_clinic_store_and_keeps_a_crlf_password(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00garbage" * 100)
    for db in (str(garbage), str(tmp_path), "nosuchscheme://x/y"):
        r = run("add-user", "dr.x", "--db", db, "--password-stdin", stdin="a passphrase here\n")
        assert r.returncode == 2 and "Traceback" not in r.stderr, (db, r.stderr)
        assert "not a usable clinic store" in r.stderr or "is a folder" in r.stderr
    assert garbage.read_bytes() == b"\x00garbage" * 100
    db = str(tmp_path / "clinic.db")
    r = run("add-user", "dr.crlf", "--db", db, "--password-stdin", stdin="a passphrase here\r\n")
    assert r.returncode == 0, r.stderr
    store = ClinicStore(db)
    accounts = Accounts(store.engine)
    assert accounts.authenticate("dr.crlf", "a passphrase here", "local") is not None
    store.close()
