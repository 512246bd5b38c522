"""Reading a user's file safely: a regular file (not a directory, device or pipe: ``/dev/zero``
would never end), of bounded size, decoded as UTF-8; every refusal is the caller's own error type
naming the file and what is wrong. Readers of recordings, profiles, configurations, marker maps
and manifests go through here, so none can hang or raise a bare UnicodeDecodeError."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

# the caller's error type, or any callable making one from the message
ErrorType = Callable[[str], Exception]

DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: a day of 100 Hz IMU CSV is about 0.2 GiB


def check_regular_file(path: Path, error: ErrorType, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """The file's size; raises ``error`` unless ``path`` is a regular file of at most
    ``max_bytes``."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file (a device or pipe cannot be read as one)")
    if info.st_size > max_bytes:
        raise error(f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,} accepted")
    return info.st_size


def read_text(path: Path, error: ErrorType, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The whole file as text (UTF-8, a byte-order mark dropped, CRLF as LF)."""
    check_regular_file(path, error, max_bytes)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise error(f"{path}:{line}: contains a NUL character (not a text file)")
    return text.replace("\r\n", "\n")


def refuse_same_file(source: Path, target: Path, error: ErrorType) -> None:
    """An output that would overwrite the input it is computed from is refused."""
    try:
        same = target.exists() and os.path.samefile(source, target)
    except OSError:
        same = False
    if same:
        raise error(f"{target}: is the input file; choose another output path")
