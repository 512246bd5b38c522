"""Helpers for tests that run a hub: re-signed bundle versions, a hub configuration, and a
simulated wearer's guided test as the hub's sensors deliver it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_runtime.contracts.anthropometrics import Anthropometrics, write_profile
from edge_runtime.contracts.bundle import (
    MANIFEST,
    MODEL,
    TWIN,
    load_private_key,
    load_public_key,
    write_bundle,
)
from edge_runtime.contracts.model_bundle import verify_model_bundle
from edge_runtime.contracts.neck_angles import rotation_from_neck_angles
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.contracts.rom_assessment import AssessmentConfig
from edge_runtime.hub.models import ModelSlots
from edge_runtime.imu_sim import SimulationSetup, simulate_imus
from edge_runtime.synthetic import WARMUP_S, protocol_angles, random_subject


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


def protocol_session(
    bundle: Path, pub: Path, wearer: Anthropometrics, seed: int
) -> tuple[ImuRecording, ImuRecording, tuple[str, ...]]:
    """A restricted wearer settling for ``WARMUP_S`` then performing the guided test, as head
    and trunk IMU recordings; and the restricted directions."""
    checked = verify_model_bundle(bundle, load_public_key(pub))
    assert checked.envelope is not None
    envelope, _ = checked.envelope.for_subject(wearer)
    rng = np.random.default_rng(seed)
    subject = random_subject(rng, envelope, True, AssessmentConfig(), seed)
    _, truth, _, _ = protocol_angles(subject.amplitudes_rad(envelope))
    angles = np.concatenate([np.zeros((int(WARMUP_S * 100), 3)), truth])
    t = np.arange(len(angles)) / 100.0
    sim = simulate_imus(
        t, rotation_from_neck_angles(angles), SimulationSetup(calm_s=WARMUP_S + 3.0), seed=seed
    )
    return sim.head, sim.trunk, subject.restricted


def sensor_chunks(
    head: ImuRecording, trunk: ImuRecording, chunk_s: float = 0.5
) -> Iterator[tuple[float, str, ImuRecording]]:
    """Both recordings as a hub receives them: by time, ``chunk_s`` at a time, as (chunk start,
    role, samples)."""
    start = float(min(np.nanmin(head.t_s), np.nanmin(trunk.t_s)))
    end = float(max(np.nanmax(head.t_s), np.nanmax(trunk.t_s)))
    for k in range(int((end - start) / chunk_s) + 1):
        lo, hi = start + k * chunk_s, start + (k + 1) * chunk_s
        for role, rec in (("head", head), ("trunk", trunk)):
            # a sample belongs to the chunk its predecessor's time falls in, so a sample with a
            # bad timestamp travels with its neighbours as it would on a real bus
            ref = np.maximum.accumulate(np.nan_to_num(rec.t_s, nan=-np.inf))
            sl = (ref >= lo) & (ref < hi)
            part = ImuRecording(
                rec.t_s[sl],
                rec.gyr_rad_s[sl],
                rec.acc_m_s2[sl],
                None if rec.mag_ut is None else rec.mag_ut[sl],
            )
            yield lo, role, part
