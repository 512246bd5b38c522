"""A model bundle as one file for transfer (BLE model update): an uncompressed POSIX tar of the
bundle's files, packed deterministically (sorted, mtime 0, uid 0), so the same bundle always
gives the same bytes and the same SHA-256.

Unpacking accepts exactly the bundle's files as regular files, nothing else (no paths, links or
devices), within a size limit: the archive comes from a radio, and what it holds is verified
(signature, hashes, golden vectors) only after it is unpacked.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from edge_runtime.contracts.bundle import (
    OPTIONAL_FILES,
    REQUIRED_FILES,
    BundleError,
    bundle_files,
)


def pack_bundle(bundle: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in bundle_files(bundle):
            path = bundle / name
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise BundleError(path, f"cannot read: {exc.strerror}") from exc
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack_bundle(archive: bytes, dest: Path, max_bytes: int) -> None:
    """Write the archive's bundle files into ``dest`` (created); raises BundleError naming what
    was wrong with the archive."""
    where = dest / "<archive>"
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            members = tar.getmembers()
            names = sorted(m.name for m in members)
            extra = set(names) - set(REQUIRED_FILES)
            if (
                len(names) != len(set(names))
                or not set(REQUIRED_FILES) <= set(names)
                or not (extra <= set(OPTIONAL_FILES))
            ):
                raise BundleError(
                    where,
                    f"holds {names}, expected exactly {list(REQUIRED_FILES)} "
                    f"(and optionally {list(OPTIONAL_FILES)})",
                )
            if any(not m.isreg() for m in members):
                raise BundleError(where, "holds something other than regular files")
            if sum(m.size for m in members) > max_bytes:
                raise BundleError(where, f"unpacks to more than {max_bytes} bytes")
            dest.mkdir(parents=True, exist_ok=True)
            for member in members:
                source = tar.extractfile(member)
                if source is None:
                    raise BundleError(where, f"{member.name} has no data")
                (dest / member.name).write_bytes(source.read())
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(where, f"not a bundle archive: {exc}") from exc
