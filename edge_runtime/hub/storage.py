"""The hub's record store: one SQLite file in WAL mode, append-only, with a sync cursor.

Every result the hub produces (epoch summaries, session summaries, calibrations, events) is a
*record*: a monotonic sequence number (``AUTOINCREMENT``, so a number is never reused even after
retention deletes rows), a kind, the session it belongs to, a UTC time and a JSON payload. The
gateway syncs records in sequence order and acknowledges them; the cursor only moves forward.

The rules a patient's data depends on are enforced by the database itself, not only by this
module, so no code path (or a future one) can break them:

* records are never updated (trigger ``records_append_only``);
* a record above the sync cursor is never deleted (trigger ``records_keep_unsynced``): retention
  frees space only from acknowledged records;
* the cursor never moves backwards, nor past the last record.

Each store has a random 16-byte ``store_id`` fixed at creation: a gateway keys what it syncs on
(hub, store_id, seq), so a hub whose database was replaced never collides with what it sent
before.

Durability: WAL with ``synchronous=FULL``, so a committed record survives a killed process and a
power cut. A full disk (SQLITE_FULL, including ``max_bytes``) raises ``StorageFullError`` after
one attempt to free space from synced records; nothing stored is touched and the transaction is
rolled back whole.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_runtime.contracts.gatt import SyncRecord
from edge_runtime.contracts.hub_records import RECORD_KINDS
from edge_runtime.errors import HubError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    t_utc TEXT NOT NULL,
    kind TEXT NOT NULL,
    session_id TEXT,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    acked_seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO sync_cursor (id, acked_seq) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS store_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    store_id BLOB NOT NULL,
    last_sync_unix_s INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO store_meta (id, store_id) VALUES (1, randomblob(16));
CREATE TRIGGER IF NOT EXISTS records_append_only BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_keep_unsynced BEFORE DELETE ON records
WHEN OLD.seq > (SELECT acked_seq FROM sync_cursor WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'record not yet synced'); END;
CREATE TRIGGER IF NOT EXISTS cursor_forward_only BEFORE UPDATE ON sync_cursor
WHEN NEW.acked_seq < OLD.acked_seq
  OR NEW.acked_seq > (SELECT COALESCE(MAX(seq), 0) FROM records)
BEGIN SELECT RAISE(ABORT, 'sync cursor must move forward, up to the last record'); END;
"""


