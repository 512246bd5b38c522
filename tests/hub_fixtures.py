"""Helpers for tests that run a hub: re-signed bundle versions and a hub configuration."""

from __future__ import annotations

import json
from pathlib import Path

from edge_runtime.contracts.anthropometrics import Anthropometrics, write_profile
from edge_runtime.contracts.bundle import (
    MANIFEST,
    MODEL,
    TWIN,
    load_private_key,
    load_public_key,
    write_bundle,
)
from edge_runtime.hub.models import ModelSlots


def resign_bundle(
    bundle: Path, key: Path, out: Path, version: str, model: bytes | None = None
) -> Path:
    """The bundle again, signed as ``version`` (optionally with other model bytes)."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    for field in ("format", "bundle_version", "created_utc", "signing_key_fingerprint", "files"):
        manifest.pop(field)
    payload = model if model is not None else (bundle / MODEL).read_bytes()
    files = {MODEL: payload}
    if (bundle / TWIN).is_file():
        files[TWIN] = (bundle / TWIN).read_bytes()
    return write_bundle(out, files, manifest, load_private_key(key), version)


def write_hub_config(
    tmp: Path,
    bundle: Path | None,
    pub: Path,
    wearer: Anthropometrics,
    head: str,
    trunk: str,
    realtime: bool,
    ble_transport: str = "",
    replay_speed: float = 1.0,
) -> Path:
    """A hub directory (profile, installed model unless ``bundle`` is None, hub.toml) under
    ``tmp``; returns hub.toml."""
    write_profile(wearer, tmp / "profile.toml")
    if bundle is not None:
        slots = ModelSlots(tmp / "models", load_public_key(pub))
        slots.install(bundle, wearer)
    config = tmp / "hub.toml"
    text = (
        f'[hub]\ndatabase = "hub.db"\nmodels = "models"\npublic_key = "{pub}"\n'
        f'profile = "profile.toml"\nrealtime = {str(realtime).lower()}\n'
        f"replay_speed = {replay_speed}\n"
        f'[sensors]\nhead = "{head}"\ntrunk = "{trunk}"\n[pipeline]\nepoch_s = 5.0\n'
    )
    if ble_transport:
        text += (
            f'[ble]\ntransport = "{ble_transport}"\nstate_dir = "ble"\n'
            "advertising_interval_ms = 20.0\n"
        )
    config.write_text(text)
    return config
