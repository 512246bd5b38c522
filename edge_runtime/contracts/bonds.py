"""Where both ends of the GATT protocol keep their BLE bonds: bumble's JSON key store, written so
that a bond survives a power cut and stays secret.

bumble's ``JsonKeyStore`` replaces the file through a temporary one, but without ``fsync`` (after
a power cut the new file can be empty, and the hub would no longer know its gateways) and with
the process umask (a 0600 bonds file became world-readable at the first pairing). This store
writes through ``edge_runtime.common.atomic`` with mode 0600, durably.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bumble.keys import JsonKeyStore

from edge_runtime.common.atomic import write_atomic


class DurableJsonKeyStore(JsonKeyStore):
    """``JsonKeyStore`` with private (0600), durable writes (module docstring)."""

    def __init__(self, namespace: str | None, path: Path) -> None:
        super().__init__(namespace, str(path))
        if not path.exists():
            _write_private(path, {})

    async def save(self, db: dict[str, dict[str, dict[str, Any]]]) -> None:
        _write_private(self.filename, db)


def _write_private(path: Path, db: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(db, sort_keys=True, indent=4), mode=0o600, durable=True)