class StorageError(HubError):
    """The record store cannot do what was asked (names the database file)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class StorageFullError(StorageError):
    """The disk (or the configured size limit) is full; nothing stored was changed."""


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    t_utc: str
    kind: str
    session_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class NewRecord:
    kind: str
    payload: Mapping[str, Any]
    session_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in RECORD_KINDS:
            raise ValueError(f"record kind {self.kind!r}, known: {RECORD_KINDS}")


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class HubStore:
    """The record store (module docstring). Not thread-safe: one owner task writes."""

    def __init__(self, path: Path, max_bytes: int | None = None, timeout_s: float = 10.0) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(path, f"cannot open the record store: {exc}") from exc
        try:
            self._refuse_foreign()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if max_bytes is not None:
                page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
                self._db.execute(f"PRAGMA max_page_count={max(8, max_bytes // page)}")
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version not in (0, SCHEMA_VERSION):
                raise StorageError(
                    path, f"schema version {version}; this software reads {SCHEMA_VERSION}"
                )
            self._db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
            )
        except StorageError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StorageError(path, f"not a usable record store: {exc}") from exc

    def _refuse_foreign(self) -> None:
        """A SQLite file of something else is left exactly as it was (no tables added, no
        journal mode changed)."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        tables = {
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if version == 0 and tables:
            shown = ", ".join(sorted(tables)[:5])
            raise StorageError(self.path, f"a SQLite database of something else (tables: {shown})")

    # -- context management ------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLITE_FULL has already rolled back
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------
    def append(self, kind: str, payload: Mapping[str, Any], session_id: str | None = None) -> int:
        return self.append_many([NewRecord(kind, payload, session_id)])[-1]

    def append_many(self, records: Sequence[NewRecord]) -> list[int]:
        """Append records in one transaction (all or none); returns their sequence numbers."""
        if not records:
            return []
        rows = [(_utc_now(), r.kind, r.session_id, _encode(r.payload)) for r in records]
        try:
            return self._insert(rows)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise StorageError(self.path, f"append failed: {exc}") from exc
        freed = self.prune_synced(keep_s=0.0)
        if freed:
            log.warning(
                "%s: storage full; removed %d synced record(s) to make room", self.path, freed
            )
            try:
                return self._insert(rows)
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise StorageError(self.path, f"append failed: {exc}") from exc
        raise StorageFullError(
            self.path,
            f"storage full: {len(rows)} record(s) not written; {self.unsynced_count} unsynced "
            "record(s) are kept until the gateway syncs them",
        )

    def _insert(self, rows: list[tuple[str, str, str | None, str]]) -> list[int]:
        with self._transaction():
            seqs = []
            for row in rows:
                cur = self._db.execute(
                    "INSERT INTO records (t_utc, kind, session_id, payload) VALUES (?, ?, ?, ?)",
                    row,
                )
                seqs.append(int(cur.lastrowid or 0))
        return seqs

    def ack(self, seq: int) -> int:
        """Move the sync cursor forward to ``seq`` (records up to it are synced); returns it."""
        if seq <= self.acked_seq:
            return self.acked_seq
        if seq > self.last_seq:
            raise StorageError(self.path, f"ack of {seq} beyond the last record {self.last_seq}")
        try:
            with self._transaction():
                self._db.execute("UPDATE sync_cursor SET acked_seq = ? WHERE id = 1", (seq,))
                self._db.execute(
                    "UPDATE store_meta SET last_sync_unix_s = ? WHERE id = 1", (int(time.time()),)
                )
        except sqlite3.Error as exc:
            raise StorageError(self.path, f"cannot move the sync cursor to {seq}: {exc}") from exc
        return seq

    def prune_synced(self, keep_s: float, now_s: float | None = None) -> int:
        """Delete synced records older than ``keep_s`` seconds; unsynced ones are never deleted."""
        now = time.time() if now_s is None else now_s
        cutoff = datetime.fromtimestamp(now - keep_s, UTC).isoformat(timespec="milliseconds")
        with self._transaction():
            cur = self._db.execute(
                "DELETE FROM records WHERE seq <= (SELECT acked_seq FROM sync_cursor WHERE id = 1)"
                " AND t_utc <= ?",
                (cutoff,),
            )
        return int(cur.rowcount)

    # -- reading -----------------------------------------------------------------------------
    def records_after(self, seq: int, limit: int = 100) -> list[StoredRecord]:
        return [
            StoredRecord(r.seq, r.t_utc, r.kind, r.session_id, json.loads(r.payload_json))
            for r in self.sync_records_after(seq, limit)
        ]

    def sync_records_after(self, seq: int, limit: int) -> list[SyncRecord]:
        """Records after ``seq`` in order, payloads exactly as stored (what the gateway gets)."""
        rows = self._db.execute(
            "SELECT seq, t_utc, kind, session_id, payload FROM records WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [SyncRecord(*row) for row in rows]

    def count_after(self, seq: int) -> int:
        return int(
            self._db.execute("SELECT COUNT(*) FROM records WHERE seq > ?", (seq,)).fetchone()[0]
        )

    @property
    def store_id(self) -> bytes:
        return bytes(self._db.execute("SELECT store_id FROM store_meta").fetchone()[0])

    @property
    def last_sync_unix_s(self) -> int:
        return int(self._db.execute("SELECT last_sync_unix_s FROM store_meta").fetchone()[0])

    @property
    def database_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        return int(pages) * int(self._db.execute("PRAGMA page_size").fetchone()[0])

    def records_of_kind(self, kind: str) -> list[StoredRecord]:
        rows = self._db.execute(
            "SELECT seq, t_utc, kind, session_id, payload FROM records WHERE kind = ? ORDER BY seq",
            (kind,),
        ).fetchall()
        return [StoredRecord(s, t, k, sid, json.loads(p)) for s, t, k, sid, p in rows]

    @property
    def acked_seq(self) -> int:
        return int(self._db.execute("SELECT acked_seq FROM sync_cursor").fetchone()[0])

    @property
    def last_seq(self) -> int:
        # sqlite_sequence keeps the highest seq ever issued, even when retention removed it
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) if row else 0

    @property
    def unsynced_count(self) -> int:
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM records WHERE seq > (SELECT acked_seq FROM sync_cursor)"
            ).fetchone()[0]
        )

    def integrity(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])


def _encode(payload: Mapping[str, Any]) -> str:
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # NaN/inf must be None in a payload: JSON has no NaN
        raise ValueError(f"record payload is not strict JSON: {exc}") from exc


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)
