"""A hub store written by an earlier release still syncs and renders.

``golden/hub-store-record-format-1.db`` is a hub's SQLite record store written by the release of
record format 1 (``write_release_store`` below, run once then: ``python -m
tests.ble_gateway.test_release_store OUT``) and committed; format 2 added the force confidence,
format 3 the session's kind (wear or guided test).
Hubs in the field keep their stores across updates of the gateway and the clinic: whatever
later code reads them must read this file, over BLE, into the clinic store and onto the
clinician's pages. Regenerating the file to make this test pass defeats it; a change of the
record format needs a new RECORD_FORMAT that readers read beside the old, with this file kept.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from ble_gateway.hub_client import RetryPolicy, sync_hub
from ble_gateway.radio import bumble_radio
from ble_gateway.store import ClinicStore
from ble_gateway.web.accounts import Accounts
from ble_gateway.web.synthetic import CALIBRATION, epoch_payload, session_payload
from edge_runtime.ble.radio import VirtualRadio
from edge_runtime.contracts.record_payloads import (
    CalibrationRecord,
    EventRecord,
    HubRecord,
    ModelRecord,
    parse_record,
)
from edge_runtime.hub.storage import HubStore, NewRecord
from tests.ble_gateway.web.web_fixtures import FAST_HASHER, PASSWORD, USER, sign_in, web_app
from tests.edge_runtime.ble.harness import StoreHub, running_hub

GOLDEN_STORE = Path(__file__).parent / "golden" / "hub-store-record-format-1.db"
SESSION_ID = "20261124T093000Z-000003"
STARTED = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
QUICK = RetryPolicy(max_attempts=3, connect_timeout_s=5.0, response_timeout_s=5.0)


def release_records() -> list[tuple[HubRecord, str | None]]:
    """What the hub of record format 1 wrote over one session: its model, a calibration, epochs,
    an event, the session summary (with an assessment that has deficits); no force confidence."""
    rng = np.random.default_rng(7)
    session = session_payload(0, 10, rng, STARTED, "2026.11.24.120000", with_confidence=False)
    epochs: list[tuple[HubRecord, str | None]] = [
        (epoch_payload(rng, 20.0 * i, with_confidence=False), SESSION_ID) for i in range(3)
    ]
    return [
        (ModelRecord("2026.11.24.120000"), None),
        (CalibrationRecord(CALIBRATION, ("the nod was too small (4.0 deg)",)), SESSION_ID),
        *epochs,
        (EventRecord("sensors_unusable", {"from_t_s": 12.5, "to_t_s": 40.0}), SESSION_ID),
        (session, SESSION_ID),
    ]


def write_release_store(path: Path) -> None:
    with HubStore(path) as store:
        store.append_many(
            [NewRecord(r.KIND, r.to_dict(), session_id) for r, session_id in release_records()]
        )


def test_the_release_store_holds_what_this_release_writes(tmp_path: Path) -> None:
    """The committed file (a copy: opening a store may write to it) is read by today's store
    and record readers, record by record."""
    shutil.copyfile(GOLDEN_STORE, tmp_path / "hub.db")
    with HubStore(tmp_path / "hub.db") as store:
        stored = store.records_after(0, limit=1000)
    expected = release_records()
    assert [(s.kind, s.session_id) for s in stored] == [(r.KIND, sid) for r, sid in expected]
    newer = {"format", "kind", "guided_test"}  # format 3 added the session's kind and test
    for s, (record, _) in zip(stored, expected, strict=True):
        read = parse_record(s.kind, s.payload)
        assert {k: v for k, v in read.to_dict().items() if k not in newer} == {
            k: v for k, v in record.to_dict().items() if k not in newer
        }
        assert getattr(read, "kind", None) is None


def test_a_store_from_the_last_release_syncs_and_renders(tmp_path: Path) -> None:
    hub_db = tmp_path / "hub.db"
    shutil.copyfile(GOLDEN_STORE, hub_db)
    clinic = ClinicStore(tmp_path / "clinic.db")

    async def main() -> int:
        radio = VirtualRadio(seed=4)
        with HubStore(hub_db) as store:
            async with running_hub(radio, StoreHub(store), tmp_path / "ble") as identity:
                gateway = bumble_radio(
                    radio.controller(), tmp_path / "gw", passkey=lambda: identity.passkey
                )
                result = await sync_hub(gateway, str(identity.address), clinic, policy=QUICK)
            assert result.new_records == len(release_records()) and store.unsynced_count == 0
        return result.device_id

    device_id = asyncio.run(main())
    clinic.assign_device(device_id, "P-release")
    Accounts(clinic.engine, FAST_HASHER).add_user(USER, PASSWORD)
    with TestClient(web_app(clinic)) as client:
        assert sign_in(client) == 303
        patient = client.get("/patients/P-release?from=2026-11-01&to=2026-11-30")
        assert patient.status_code == 200, patient.text[:500]
        assert SESSION_ID in patient.text
        session = client.get(f"/patients/P-release/sessions/{device_id}/{SESSION_ID}")
        assert session.status_code == 200, session.text[:500]
        assert "deficit" in session.text.lower() and "<svg" in session.text
        assert "not checked" in session.text  # format 1 carried no force confidence
    clinic.close()


if __name__ == "__main__":  # never over the format 1 file (module docstring)
    write_release_store(Path(sys.argv[1]))
