"""Atomic file writes: a hidden temporary file in the target's directory, renamed into place.

A reader (or a re-run after a crash) sees either the complete file or none; the temporary file is
removed on any failure, Ctrl-C included. ``durable`` also survives a power cut: the file and its
folder are flushed to disk before and after the rename (the hub's profile, identity and bonds).
``mode`` sets the file's permissions before it becomes visible (0600 for secrets).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, mode: int | None = None, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` with ``mode`` (default:
    0666 less the umask, as a plain ``open`` would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)  # mkstemp made it 0600: nothing is readable before the mode is set
    tmp = Path(tmp_name)
    try:
        yield tmp
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(
    path: Path, data: bytes | str, mode: int | None = None, durable: bool = False
) -> None:
    """``path`` holds ``data`` (text as UTF-8), written atomically (``atomic_path``)."""
    with atomic_path(path, mode, durable) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


def _fsync(path: Path, flags: int) -> None:
    with contextlib.suppress(OSError):  # a folder some file systems cannot fsync
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
