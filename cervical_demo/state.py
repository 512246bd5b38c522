"""The output folder's record of itself: which scale it holds and how each stage last ended
(``demo-state.json``), and a lock so two demos never write one folder at once."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cervical_demo.scales import DemoScale
from edge_runtime.common.atomic import atomic_path

STATE_FILE = "demo-state.json"
STATE_FORMAT = "cervical-demo-state/1"
LOCK_FILE = ".demo.lock"


class DemoStateError(RuntimeError):
    """The output folder cannot take this demo; the message says why and what to do."""


class DemoState:
    def __init__(self, out_dir: Path, scale: DemoScale) -> None:
        self.out_dir, self.scale = out_dir, scale
        self.path = out_dir / STATE_FILE
        self.stages: dict[str, dict[str, Any]] = {}
        self._lock_fd: int | None = None

    def open(self) -> DemoState:
        """Lock the folder and check it holds this scale (or nothing yet)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DemoStateError(f"another demo is running in {self.out_dir}") from None
        self._lock_fd = fd
        if self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
                held = saved["scale"]
            except (ValueError, KeyError, TypeError) as exc:
                raise DemoStateError(
                    f"{self.path} is unreadable ({exc}); remove it to start over"
                ) from exc
            # another scale's outputs would be refused or replaced stage by stage: say it once,
            # before anything runs (a changed setting within a scale is caught by its stage)
            if held.get("name") != self.scale.name:
                raise DemoStateError(
                    f"{self.out_dir} holds a '{held.get('name')}' demo "
                    f"({held.get('subjects')} subjects); this is a '{self.scale.name}' demo "
                    f"({self.scale.subjects} subjects): give another --out, or remove "
                    f"{self.out_dir} to start over"
                )
            self.stages = dict(saved.get("stages", {}))
        self.save()
        return self

    def close(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def record(self, stage: str, status: str, wall_s: float, note: str) -> None:
        self.stages[stage] = {
            "status": status,
            "wall_s": round(wall_s, 2),
            "note": note,
            "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.save()

    def save(self) -> None:
        data = {"format": STATE_FORMAT, "scale": self.scale.to_dict(), "stages": self.stages}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(data, indent=1) + "\n")
