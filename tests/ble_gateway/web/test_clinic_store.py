"""The clinic store: idempotent on (device, seq), loud about a differing copy, sessions and
epoch summaries derived from the records, and records that do not read quarantined with their
reason without blocking the records after them or any page."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from ble_gateway.store import (
    ClinicStore,
    ClinicStoreError,
    DeviceKey,
    quarantine,
    records,
    session_forces,
    sessions,
    store_meta,
    summaries,
)
from ble_gateway.web.synthetic import epoch_payload, session_payload
from edge_runtime.contracts.gatt import SyncRecord
from tests.ble_gateway.web.web_fixtures import PATIENT, clinic, sign_in, web_app

STARTED = datetime(2026, 11, 24, 10, tzinfo=UTC)


def _epoch(seq: int) -> SyncRecord:
    body = epoch_payload(np.random.default_rng(seq)).to_json()
    return SyncRecord(seq, "2026-11-24T10:00:00.000+00:00", "epoch", "s1", body)


def _session_payload(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return session_payload(1, 10, rng, STARTED, "1.0.0").to_dict()


def _session(seq: int, payload: dict[str, Any], session_id: str = "s1") -> SyncRecord:
    return SyncRecord(
        seq, "2026-11-24T10:00:00.000+00:00", "session", session_id, json.dumps(payload)
    )


def test_inserts_are_idempotent_and_a_differing_copy_is_refused(tmp_path: Path) -> None:
    store = ClinicStore(tmp_path / "clinic.db")
    device = store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "00" * 16), "1.0.0")
    assert store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "00" * 16)) == device
    other = store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "11" * 16))  # a replaced hub database
    assert other != device
    session = _session(3, _session_payload())
    assert store.add_records(device, [_epoch(1), _epoch(2), session]) == 3
    assert store.add_records(device, [_epoch(2), session, _epoch(4)]) == 1  # re-sent: once
    assert [r.seq for r in store.records(device)] == [1, 2, 3, 4]
    assert store.last_seq(device) == 4 and store.last_seq(other) == 0
    changed = SyncRecord(2, "2026-11-24T10:00:00.000+00:00", "epoch", "s1", '{"tampered":1}')
    with pytest.raises(ClinicStoreError, match="seq 2: differs"):
        store.add_records(device, [_epoch(5), changed])
    assert store.last_seq(device) == 4  # the whole batch was refused
    assert store.count(sessions) == 1 and store.count(summaries) == 3
    assert store.count(quarantine) == 0
    store.close()
    # the same file through a SQLAlchemy URL
    again = ClinicStore(f"sqlite:///{tmp_path / 'clinic.db'}")
    assert again.records(device) == store.records(device)
    again.close()


def _broken(change: str) -> dict[str, Any]:
    """A valid session payload with one hostile change (what a hub bug or attacker sends)."""
    p = _session_payload()
    if change == "date_not_iso":
        p["started_utc"] = "yesterday at ten"
    elif change == "date_9999":
        p["started_utc"] = "9999-12-31T23:59:59+00:00"
    elif change == "date_0001":
        p["started_utc"] = "0001-01-01T00:00:00+00:00"
    elif change == "model_list":
        p["model"] = ["1.0.0"]
    elif change == "groups_string":
        p["forces"]["groups"] = "flexion"
    elif change == "mathtext_group":
        p["forces"]["groups"]["$\\foo$"] = p["forces"]["groups"].pop("flexion")
    elif change == "markup_group":
        p["forces"]["groups"]["[bold]x[/bold]"] = p["forces"]["groups"].pop("flexion")
    elif change == "nan_force":
        p["forces"]["groups"]["flexion"]["mean_n"] = float("nan")
    elif change == "unknown_key":
        p["extra"] = 1
    elif change == "missing_key":
        del p["duration_s"]
    elif change == "renamed_key":
        p["usable"] = p.pop("usable_frames")
    elif change == "bool_frames":
        p["frames"] = True
    elif change == "sector_list":
        p["assessment"]["sectors"] = "all"
    return p


CHANGES = (
    "date_not_iso", "date_9999", "date_0001", "model_list", "groups_string", "mathtext_group",
    "markup_group", "nan_force", "unknown_key", "missing_key", "renamed_key", "bool_frames",
    "sector_list",
)  # fmt: skip


@pytest.mark.parametrize("change", CHANGES)
def test_a_record_that_does_not_read_is_quarantined_with_its_key(
    tmp_path: Path, change: str
) -> None:
    store = ClinicStore(tmp_path / "clinic.db")
    device = store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "00" * 16), "1.0.0")
    bad = _session(2, _broken(change), "bad")
    batch = [_epoch(1), bad, _epoch(3), _session(4, _session_payload(1), "good")]
    assert store.add_records(device, batch) == 4  # stored verbatim: the hub may delete its copy
    with store.engine.connect() as db:
        rows = db.execute(select(quarantine.c.seq, quarantine.c.reason)).all()
        derived = db.execute(select(sessions.c.session_id)).scalars().all()
    assert [r[0] for r in rows] == [2]
    assert rows[0][1].startswith("session record: ")
    assert derived == ["good"] and store.count(summaries) == 2
    store.close()


def test_unreadable_json_and_wrong_kinds_are_quarantined(tmp_path: Path) -> None:
    store = ClinicStore(tmp_path / "clinic.db")
    device = store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "00" * 16), "1.0.0")
    t = "2026-11-24T10:00:00.000+00:00"
    batch = [
        SyncRecord(1, t, "epoch", "s1", "{not json"),
        SyncRecord(2, t, "event", None, '{"format": "cervical-hub-record/1", "event": "x"}'),
        SyncRecord(3, t, "session", None, json.dumps(_session_payload())),  # no session id
        SyncRecord(4, t, "model", None, "[1, 2]"),
        SyncRecord(5, t, "epoch", "s1", '{"format": "cervical-hub-record/1", "frames": Infinity}'),
        _epoch(6),
    ]
    assert store.add_records(device, batch) == 6
    with store.engine.connect() as db:
        reasons = dict(db.execute(select(quarantine.c.seq, quarantine.c.reason)).all())
    assert sorted(reasons) == [1, 2, 3, 4, 5]
    assert "not JSON" in reasons[1] and "event: 'x'" in reasons[2]
    assert "session_id" in reasons[3] and "must be an object" in reasons[4]
    assert "Infinity" in reasons[5] and store.count(summaries) == 1
    store.close()


def test_a_store_with_bad_records_from_before_is_healed_on_opening(tmp_path: Path) -> None:
    """Records stored before arrival checks existed: the derived tables are rebuilt (their
    version changed), the bad record is quarantined and every page answers."""
    store = clinic(tmp_path, days=20)
    with store.engine.begin() as db:
        seq = (
            db.execute(
                select(records.c.seq).where(records.c.kind == "session").order_by(records.c.seq)
            )
            .scalars()
            .first()
        )
        db.execute(
            update(records)
            .where(records.c.seq == seq)
            .values(payload=json.dumps(_broken("date_not_iso")))
        )
        db.execute(
            update(store_meta).where(store_meta.c.key == "derived_version").values(value="2")
        )
    store.close()
    store = ClinicStore(tmp_path / "clinic.db")
    assert store.count(quarantine) == 1
    client = TestClient(web_app(store))
    assert sign_in(client) == 303
    assert client.get("/patients").status_code == 200
    page = client.get(f"/patients/{PATIENT.code}")
    assert page.status_code == 200
    assert "1 record(s) synced from this patient" in page.text
    for export in ("report", "report.pdf", "sessions.csv", "fhir.json"):
        assert client.get(f"/patients/{PATIENT.code}/{export}").status_code == 200
    with store.engine.connect() as db:
        groups = db.execute(select(session_forces.c.muscle_group).distinct()).scalars().all()
    assert all("$" not in g for g in groups)
    store.close()


def test_wear_sessions_are_kept_apart_and_never_reported_as_missing_an_assessment(
    tmp_path: Path,
) -> None:
    """A wear session carries no assessment by design: it is stored with its kind, summed (not
    listed) by the review, never counted among the sessions that lack an assessment (an
    incomplete test is counted), and its monitoring block goes into its day."""
    from ble_gateway.web.daily import read_days
    from ble_gateway.web.review import patient_history
    from ble_gateway.web.synthetic import guided_test_result, wear_session_payload

    store = ClinicStore(tmp_path / "clinic.db")
    device = store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "00" * 16), "1.0.0")
    store.assign_device(device, PATIENT.code)
    rng = np.random.default_rng(4)
    wear = [wear_session_payload(rng, STARTED, "1.0.0", 0.5, 900.0) for _ in range(2)]
    undone = guided_test_result(False)
    incomplete = _session_payload(1) | {
        "guided_test": undone.to_dict(), "assessment": None, "assessment_note": undone.words(),
    }  # fmt: skip
    store.add_records(
        device, [_session(1, wear[0].to_dict(), "w1"), _session(2, _session_payload(2), "t1")]
    )
    history = patient_history(store.engine, PATIENT.code)
    assert [s.kind for s in history.sessions] == ["test"] and history.wear.sessions == 1
    listed = patient_history(store.engine, PATIENT.code, include_wear=True).sessions
    assert sorted(s.kind or "" for s in listed) == ["test", "wear"]
    assert not any("without a range-of-motion assessment" in w for w in history.warnings())
    (first,) = read_days(store.engine, [device])
    assert first.sessions == 1 and first.wear_s == wear[0].monitoring.wear_s  # type: ignore[union-attr]
    store.add_records(device, [_session(4, wear[1].to_dict(), "w2")])  # the day, synced later
    (day,) = read_days(store.engine, [device])
    blocks = [w.monitoring for w in wear]
    assert day.sessions == 2 and day.wear_s == pytest.approx(sum(b.wear_s for b in blocks))  # type: ignore[union-attr]
    assert day.movements == sum(b.movements for b in blocks)  # type: ignore[union-attr]
    store.add_records(device, [_session(3, incomplete, "t2")])
    warnings = " ".join(patient_history(store.engine, PATIENT.code).warnings())
    assert "1 session(s) without a range-of-motion assessment: 1 x Test incomplete" in warnings
    store.close()
