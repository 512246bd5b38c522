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
* derived from the records (``ble_gateway.derived``; rebuilt when their shape changes):
  ``sessions`` (one row per session summary, its main figures as columns),
  ``session_directions`` (the ROM assessment per direction), ``session_forces`` (force
  statistics per muscle group), ``summaries`` (one row per 10 s epoch), ``session_monitoring``
  (each wear session's monitoring block), ``days`` (per device and local day, the day's
  summary: its sessions' blocks summed, ``contracts.daily``, redone whenever a block of that day
  arrives) and ``quarantine`` (records that did not read as their kind's payload, with the
  reason; they derive nothing).
* ``reviews``: sessions whose flags a clinician marked as seen (the web view writes them).

Everything from one sync batch is committed in one transaction, and the gateway acknowledges
records to the hub only after that commit returned.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
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
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ble_gateway.derived import DERIVED_VERSION, derive
from ble_gateway.errors import GatewayError
from edge_runtime.common.text import printable
from edge_runtime.contracts.daily import DailySummary, DayFigures, daily_summaries
from edge_runtime.contracts.gatt import SyncRecord
from edge_runtime.contracts.record_fields import Fields
from edge_runtime.contracts.wear_monitoring import DIRECTIONS, WearMonitoring

log = logging.getLogger(__name__)
PATIENT_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")

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
# a clinician marked a session's flags as seen (clinic data: never rebuilt)
reviews = Table(
    "reviews",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("session_id", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("reviewed_utc", String(40), nullable=False),
)

# -- derived from the records (a cache, rebuilt when DERIVED_VERSION changes) ---------------------
sessions = Table(
    "sessions",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("session_id", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("started_utc", String(40), index=True),
    Column("duration_s", Float),
    Column("usable_s", Float),
    Column("usable_fraction", Float),
    Column("end_reason", String(32)),
    Column("assessed", Boolean, nullable=False),
    Column("flagged", Text, nullable=False),  # sector names, space-separated (cheaper than JSON)
    Column("insufficient", Text, nullable=False),
    Column("model_version", String(32)),
    Column("out_of_range_frames", Integer),
    # share of the force frames of low confidence, left out of the forces (None: not scored)
    Column("low_confidence_fraction", Float),
    Column("note", Text),
    Column("kind", String(8)),  # wear or test (None: a hub before guided tests)
)
session_directions = Table(
    "session_directions",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("session_id", String(64), primary_key=True),
    Column("sector", String(32), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("expected_deg", Float),
    Column("reached_deg", Float),
    Column("ratio", Float),
    Column("deficit_deg", Float),
    Column("deficit_pct", Float),
    Column("threshold_deg", Float),
)
session_forces = Table(
    "session_forces",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("session_id", String(64), primary_key=True),
    Column("muscle_group", String(64), primary_key=True),
    Column("mean_n", Float),
    Column("peak_n", Float),
    Column("p90_n", Float),
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
    Column("low_confidence_fraction", Float),
)
session_monitoring = Table(
    "session_monitoring",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("session_id", String(64), primary_key=True),
    Column("day", String(10), nullable=False, index=True),  # the hub's local day (ISO)
    Column("block", Text, nullable=False),  # the WearMonitoring as JSON
)
# a day's figures (contracts.daily.DayFigures) as columns; ``summary`` keeps the exact day
days = Table(
    "days",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("sessions", Integer, nullable=False),
    Column("wear_s", Float, nullable=False),
    Column("flexed_s", Float, nullable=False),
    Column("force_s", Float, nullable=False),
    Column("movements", Integer, nullable=False),
    Column("speed_p50_deg_s", Float),
    Column("speed_p95_deg_s", Float),
    *(
        Column(f"{d}_{what}", Integer if what == "n" else Float)
        for d in DIRECTIONS
        for what in ("n", "p50_deg", "p95_deg")
    ),
    Column("loads", Text, nullable=False),  # group -> [mean share, fraction above each level]
    Column("summary", Text, nullable=False),  # the DailySummary as JSON (exact; merges)
)
# records that did not read as their kind's payload, and why (ble_gateway.derived)
quarantine = Table(
    "quarantine",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("reason", Text, nullable=False),
)
DERIVED_TABLES = (
    sessions, session_directions, session_forces, summaries, session_monitoring, days, quarantine,
)  # fmt: skip
store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


class ClinicStoreError(GatewayError):
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
        """Open (or create) the store; anything that is not one (a folder, a file of something
        else, an unknown URL scheme) is a ClinicStoreError naming it."""
        url = store_url(location)
        shown = printable(str(location), 120)
        try:
            if url.startswith("sqlite:///"):
                path = Path(url.removeprefix("sqlite:///"))
                if path.is_dir():
                    raise ClinicStoreError(f"{shown}: is a folder, not a clinic store")
                path.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url)
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise ClinicStoreError(f"{shown}: not a usable clinic store ({exc})") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
            self._insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
            self._ensure_derived()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines()[0]
            raise ClinicStoreError(f"{shown}: not a usable clinic store ({reason})") from None

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

    def assign_device(
        self, device_id: int, patient_code: str, reassign: bool = False
    ) -> str | None:
        """Link a device to a patient (created on first use). A code is the clinic's pseudonym:
        1-64 letters, digits, '-', '_' or '.'. A device that already belongs to another patient
        is moved (with its whole history) only when ``reassign`` says so; returns the code it
        belonged to before (None: unassigned), for the audit log."""
        if not PATIENT_CODE.fullmatch(patient_code):
            raise ClinicStoreError(
                f"patient code {patient_code[:80]!r}: use 1-64 letters, digits, '-', '_' or '.'"
            )
        with self.engine.begin() as db:
            row = db.execute(
                select(devices.c.id, patients.c.code)
                .select_from(devices.outerjoin(patients, patients.c.id == devices.c.patient_id))
                .where(devices.c.id == device_id)
            ).first()
            if row is None:
                raise ClinicStoreError(f"device {device_id}: not in the clinic store")
            previous: str | None = row[1]
            if previous is not None and previous != patient_code and not reassign:
                raise ClinicStoreError(
                    f"device {device_id} already belongs to patient {previous}; moving it would "
                    f"move that patient's history to {patient_code} (reassign it explicitly)"
                )
            patient = db.execute(select(patients.c.id).where(patients.c.code == patient_code))
            patient_id = patient.scalar()
            if patient_id is None:
                result = db.execute(patients.insert().values(code=patient_code, created_utc=_now()))
                patient_id = result.inserted_primary_key[0]  # type: ignore[index]
            db.execute(
                devices.update().where(devices.c.id == device_id).values(patient_id=patient_id)
            )
            return previous

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
        rows = derive(device_id, list(new))
        for table, values, key in (
            (sessions, rows.sessions, ["device_id", "session_id"]),
            (session_directions, rows.directions, ["device_id", "session_id", "sector"]),
            (session_forces, rows.forces, ["device_id", "session_id", "muscle_group"]),
            (summaries, rows.epochs, ["device_id", "seq"]),
            (session_monitoring, rows.monitoring, ["device_id", "session_id"]),
            (quarantine, rows.quarantine, ["device_id", "seq"]),
        ):
            for at in range(0, len(values), 500):  # SQLite caps the variables of one statement
                stmt = self._insert(table).values(values[at : at + 500])
                db.execute(stmt.on_conflict_do_nothing(index_elements=key))
        self._redo_days(db, device_id, sorted({r["day"] for r in rows.monitoring}))

    def _redo_days(self, db: Connection, device_id: int, touched: list[str]) -> None:
        """Each touched day again from all its sessions' blocks (exact, whatever the order or
        number of syncs the day arrived in)."""
        for at in range(0, len(touched), 200):
            part = touched[at : at + 200]
            blocks = [
                WearMonitoring.read(Fields("session", json.loads(text), "monitoring"))
                for text in db.execute(
                    select(session_monitoring.c.block).where(
                        session_monitoring.c.device_id == device_id,
                        session_monitoring.c.day.in_(part),
                    )
                ).scalars()
            ]
            values = [_day_row(device_id, d) for d in daily_summaries(blocks)]
            if values:
                stmt = self._insert(days).values(values)
                columns = [c for c in values[0] if c not in ("device_id", "day")]
                db.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["device_id", "day"],
                        set_={k: stmt.excluded[k] for k in columns},
                    )
                )

    def _ensure_derived(self) -> None:
        """Rebuild the derived tables from the records when they are of another version."""
        with self.engine.begin() as db:
            value = db.execute(
                select(store_meta.c.value).where(store_meta.c.key == "derived_version")
            ).scalar()
            if value == str(DERIVED_VERSION):
                return
            log.info(
                "clinic store: rebuilding derived tables (version %s -> %d)", value, DERIVED_VERSION
            )
            for table in DERIVED_TABLES:
                table.drop(db, checkfirst=True)
                table.create(db)
            device_ids = [int(d) for d in db.execute(select(devices.c.id)).scalars()]
            for device_id in device_ids:
                last = 0
                while True:
                    batch = [
                        SyncRecord(*row)
                        for row in db.execute(
                            select(
                                records.c.seq,
                                records.c.t_utc,
                                records.c.kind,
                                records.c.session_id,
                                records.c.payload,
                            )
                            .where(records.c.device_id == device_id, records.c.seq > last)
                            .order_by(records.c.seq)
                            .limit(2000)
                        ).all()
                    ]
                    if not batch:
                        break
                    self._derive(db, device_id, batch)
                    last = batch[-1].seq
            db.execute(store_meta.delete().where(store_meta.c.key == "derived_version"))
            db.execute(
                store_meta.insert().values(key="derived_version", value=str(DERIVED_VERSION))
            )

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


def _day_row(device_id: int, summary: DailySummary) -> dict[str, Any]:
    f = DayFigures.of(summary)
    row: dict[str, Any] = {
        "device_id": device_id,
        "day": f.day.isoformat(),
        "sessions": f.sessions,
        "wear_s": f.wear_s,
        "flexed_s": f.flexed_s,
        "force_s": f.force_s,
        "movements": f.movements,
        "speed_p50_deg_s": f.speed_deg_s_by_q[0],
        "speed_p95_deg_s": f.speed_deg_s_by_q[1],
        "loads": json.dumps(f.load),
        "summary": json.dumps(summary.to_dict()),
    }
    for d in DIRECTIONS:
        row[f"{d}_n"] = f.excursions(d)
        row[f"{d}_p50_deg"], row[f"{d}_p95_deg"] = f.range_deg_by_q[d]
    return row


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
