"""The signed model bundle: what a hub installs, and the one place that writes and checks it.

A bundle is a directory::

    model.tflite     the int8 network
    twin.tflite      the int8 confidence twin (optional; with a ``confidence`` section)
    manifest.json    UTF-8 JSON: ``format``, ``bundle_version``, ``created_utc``,
                     ``signing_key_fingerprint``, ``files`` ({name: {"sha256", "bytes"}}) and
                     whatever the producer adds (training manifest, quantisation, golden vectors,
                     metrics)
    manifest.sig     Ed25519 signature (64 raw bytes) over the exact bytes of manifest.json

Verification order: every file present; signature over the manifest with the trusted public key
(so nothing else in the manifest is believed before it checks out); then each listed file's size
and SHA-256. Any failure raises a ``BundleError`` naming the file and what was wrong.
Keys: PKCS#8 PEM private key (mode 0600) and SubjectPublicKeyInfo PEM public key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_runtime.contracts.errors import ContractError

BUNDLE_FORMAT = "cervical-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MODEL = "model.tflite"
TWIN = "twin.tflite"  # the confidence twin (model_bundle.BundleConfidence), optional
SIGNATURE_BYTES = 64
REQUIRED_FILES = (MANIFEST, SIGNATURE, MODEL)
OPTIONAL_FILES = (TWIN,)


def bundle_files(bundle: Path) -> tuple[str, ...]:
    """The files a bundle directory consists of: the required ones and the optional ones it has
    (what is copied into a hub's slot and packed for transfer; verification says if they fit)."""
    return REQUIRED_FILES + tuple(n for n in OPTIONAL_FILES if (bundle / n).is_file())


class BundleError(ContractError, ValueError):
    """A bundle or key cannot be trusted; ``path`` names the file, ``reason`` what was wrong."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def public_key_fingerprint(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _sha256(raw)[:16]


def generate_key_pair(private_path: Path) -> Path:
    """Write a new Ed25519 key pair: ``private_path`` (0600) and ``<stem>.pub``. No overwrite."""
    public_path = private_path.with_suffix(".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise BundleError(path, "already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return public_path


def _read_pem(path: Path, kind: str, load: Callable[[bytes], object]) -> object:
    try:
        return load(path.read_bytes())
    except FileNotFoundError as exc:
        raise BundleError(path, "no such key file") from exc
    except ValueError as exc:
        raise BundleError(path, f"not a PEM {kind} key") from exc


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = _read_pem(path, "private", lambda b: serialization.load_pem_private_key(b, None))
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(path, "not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = _read_pem(path, "public", serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(path, "not an Ed25519 public key")
    return key


def parse_bundle_version(version: object) -> tuple[int, ...]:
    """Bundle versions are dotted non-negative integers (``2026.11.24.112935``), compared
    numerically: a hub installs only a newer one. Raises ValueError naming the version."""
    try:
        parts = tuple(int(p) for p in str(version).split("."))
    except ValueError:
        parts = ()
    if not parts or any(p < 0 for p in parts):
        raise ValueError(f"bundle version {version!r} is not dotted non-negative integers")
    return parts


def write_bundle(
    out_dir: Path,
    files: dict[str, bytes],
    manifest: dict[str, Any],
    key: Ed25519PrivateKey,
    bundle_version: str,
) -> Path:
    """Write a signed bundle to ``out_dir`` (must not exist) atomically: built in a hidden sibling
    directory and renamed, so a failed write leaves nothing behind."""
    if out_dir.exists():
        raise BundleError(out_dir, "already exists; choose a new bundle directory")
    try:
        parse_bundle_version(bundle_version)
    except ValueError as exc:
        raise BundleError(out_dir, str(exc)) from exc
    for name in files:
        if name in (MANIFEST, SIGNATURE) or "/" in name or name.startswith("."):
            raise BundleError(out_dir / name, "not an allowed payload file name")
    body = {
        **manifest,
        "format": BUNDLE_FORMAT,
        "bundle_version": bundle_version,
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "signing_key_fingerprint": public_key_fingerprint(key.public_key()),
        "files": {n: {"sha256": _sha256(b), "bytes": len(b)} for n, b in sorted(files.items())},
    }
    manifest_bytes = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_bytes(manifest_bytes)
        (tmp / SIGNATURE).write_bytes(key.sign(manifest_bytes))
        os.chmod(tmp, 0o755)
        os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def verify_bundle(bundle: Path, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Check a bundle against a trusted public key; return its manifest, or raise BundleError."""
    if not bundle.is_dir():
        raise BundleError(bundle, "not a bundle directory")
    manifest_path, sig_path = bundle / MANIFEST, bundle / SIGNATURE
    for path in (manifest_path, sig_path):
        if not path.is_file():
            raise BundleError(path, "missing")
    manifest_bytes = manifest_path.read_bytes()
    signature = sig_path.read_bytes()
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(
            sig_path, f"{len(signature)} bytes, an Ed25519 signature has {SIGNATURE_BYTES}"
        )
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature as exc:
        raise BundleError(
            manifest_path,
            "signature does not match: the manifest was modified or signed with another key "
            f"(trusted key {public_key_fingerprint(public_key)}, "
            f"manifest names {_claimed_fingerprint(manifest_bytes)})",
        ) from exc
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:  # signed but malformed: a producer bug, still refused
        raise BundleError(manifest_path, f"not JSON ({exc})") from exc
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            manifest_path, f"format {manifest.get('format')!r}, expected {BUNDLE_FORMAT}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL not in files:
        raise BundleError(manifest_path, f"lists no {MODEL}")
    for name, expected in files.items():
        path = bundle / name
        if not path.is_file():
            raise BundleError(path, "missing")
        data = path.read_bytes()
        if len(data) != expected["bytes"]:
            raise BundleError(
                path, f"{len(data)} bytes, the manifest says {expected['bytes']} (truncated?)"
            )
        if _sha256(data) != expected["sha256"]:
            raise BundleError(path, "SHA-256 differs from the manifest: the file was modified")
    return dict(manifest)


def _claimed_fingerprint(manifest_bytes: bytes) -> str:
    try:
        return str(json.loads(manifest_bytes).get("signing_key_fingerprint", "none"))
    except ValueError:
        return "unreadable"
