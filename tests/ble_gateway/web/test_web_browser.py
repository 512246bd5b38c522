"""End to end in a real headless Chromium (Debian's package, driven by Playwright; nothing is
downloaded): sign in, open a patient, see the envelope plot and a flagged direction, export the
PDF report and the FHIR bundle, sign out. The patient page's screenshot is kept under
test-artifacts/web/."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from pypdf import PdfReader

from ble_gateway.store import ClinicStore
from ble_gateway.web.accounts import Accounts
from tests.ble_gateway.web.web_fixtures import PASSWORD, PATIENT, USER, clinic, web_app
from tests.conftest import REPO

CHROMIUM = os.environ.get("CERVICAL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "web"
# as root in a container, with no network beyond loopback: no sandbox, no background fetches
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ClinicStore]]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)")
    store = clinic(tmp_path, days=200)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(web_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def test_clinician_session_in_a_real_browser(served: tuple[str, ClinicStore]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, store = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(accept_downloads=True).new_page()
        page.goto(f"{base}/patients/{PATIENT.code}")
        expect(page).to_have_url(f"{base}/login?next=%2Fpatients%2F{PATIENT.code}")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", "not the password")
        page.click("#sign-in")
        expect(page.locator("#login-error")).to_contain_text("Wrong user name or password")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("#sign-in")
        expect(page).to_have_url(f"{base}/patients/{PATIENT.code}")  # back where it was asked

        # a session with a flagged direction on the plot (the latest may have recovered)
        flagged = page.locator("#sessions tr", has=page.locator(".flag")).first
        flagged.get_by_role("link", name="on the plot").click()
        expect(page).to_have_url(re.compile(r"session=1:"))
        # the envelope plot is drawn, and the flagged direction is named with degrees and percent
        envelope = page.locator("#envelope-plot svg")
        expect(envelope).to_be_visible()
        assert envelope.bounding_box()["width"] > 300  # type: ignore[index]
        deficit_row = page.locator("#directions tr.deficit").first
        expect(deficit_row).to_contain_text("°")
        expect(deficit_row).to_contain_text("%")
        expect(page.locator("#trend-plot svg")).to_be_visible()
        expect(page.locator("#since-review")).to_contain_text("days worn")
        expect(page.locator("#days tr").nth(1)).to_contain_text("h")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "patient.png"), full_page=True)

        # daily monitoring, apart from the tests: its plots, its days, its CSV
        page.click("#days-link")
        expect(page).to_have_url(re.compile(r"/days"))
        for plot in ("#habitual-plot", "#activity-plot", "#load-plot", "#wear-plot"):
            expect(page.locator(f"{plot} svg")).to_be_visible()
        changed = page.locator("#days tr.change").first
        expect(changed).to_contain_text("change:")  # the restricted start recovers: a change
        page.screenshot(path=str(ARTIFACTS / "days.png"), full_page=True)
        with page.expect_download() as days_download:
            page.click("#export-days-csv")
        rows = Path(days_download.value.path()).read_text().splitlines()
        assert rows[0].startswith("day,sessions,wear_h") and len(rows) > 30
        page.go_back()

        with page.expect_download() as pdf_download:
            page.click("#report-pdf")
        pdf = Path(pdf_download.value.path()).read_bytes()
        text = " ".join(pg.extract_text() for pg in PdfReader(io.BytesIO(pdf)).pages)
        assert pdf.startswith(b"%PDF") and PATIENT.code in text
        with page.expect_download() as fhir_download:
            page.click("#export-fhir")
        bundle = json.loads(Path(fhir_download.value.path()).read_text())
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
        kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
        assert kinds == {"Patient", "Device", "Observation"}
        codes = [e["resource"].get("code", {}).get("coding", [{}])[0] for e in bundle["entry"]]
        daily = [e["resource"] for e, c in zip(bundle["entry"], codes, strict=True)
                 if c.get("code") == "daily-wear"]  # fmt: skip
        assert daily and all(o["valueQuantity"]["unit"] == "h" for o in daily)

        page.click("#logout")
        expect(page).to_have_url(f"{base}/login")
        page.goto(f"{base}/patients/{PATIENT.code}")
        expect(page).to_have_url(f"{base}/login?next=%2Fpatients%2F{PATIENT.code}")
        browser.close()
    actions = [e["action"] for e in Accounts(store.engine).audit_entries()]
    assert actions[:6] == ["logout", "export", "export", "view", "export", "view"]
