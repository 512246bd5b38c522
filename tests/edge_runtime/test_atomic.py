"""The one atomic-write helper: whole file or none, its mode set before it is visible, the
temporary file gone on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge_runtime.common.atomic import atomic_path, write_atomic


def test_a_write_replaces_the_file_whole_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "secret.json"
    write_atomic(target, '{"a": 1}', mode=0o600, durable=True)
    assert target.read_text() == '{"a": 1}' and stat.S_IMODE(os.stat(target).st_mode) == 0o600
    write_atomic(target, b"new", durable=True)  # the default mode: 0666 less the umask
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "data.csv"
    target.write_text("old")

    def interrupted() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["data.csv"]
