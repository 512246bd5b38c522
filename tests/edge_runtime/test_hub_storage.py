"""The hub's record store: append-only, sync cursor, retention, full disk, and SIGKILL safety."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from edge_runtime.hub.storage import (
    HubStore,
    NewRecord,
    StorageError,
    StorageFullError,
)


def test_sequence_cursor_and_database_enforced_rules(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.db") as store:
        seqs = store.append_many([NewRecord("epoch", {"i": i}, "s1") for i in range(5)])
        assert seqs == [1, 2, 3, 4, 5] and store.last_seq == 5 and store.unsynced_count == 5
        assert [r.payload["i"] for r in store.records_after(2)] == [2, 3, 4]
        assert store.ack(3) == 3 and store.unsynced_count == 2
        assert store.ack(2) == 3  # an old acknowledgement never moves the cursor back
        with pytest.raises(StorageError, match="beyond the last record"):
            store.ack(9)
        raw = store._db  # the rules hold even for code that bypasses HubStore's methods
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE records SET payload = '{}' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="not yet synced"):
            raw.execute("DELETE FROM records WHERE seq = 4")
        with pytest.raises(sqlite3.IntegrityError, match="forward"):
            raw.execute("UPDATE sync_cursor SET acked_seq = 1")
        with pytest.raises(ValueError, match="strict JSON"):
            store.append("epoch", {"x": float("nan")})
        with pytest.raises(ValueError, match="record kind"):
            NewRecord("nonsense", {})


def test_retention_removes_only_synced_old_records_and_numbers_are_never_reused(
    tmp_path: Path,
) -> None:
    with HubStore(tmp_path / "hub.db") as store:
        store.append_many([NewRecord("epoch", {"i": i}) for i in range(10)])
        store.ack(6)
        assert store.prune_synced(keep_s=3600.0) == 0  # all are younger than an hour
        assert store.prune_synced(keep_s=0.0, now_s=time.time() + 1) == 6
        assert [r.seq for r in store.records_after(0)] == [7, 8, 9, 10]
        assert store.append("event", {"after": "prune"}) == 11


def test_full_disk_raises_clearly_keeps_everything_and_frees_synced_space(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = HubStore(path, max_bytes=120_000)
    written = 0

    def fill() -> None:
        nonlocal written
        for i in range(10_000):
            store.append("epoch", {"i": i, "pad": "x" * 400})
            written += 1

    with pytest.raises(StorageFullError, match="storage full") as info:
        fill()
    assert str(path) in str(info.value) and written > 50
    assert store.integrity() == "ok" and store.last_seq == written  # the failed one rolled back
    store.ack(written // 2)
    store.append("epoch", {"i": "after sync", "pad": "x" * 400})  # synced records made room
    assert store.last_seq == written + 1
    seqs = [r.seq for r in store.records_after(0, 100_000)]
    assert seqs[-1] == written + 1 and set(range(written // 2 + 1, written + 1)) <= set(seqs)
    store.close()


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "hub.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match="not a usable record store"):
        HubStore(bad)


KILLS = 100


def _writer(path: Path, fd: int) -> None:  # runs in the forked child until killed
    store = HubStore(path)
    n = 0
    while True:
        n += 1
        batch = [NewRecord("epoch", {"n": n, "k": k, "pad": "y" * 300}, f"s{n}") for k in range(3)]
        seqs = store.append_many(batch)
        os.write(fd, (json.dumps([seqs[-1], n]) + "\n").encode())


def test_sigkill_during_ingestion_loses_no_committed_record(tmp_path: Path) -> None:
    """>= 100 kills at random moments; after each the database opens cleanly (integrity ok) and
    holds every record whose commit the writer had reported, intact."""
    path = tmp_path / "hub.db"
    committed: dict[int, int] = {}  # last seq of each reported batch -> batch number
    rng = random.Random(5)
    for _ in range(KILLS):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: write until killed
            os.close(read_fd)
            try:
                _writer(path, write_fd)
            finally:
                os._exit(1)
        os.close(write_fd)
        time.sleep(rng.uniform(0.005, 0.06))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(read_fd) as pipe:
            for line in pipe.read().splitlines():
                if line.endswith("]"):
                    seq, n = json.loads(line)
                    committed[seq] = n
        with HubStore(path) as store:
            assert store.integrity() == "ok"
            stored = {r.seq: r for r in store.records_after(0, 10**7)}
        for seq, n in committed.items():
            assert seq in stored, f"committed record {seq} lost"
            assert stored[seq].payload["n"] == n and stored[seq].payload["k"] == 2
            assert stored[seq - 2].payload == {**stored[seq].payload, "k": 0}
    assert len(committed) > KILLS  # the kills did land during ingestion
