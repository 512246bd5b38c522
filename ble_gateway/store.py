"""The clinic store: what gateways synced from hubs, in SQLite (WAL) by default, through SQLAlchemy
so a PostgreSQL URL works the same.

Tables:

* ``devices``: one row per hub record store, keyed by (BLE address, store_id): a hub whose
  database was replaced starts a new row instead of colliding with what it sent before;
  ``patient_id`` links it to a patient once a clinician assigns it.
* ``patients``: pseudonymous patients (a clinic-side code; the hub never knows who wears it).
* ``records``: every synced record exactly as the hub stored it; primary key (device, seq), so
  inserting is idempotent: a record synced twice (its ACK was lost with the link) is stored
  once, and a *different* record under a seq already stored is refused loudly.
* ``sessions``: one row per session summary (the summary's main figures as columns).
* ``summaries``: one row per epoch (10 s) summary.

Everything from one sync batch is committed in one transaction, and the gateway acknowledges
records to the hub only after that commit returned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from edge_runtime.contracts.gatt import SyncRecord

metadata = MetaData()

patients = Table(
    "patients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("created_utc", String(40), nullable=False),
)
devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(32), nullable=False),
    Column("store_id", String(32), nullable=False),
    Column("patient_id", Integer, ForeignKey("patients.id")),
    Column("model_version", String(32)),
    Column("first_seen_utc", String(40), nullable=False),
    Column("last_sync_utc", String(40)),
    UniqueConstraint("address", "store_id"),
)
records = Table(
    "records",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("t_utc", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("session_id", String(64)),
    Column("payload", Text, nullable=False),
    Column("received_utc", String(40), nullable=False),
)
sessions = Table(
    "sessions",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("session_id", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("started_utc", String(40)),
    Column("duration_s", Float),
    Column("usable_fraction", Float),
    Column("end_reason", String(32)),
    Column("flagged", JSON),
    Column("model_version", String(32)),
)
summaries = Table(
    "summaries",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("session_id", String(64)),
    Column("start_s", Float),
    Column("end_s", Float),
    Column("usable_fraction", Float),
)


class ClinicStoreError(Exception):
    """The clinic store refused something (names the device and seq)."""


@dataclass(frozen=True)
class DeviceKey:
    address: str
    store_id: str  # hex


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def store_url(location: str | Path) -> str:
    """A SQLAlchemy URL; a plain path means a SQLite file."""
    text = str(location)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


class ClinicStore:
    def __init__(self, location: str | Path) -> None:
        url = store_url(location)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self._insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert

    def close(self) -> None:
        self.engine.dispose()

    # -- devices -----------------------------------------------------------------------------
    def device_id(self, key: DeviceKey, model_version: str | None = None) -> int:
        with self.engine.begin() as db:
            row = db.execute(
                select(devices.c.id).where(
                    devices.c.address == key.address, devices.c.store_id == key.store_id
                )
            ).first()
            if row is not None:
                if model_version:
                    db.execute(
                        devices.update()
                        .where(devices.c.id == row[0])
                        .values(model_version=model_version)
                    )
                return int(row[0])
            result = db.execute(
                devices.insert().values(
                    address=key.address,
                    store_id=key.store_id,
                    model_version=model_version,
                    first_seen_utc=_now(),
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def last_seq(self, device_id: int) -> int:
        with self.engine.connect() as db:
            value = db.execute(
                select(func.max(records.c.seq)).where(records.c.device_id == device_id)
            ).scalar()
        return int(value or 0)

    # -- records -----------------------------------------------------------------------------
    def add_records(self, device_id: int, batch: Sequence[SyncRecord]) -> int:
        """Insert a batch in one transaction; returns how many were new. A record already stored
        must be identical (else ClinicStoreError, and nothing of the batch is stored)."""
        if not batch:
            return 0
        received = _now()
        with self.engine.begin() as db:
            seqs = [r.seq for r in batch]
            existing: dict[int, str] = {
                int(seq): str(payload)
                for seq, payload in db.execute(
                    select(records.c.seq, records.c.payload).where(
                        records.c.device_id == device_id, records.c.seq.in_(seqs)
                    )
                ).all()
            }
            for r in batch:
                if r.seq in existing and existing[r.seq] != r.payload_json:
                    raise ClinicStoreError(
                        f"device {device_id} seq {r.seq}: differs from the copy already stored"
                    )
            new = [r for r in batch if r.seq not in existing]
            if not new:
                return 0
            rows = [
                {
                    "device_id": device_id,
                    "seq": r.seq,
                    "t_utc": r.t_utc,
                    "kind": r.kind,
                    "session_id": r.session_id,
                    "payload": r.payload_json,
                    "received_utc": received,
                }
                for r in new
            ]
            insert = self._insert(records).values(rows)
            db.execute(insert.on_conflict_do_nothing(index_elements=["device_id", "seq"]))
            self._derive(db, device_id, new)
            db.execute(
                devices.update().where(devices.c.id == device_id).values(last_sync_utc=received)
            )
        return len(new)

    def _derive(self, db: Connection, device_id: int, new: Sequence[SyncRecord]) -> None:
        session_rows, epoch_rows = [], []
        for r in new:
            if r.kind not in ("session", "epoch"):
                continue
            try:
                p: dict[str, Any] = json.loads(r.payload_json)
            except ValueError:
                continue  # kept verbatim in records; nothing to derive
            usable = p.get("usable_frames", 0) / max(p.get("frames", 0) or 1, 1)
            if r.kind == "session" and r.session_id:
                session_rows.append(
                    {
                        "device_id": device_id,
                        "session_id": r.session_id,
                        "seq": r.seq,
                        "started_utc": p.get("started_utc"),
                        "duration_s": p.get("duration_s"),
                        "usable_fraction": usable,
                        "end_reason": p.get("end_reason"),
                        "flagged": (p.get("assessment") or {}).get("flagged", []),
                        "model_version": (p.get("model") or {}).get("bundle_version"),
                    }
                )
            elif r.kind == "epoch":
                epoch_rows.append(
                    {
                        "device_id": device_id,
                        "seq": r.seq,
                        "session_id": r.session_id,
                        "start_s": p.get("start_s"),
                        "end_s": p.get("end_s"),
                        "usable_fraction": usable,
                    }
                )
        if session_rows:
            stmt = self._insert(sessions).values(session_rows)
            db.execute(stmt.on_conflict_do_nothing(index_elements=["device_id", "session_id"]))
        if epoch_rows:
            stmt = self._insert(summaries).values(epoch_rows)
            db.execute(stmt.on_conflict_do_nothing(index_elements=["device_id", "seq"]))

    def records(self, device_id: int) -> list[SyncRecord]:
        with self.engine.connect() as db:
            rows = db.execute(
                select(
                    records.c.seq,
                    records.c.t_utc,
                    records.c.kind,
                    records.c.session_id,
                    records.c.payload,
                )
                .where(records.c.device_id == device_id)
                .order_by(records.c.seq)
            ).all()
        return [SyncRecord(*row) for row in rows]

    def count(self, table: Table) -> int:
        with self.engine.connect() as db:
            return int(db.execute(select(func.count()).select_from(table)).scalar() or 0)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
