"""Stage 7: the clinician view. A clinician account and the patient assignment are made with the
product's own commands; the web view starts on localhost as a background process that outlives
the demo (``cervical demo stop`` ends it); the demo then signs in over HTTP like a browser would
and saves the patient's report (PDF), FHIR bundle, tests and days tables and pages into the
output folder.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cervical_demo import scenario
from cervical_demo.processes import Background, DemoProcessError, cervical_command
from cervical_demo.progress import StageReporter
from edge_runtime.common.atomic import atomic_path

LOGIN_FILE = "web-login.txt"
REPORT_PDF = "report.pdf"
FHIR_BUNDLE = "fhir-bundle.json"
SESSIONS_CSV = "sessions.csv"
PATIENT_PAGE = "patient.html"
DAYS_PAGE = "days.html"
DAYS_CSV = "days.csv"
WEB_LOG = "logs/web.log"
STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ClinicResult:
    url: str  # the patient's page
    username: str
    login_file: Path
    exports: dict[str, Path]
    serving: bool


def _run(args: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(
        cervical_command() + args, input=stdin, capture_output=True, text=True, check=False,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise DemoProcessError(
            f"`cervical {' '.join(args)}` failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()}"
        )
    return proc.stdout.strip()


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a
            try:  # port whose last connections linger in TIME_WAIT is free for it
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise DemoProcessError("no free TCP port on 127.0.0.1")


class _Browser:
    """Just enough of a browser: cookies, forms, downloads (the web view needs no JavaScript)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> bytes:
        with self.opener.open(self.base + path, timeout=120) as response:
            return bytes(response.read())

    def sign_in(self, username: str, password: str, next_path: str) -> bytes:
        form = self.get("/login").decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        if token is None:
            raise DemoProcessError("the web view's sign-in page has no form token")
        data = urllib.parse.urlencode(
            {"username": username, "password": password, "csrf_token": token.group(1),
             "next": next_path}
        ).encode()  # fmt: skip
        with self.opener.open(self.base + "/login", data=data, timeout=60) as response:
            return bytes(response.read())


def _wait_until_up(web: Background, base: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        web.check_running()
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise DemoProcessError(f"the web view did not answer on {base}; {web.log}:\n{web.log_tail()}")


def clinician_view(
    out_dir: Path, clinic_db: Path, hub_address: str, port: int, serve: bool,
    stage: StageReporter,
) -> ClinicResult:  # fmt: skip
    db = str(clinic_db)
    _run(["gateway", "assign", hub_address, "--patient", scenario.PATIENT_CODE, "--db", db])
    stage.note(f"hub {hub_address} assigned to patient {scenario.PATIENT_CODE}")
    password = secrets.token_urlsafe(15)  # 20 characters; the web view wants >= 12
    _run(["gateway", "add-user", scenario.CLINICIAN, "--password-stdin", "--db", db],
         stdin=password + "\n")  # fmt: skip
    login_file = out_dir / LOGIN_FILE
    fd = os.open(login_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a secret: 0600
    with os.fdopen(fd, "w") as f:
        f.write(f"user: {scenario.CLINICIAN}\npassword: {password}\n")
    stage.note(f"clinician account '{scenario.CLINICIAN}' (Argon2id); password in {login_file}")

    port = free_port(port)
    base = f"http://127.0.0.1:{port}"
    web = Background(
        out_dir, "web", ["gateway", "serve", "--db", db, "--port", str(port)], out_dir / WEB_LOG
    ).start(detach=True)
    try:
        _wait_until_up(web, base)
        patient = f"/patients/{scenario.PATIENT_CODE}"
        browser = _Browser(base)
        page = browser.sign_in(scenario.CLINICIAN, password, patient)
        if scenario.PATIENT_CODE.encode() not in page:
            raise DemoProcessError(f"{base}{patient} did not show the patient after signing in")
        exports = {
            "patient page": (PATIENT_PAGE, page),
            "report (PDF)": (REPORT_PDF, browser.get(f"{patient}/report.pdf")),
            "FHIR R4 bundle": (FHIR_BUNDLE, browser.get(f"{patient}/fhir.json")),
            "sessions (CSV)": (SESSIONS_CSV, browser.get(f"{patient}/sessions.csv")),
            "daily-monitoring page": (DAYS_PAGE, browser.get(f"{patient}/days")),
            "days (CSV)": (DAYS_CSV, browser.get(f"{patient}/days.csv")),
        }
        written = {}
        for what, (name, body) in exports.items():
            path = out_dir / name
            with atomic_path(path) as tmp:
                tmp.write_bytes(body)
            written[what] = path
            stage.note(f"{what}: {path} ({len(body) / 1024:,.0f} KiB)")
    except BaseException:
        web.stop()
        raise
    if not serve:
        web.stop()
    stage.outcome.note = (
        f"web view on {base} (pid {web.proc.pid if web.proc else '?'})" if serve
        else "web view stopped after the exports (--no-serve)"
    )  # fmt: skip
    return ClinicResult(base + patient, scenario.CLINICIAN, login_file, written, serve)
