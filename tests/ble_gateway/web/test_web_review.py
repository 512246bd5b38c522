"""What the clinician reviews: derived tables rebuilt from the records, adherence and open flags,
warnings, and the exports (FHIR R4 checked by the fhir.resources models, CSV, PDF read back)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from pypdf import PdfReader
from sqlalchemy import update

from ble_gateway.store import (
    ClinicStore,
    days,
    session_directions,
    session_monitoring,
    sessions,
    store_meta,
)
from ble_gateway.web import exports, exports_daily
from ble_gateway.web.accounts import Accounts
from ble_gateway.web.daily import patient_days, read_days
from ble_gateway.web.review import (
    LOW_CONFIDENCE_WARN_FRACTION,
    MIN_WEAR_S_PER_DAY,
    Period,
    SessionRow,
    confidence_words,
    patient_history,
    patients_overview,
)
from ble_gateway.web.synthetic import fill_history
from edge_runtime.contracts.rom_assessment import SECTORS
from tests.ble_gateway.web.web_fixtures import PATIENT, clinic, sign_in, web_app


def test_derived_tables_are_rebuilt_from_the_records(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=40)
    n_sessions, n_directions = store.count(sessions), store.count(session_directions)
    n_days, n_blocks = store.count(days), store.count(session_monitoring)
    tests = len(patient_history(store.engine, PATIENT.code).sessions)
    assert tests > 25 and n_directions >= 10 * (tests - 5) and n_sessions == tests + n_blocks
    assert 25 < n_days <= 40 and n_blocks == 3 * n_days
    before = read_days(store.engine, [1])
    with store.engine.begin() as db:  # an older cache shape, partly lost
        db.execute(update(store_meta).values(value="1"))
        db.execute(sessions.delete())
        db.execute(days.delete())
    store.close()
    again = ClinicStore(tmp_path / "clinic.db")
    assert again.count(sessions) == n_sessions
    assert again.count(session_directions) == n_directions
    assert read_days(again.engine, [1]) == before
    # the review queries need no web accounts (a store that only ever synced)
    bare = ClinicStore(tmp_path / "bare.db")
    fill_history(bare, 5, PATIENT)
    assert len(patient_history(bare.engine, PATIENT.code).sessions) >= 1


def test_adherence_open_flags_and_reviews(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=60, wear_per_day=0)
    today = datetime.now(UTC).date()
    [summary] = patients_overview(store.engine, today)
    history = patient_history(store.engine, PATIENT.code)
    wear_s: dict[date, float] = {}
    for s in history.sessions:
        wear_s[s.started_utc.date()] = wear_s.get(s.started_utc.date(), 0.0) + s.usable_s
    worn = {d for d, usable_s in wear_s.items() if usable_s >= MIN_WEAR_S_PER_DAY}
    assert len(worn) < len(wear_s)  # an uncalibrated day has sessions but no usable data
    for window in (14, 30):
        expected = sum(1 for d in worn if today - timedelta(days=window) < d <= today)
        assert summary.days_with_data[window] == expected
    flagged = [s for s in history.sessions if s.flagged]
    assert flagged and summary.open_flags["right_rotation"] == sum(
        "right_rotation" in s.flagged for s in history.sessions
    )
    # a review closes that session's flags
    first = flagged[0]
    assert Accounts(store.engine).mark_reviewed(first.device_id, first.session_id, "dr.lee")
    [after] = patients_overview(store.engine, today)
    closed = {d: summary.open_flags[d] - after.open_flags.get(d, 0) for d in summary.open_flags}
    assert closed == {d: int(d in first.flagged) for d in summary.open_flags}
    # a device that stopped: nothing in the windows
    [late] = patients_overview(store.engine, today + timedelta(days=45))
    assert late.days_with_data == {14: 0, 30: 0}


def test_period_limits_the_history_and_warnings_name_what_went_wrong(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=120, seed=3)
    everything = patient_history(store.engine, PATIENT.code)
    last_month = Period(date.today() - timedelta(days=29), date.today())
    recent = patient_history(store.engine, PATIENT.code, last_month)
    assert 0 < len(recent.sessions) < len(everything.sessions)
    assert all(s.started_utc.date() >= last_month.start for s in recent.sessions)  # type: ignore[operator]
    warnings = " ".join(everything.warnings())
    if any(s.out_of_range_frames for s in everything.sessions):
        assert "outside the force model's training range" in warnings
    if any(not s.assessed for s in everything.sessions):
        assert "without a range-of-motion assessment" in warnings


def test_fhir_bundle_is_valid_r4_with_units_and_reference_ranges(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=10)
    history = patient_history(store.engine, PATIENT.code)
    document = exports.fhir_bundle(history)
    bundle = Bundle.model_validate(json.loads(json.dumps(document)))  # structure and types
    everything = [
        e.resource for e in bundle.entry if e.resource.get_resource_type() == "Observation"
    ]
    observations = [o for o in everything if o.code.coding[0].system == exports.ROM_CODE_SYSTEM]
    assert len(observations) == len(SECTORS) * len(history.assessed)
    trusted = [o for o in everything if o.code.coding[0].system != exports.ROM_CODE_SYSTEM]
    checked = [s for s in history.sessions if s.low_confidence_fraction is not None]
    assert len(trusted) == len(checked) > 0  # not the uncalibrated sessions: no force frames
    assert trusted[-1].valueQuantity.code == "%" and "trusted" in trusted[-1].note[0].text
    assert float(trusted[-1].valueQuantity.value) == round(
        100 * (1 - (checked[-1].low_confidence_fraction or 0)), 2
    )
    right = [o for o in observations if o.code.coding[0].code == "right_rotation"]
    latest = history.directions[history.assessed[-1].key]["right_rotation"]
    obs: Observation = right[-1]
    assert obs.valueQuantity.code == "deg" and obs.valueQuantity.system == exports.UCUM
    assert float(obs.valueQuantity.value) == round(latest.reached_deg, 2)
    low = float(obs.referenceRange[0].low.value)
    assert low == round(latest.expected_deg - latest.threshold_deg, 2)
    assert obs.interpretation[0].coding[0].code == ("L" if latest.status == "deficit" else "N")
    assert obs.subject.reference == bundle.entry[0].fullUrl  # the Patient
    # stable identities: the same export twice names the same resources
    again = exports.fhir_bundle(history)
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in document["entry"]]


def test_days_export_as_fhir_observations_and_csv_rows(tmp_path: Path) -> None:
    """Each day worn: one valid FHIR Observation (hours worn, the day's figures as components,
    a change marked abnormal and said not to be a deficit) and one CSV row."""
    store = clinic(tmp_path, days=30)
    history = patient_history(store.engine, PATIENT.code)
    daily = patient_days(store.engine, [d.id for d in history.devices])
    bundle = Bundle.model_validate(json.loads(json.dumps(exports.fhir_bundle(history, days=daily))))
    observations = [
        e.resource for e in bundle.entry if e.resource.get_resource_type() == "Observation"
        and e.resource.code.coding[0].system == exports_daily.DAILY_CODE_SYSTEM
    ]  # fmt: skip
    assert len(observations) == len(daily.days) > 20
    first = observations[0]
    assert first.effectivePeriod.start.isoformat() == daily.days[0].day.isoformat()
    assert float(first.valueQuantity.value) == round(daily.days[0].wear_s / 3600, 2)
    codes = {c.code.coding[0].code for c in first.component}
    assert {"movements-per-hour", "flexion-p95", "right_rotation-p50", "load-extension"} <= codes
    changed = [o for o in observations if o.interpretation]
    assert changed and len(changed) == len(daily.flagged_days())  # the recovery is a change
    assert "not a deficit" in changed[0].note[0].text
    rows = list(csv.DictReader(io.StringIO(exports_daily.days_csv(daily))))
    assert len(rows) == len(daily.days)
    assert float(rows[0]["wear_h"]) == round(daily.days[0].wear_s / 3600, 3)
    assert sum(r["judgement"] == "change" for r in rows) == len(changed)
    assert {r["judgement"] for r in rows[:7]} == {"baseline"}


def test_csv_and_pdf_exports(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=30)
    history = patient_history(store.engine, PATIENT.code)
    rows = list(csv.DictReader(io.StringIO(exports.sessions_csv(history))))
    assert len(rows) == len(history.sessions)
    last = history.sessions[-1]
    assert rows[-1]["session_id"] == last.session_id
    assert rows[-1]["flagged"] == " ".join(last.flagged)
    if last.assessed:
        reached = history.directions[last.key]["left_bend"].reached_deg
        assert float(rows[-1]["left_bend_reached_deg"]) == reached
    low = last.low_confidence_fraction
    assert low is not None and float(rows[-1]["low_confidence_force_frames_pct"]) == round(
        100 * low, 2
    )
    assert exports._safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"  # no formula injection
    client = TestClient(web_app(store))
    sign_in(client)
    response = client.get(f"/patients/{PATIENT.code}/report.pdf")
    assert response.headers["content-type"] == "application/pdf"
    pages = PdfReader(io.BytesIO(response.content)).pages
    text = " ".join(" ".join(p.extract_text().split()) for p in pages)  # lines joined
    assert f"patient {PATIENT.code}" in text
    assert "right rotation" in text and "Warnings" in text
    assert "Force confidence: in the median session" in text


def test_the_force_confidence_is_said_in_words_on_every_page(tmp_path: Path) -> None:
    """The share of force frames the hub left out for low confidence: per session on the
    patient and session pages, over the period in the muscle loading, and a warning naming the
    sessions where it exceeds LOW_CONFIDENCE_WARN_FRACTION."""
    store = clinic(tmp_path, days=30, wear_per_day=0)
    history = patient_history(store.engine, PATIENT.code)
    fractions = [s.low_confidence_fraction for s in history.sessions]
    fractions = [f for f in fractions if f is not None]  # not the uncalibrated: no force frames
    assert 0 < len(fractions) < len(history.sessions)
    doubtful = [f for f in fractions if f > LOW_CONFIDENCE_WARN_FRACTION]
    assert doubtful, "the synthetic history has days out of range with more doubtful frames"
    warning = next(w for w in history.warnings() if "of low confidence" in w)
    assert warning.startswith(f"{len(doubtful)} of {len(fractions)} session(s)")
    assert f"{100 * max(fractions):.0f} %" in warning
    client = TestClient(web_app(store))
    sign_in(client)
    page = client.get(f"/patients/{PATIENT.code}?all=true").text
    assert "Forces trusted" in page and warning in page.replace("&#39;", "'")
    assert f"{100 * (1 - fractions[-1]):.0f} %" in page and "not checked" in page
    assert "Force confidence: in the median session" in page
    last = history.sessions[-1]
    detail = client.get(f"/patients/{PATIENT.code}/sessions/{last.device_id}/{last.session_id}")
    assert confidence_words(last.low_confidence_fraction) in detail.text
    assert "of trusted forces (" in detail.text
    assert confidence_words(None).startswith("not checked")


def test_pages_name_each_session_kind_and_a_test_result_in_words(tmp_path: Path) -> None:
    store = clinic(tmp_path, days=30, wear_per_day=0)
    history = patient_history(store.engine, PATIENT.code)
    client = TestClient(web_app(store))
    sign_in(client)
    page = client.get(f"/patients/{PATIENT.code}?all=true").text
    assert "<th>Kind</th>" in page
    assert page.count('<td class="kind">guided test</td>') == len(history.sessions)
    complete = next(s for s in history.sessions if s.assessed)
    undone = next(s for s in history.sessions if not s.assessed)  # calibration never found

    def kind_row(s: SessionRow) -> str:
        detail = client.get(f"/patients/{PATIENT.code}/sessions/{s.device_id}/{s.session_id}")
        return detail.text.split('id="session-kind">')[1].split("</td>")[0]

    assert kind_row(complete) == "guided test: Test complete: every direction was performed."
    assert kind_row(undone).startswith("guided test: Test incomplete (a step timed out")
    assert "No range-of-motion result is given." in kind_row(undone)
