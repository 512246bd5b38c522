"""The signed bundle: written once, and every kind of tampering refused with a clear message."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.contracts.bundle import (
    MANIFEST,
    MODEL,
    SIGNATURE,
    BundleError,
    generate_key_pair,
    load_private_key,
    load_public_key,
    verify_bundle,
    write_bundle,
)

CERVICAL = str(Path(sys.executable).with_name("cervical"))
PAYLOAD = bytes(range(256)) * 40


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private = tmp_path / "keys" / "signing.key"
    return private, generate_key_pair(private)


@pytest.fixture
def bundle(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    manifest = {"muscle_names": ["a", "b"], "metrics": {"r2_per_muscle": {"a": 0.99}}}
    return write_bundle(
        tmp_path / "b1", {MODEL: PAYLOAD}, manifest, load_private_key(keys[0]), "1.0.0"
    )


def test_keys_are_private_and_never_overwritten(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(BundleError, match="refusing to overwrite"):
        generate_key_pair(private)


def test_a_good_bundle_verifies(bundle: Path, keys: tuple[Path, Path]) -> None:
    manifest = verify_bundle(bundle, load_public_key(keys[1]))
    assert manifest["files"][MODEL]["bytes"] == len(PAYLOAD)
    assert manifest["muscle_names"] == ["a", "b"]
    assert sorted(p.name for p in bundle.parent.iterdir() if p.name.startswith(".")) == []


def _rejection(bundle: Path, public: Path) -> BundleError:
    """The error verify_bundle raises (the test fails if it accepts the bundle)."""
    with pytest.raises(BundleError) as info:
        verify_bundle(bundle, load_public_key(public))
    return info.value


def test_modified_model_is_rejected(bundle: Path, keys: tuple[Path, Path]) -> None:
    data = bytearray((bundle / MODEL).read_bytes())
    data[100] ^= 1
    (bundle / MODEL).write_bytes(bytes(data))
    err = _rejection(bundle, keys[1])
    assert err.path == bundle / MODEL
    assert "SHA-256 differs from the manifest" in err.reason


def test_truncated_model_is_rejected(bundle: Path, keys: tuple[Path, Path]) -> None:
    (bundle / MODEL).write_bytes(PAYLOAD[:1000])
    err = _rejection(bundle, keys[1])
    assert err.path == bundle / MODEL
    assert err.reason == "1000 bytes, the manifest says 10240 (truncated?)"


def test_modified_manifest_is_rejected(bundle: Path, keys: tuple[Path, Path]) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["metrics"]["r2_per_muscle"]["a"] = 0.999
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    err = _rejection(bundle, keys[1])
    assert err.path == bundle / MANIFEST
    assert "signature does not match" in err.reason


def test_wrong_key_is_rejected(bundle: Path, tmp_path: Path) -> None:
    other = generate_key_pair(tmp_path / "other.key")
    err = _rejection(bundle, other)
    assert "signed with another key" in err.reason
    assert load_private_key(other.with_suffix(".key")) is not None  # a real, different key


def test_missing_or_truncated_signature_is_rejected(bundle: Path, keys: tuple[Path, Path]) -> None:
    sig = (bundle / SIGNATURE).read_bytes()
    (bundle / SIGNATURE).write_bytes(sig[:40])
    err = _rejection(bundle, keys[1])
    assert err.path == bundle / SIGNATURE
    assert err.reason == "40 bytes, an Ed25519 signature has 64"
    (bundle / SIGNATURE).unlink()
    err = _rejection(bundle, keys[1])
    assert (err.path, err.reason) == (bundle / SIGNATURE, "missing")


def test_existing_bundle_is_never_overwritten(bundle: Path, keys: tuple[Path, Path]) -> None:
    before = (bundle / MANIFEST).read_bytes()
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(bundle, {MODEL: b"x"}, {}, load_private_key(keys[0]), "2")
    assert (bundle / MANIFEST).read_bytes() == before


def test_cli_generates_keys_and_verifies(tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    r = subprocess.run([CERVICAL, "keys", "generate", "--out", str(key)], capture_output=True,
                       text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    b = write_bundle(tmp_path / "b", {MODEL: PAYLOAD}, {}, load_private_key(key), "0.1.0")
    pub = str(key.with_suffix(".pub"))
    # Signed and intact, but not a model bundle: the hub's checks go on past the signature.
    signed = subprocess.run([CERVICAL, "bundle", "verify", str(b), "--pubkey", pub],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert signed.returncode == 2 and "feature spec unusable" in signed.stderr
    (b / MODEL).write_bytes(b"tampered")
    bad = subprocess.run([CERVICAL, "bundle", "verify", str(b), "--pubkey", pub],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert bad.returncode == 2 and "truncated" in bad.stderr
    again = subprocess.run([CERVICAL, "keys", "generate", "--out", str(key)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
