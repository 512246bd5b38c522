"""The clinic store: idempotent on (device, seq), loud about a differing copy, sessions and
epoch summaries derived from the records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ble_gateway.store import ClinicStore, ClinicStoreError, DeviceKey, sessions, summaries
from edge_runtime.contracts.gatt import SyncRecord
from edge_runtime.contracts.hub_records import RECORD_FORMAT


def _record(seq: int, kind: str = "epoch", payload: dict[str, object] | None = None) -> SyncRecord:
    body = payload or {"frames": 100, "usable_frames": 80, "start_s": 0.0, "end_s": 9.99}
    body = {"format": RECORD_FORMAT, **body}
    return SyncRecord(seq, "2026-11-24T10:00:00.000+00:00", kind, "s1", json.dumps(body))


def test_inserts_are_idempotent_and_a_differing_copy_is_refused(tmp_path: Path) -> None:
    store = ClinicStore(tmp_path / "clinic.db")
    device = store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "00" * 16), "1.0.0")
    assert store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "00" * 16)) == device
    other = store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "11" * 16))  # a replaced hub database
    assert other != device
    session = _record(3, "session", {"frames": 10, "usable_frames": 5, "end_reason": "x"})
    assert store.add_records(device, [_record(1), _record(2), session]) == 3
    assert store.add_records(device, [_record(2), session, _record(4)]) == 1  # re-sent: once
    assert [r.seq for r in store.records(device)] == [1, 2, 3, 4]
    assert store.last_seq(device) == 4 and store.last_seq(other) == 0
    changed = SyncRecord(2, "2026-11-24T10:00:00.000+00:00", "epoch", "s1", '{"tampered":1}')
    with pytest.raises(ClinicStoreError, match="seq 2: differs"):
        store.add_records(device, [_record(5), changed])
    assert store.last_seq(device) == 4  # the whole batch was refused
    assert store.count(sessions) == 1 and store.count(summaries) == 3
    store.close()
    # the same file through a SQLAlchemy URL
    again = ClinicStore(f"sqlite:///{tmp_path / 'clinic.db'}")
    assert again.records(device) == store.records(device)
    again.close()
