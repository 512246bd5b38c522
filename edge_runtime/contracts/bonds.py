"""Where both ends of the GATT protocol keep their BLE bonds: bumble's JSON key store, written so
that a bond survives a power cut and stays secret.

bumble's ``JsonKeyStore`` replaces the file through a temporary one, but without ``fsync`` (after
a power cut the new file can be empty, and the hub would no longer know its gateways) and with
the process umask (a 0600 bonds file became world-readable at the first pairing). This store
writes the temporary file with mode 0600, flushes it and its directory to disk, then replaces.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from bumble.keys import JsonKeyStore


class DurableJsonKeyStore(JsonKeyStore):
    """``JsonKeyStore`` with private (0600), durable writes (module docstring)."""

    def __init__(self, namespace: str | None, path: Path) -> None:
        super().__init__(namespace, str(path))
        if not path.exists():
            _write_private(path, {})

    async def save(self, db: dict[str, dict[str, dict[str, Any]]]) -> None:
        _write_private(self.filename, db)


def _write_private(path: Path, db: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(db, f, sort_keys=True, indent=4)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)  # an earlier, wider-moded temporary file keeps its mode on O_TRUNC
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # the rename itself reaches the disk
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
