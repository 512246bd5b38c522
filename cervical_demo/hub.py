"""Stages 5-6: a virtual hub in its own process on the virtual radio (its own process too),
measuring the simulated patient; the gateway (this process) pairs with it using the passkey on
its label, sets the patient's profile and pushes the signed bundle; the hub then records the
patient's four weeks before today (``weeks``: daily wear, weekly guided tests; the daemon stopped
meanwhile and started again after, as after a power cut); the gateway runs today's guided
range-of-motion test that the patient performs, and syncs everything into the clinic store in
one go.

The hub starts as one fresh from the factory: no model and a generic profile. It serves BLE and
measures nothing until the gateway has pushed a model, so the session it records is computed
with the patient's profile and the demo's model. Each run builds a new hub and clinic store.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cervical_demo import scenario
from cervical_demo.processes import Background, DemoProcessError
from cervical_demo.progress import StageReporter
from cervical_demo.scales import DemoScale
from cervical_demo.weeks import record_weeks
from edge_runtime.contracts.anthropometrics import write_profile
from edge_runtime.contracts.record_payloads import parse_record

HUB_DIR = "hub"
GATEWAY_DIR = "gateway"
CLINIC_DB = "clinic.db"
SESSION_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class HubResult:
    address: str
    device_id: int
    model_version: str
    records_synced: int
    sessions: list[dict[str, Any]]  # the synced session summaries (payloads)


def _hub_config(hub_dir: Path, pub: Path, radio_port: int, replay_speed: float) -> Path:
    config = hub_dir / "hub.toml"
    config.write_text(
        "# The demo's virtual hub (cervical demo): simulated sensors, the virtual radio.\n"
        "[hub]\n"
        'database = "hub.db"\n'
        'models = "models"\n'
        f'public_key = "{pub.resolve()}"\n'
        'profile = "profile.toml"\n'
        "realtime = true\n"
        f"replay_speed = {replay_speed}  # the simulated patient, faster than real time\n"
        "[sensors]\n"
        f'head = "{scenario.SENSORS}"\n'
        f'trunk = "{scenario.SENSORS}"\n'
        "[ble]\n"
        f'transport = "tcp-client:127.0.0.1:{radio_port}"\n'
        'state_dir = "ble"\n'
        'name = "Cervical demo hub"\n'
        "advertising_interval_ms = 20.0\n"
    )
    return config


def _radio_ports(radio: Background, timeout_s: float = 30.0) -> tuple[int, int]:
    """The two ports the virtual radio printed (it binds free ones)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in radio.log.read_text(errors="replace").splitlines():
            if line.startswith("virtual radio on"):
                ports = line.split("{", 1)[1].rstrip("}").split(",")
                return int(ports[0]), int(ports[1])
        radio.check_running()
        time.sleep(0.05)
    raise DemoProcessError(f"the virtual radio did not start; {radio.log}:\n{radio.log_tail()}")


def _fresh(path: Path) -> None:
    """Remove an earlier run's hub, gateway state or clinic store (SQLite with its sidecars)."""
    if path.is_dir():
        shutil.rmtree(path)
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def run_hub_and_gateway(
    out_dir: Path, bundle: Path, pub: Path, scale: DemoScale, stage: StageReporter
) -> HubResult:
    hub_dir, gateway_dir, clinic = out_dir / HUB_DIR, out_dir / GATEWAY_DIR, out_dir / CLINIC_DB
    for path in (hub_dir, gateway_dir, clinic):
        _fresh(path)
    hub_dir.mkdir(parents=True)
    write_profile(scenario.FACTORY_PROFILE, hub_dir / "profile.toml")
    logs = out_dir / "logs"
    radio = Background(out_dir, "radio", ["radio", "serve", "--port", "0", "--port", "0"],
                       logs / "radio.log").start()  # fmt: skip
    hubs: list[Background] = []
    try:
        hub_port, gateway_port = _radio_ports(radio)
        config = _hub_config(hub_dir, pub, hub_port, scale.replay_speed)

        def start_hub(log_name: str) -> Background:
            hub = Background(out_dir, "hub", ["edge", "run", "--config", str(config)],
                             logs / log_name)  # fmt: skip
            hubs.append(hub)
            hub.start()
            hub.wait_for_log("BLE: advertising", timeout_s=60.0)
            return hub

        hub = start_hub("hub.log")
        stage.note(f"virtual radio and hub started, each in its own process; hub log {hub.log}")
        gateway = _gateway(
            hubs, start_hub, hub_dir, gateway_dir, clinic, bundle, pub, gateway_port, scale, stage
        )
        result = asyncio.run(gateway)
        code = hubs[-1].stop()
        if code != 0:
            raise DemoProcessError(f"the hub stopped with exit {code}:\n{hubs[-1].log_tail()}")
        return result
    finally:
        for hub in hubs:
            hub.stop()
        radio.stop()


async def _weeks_pass(
    hub: Background, start_hub: Callable[[str], Background], hub_dir: Path, pub: Path,
    scale: DemoScale, stage: StageReporter,
) -> Background:  # fmt: skip
    """Weeks pass: the hub, stopped meanwhile, records them (``weeks``); it starts again."""
    code = hub.stop()
    if code != 0:
        raise DemoProcessError(f"the hub stopped with exit {code}:\n{hub.log_tail()}")
    weeks = await asyncio.to_thread(
        record_weeks, hub_dir, pub, scale.wear_days, scale.wear_min_per_day, stage
    )
    hub = start_hub("hub-today.log")
    stage.note(f"hub started again on its store ({weeks.tests} tests, {weeks.wear_hours:.1f} h "
               f"of wear waiting to be synced); today's log {hub.log}")  # fmt: skip
    return hub


async def _gateway(
    hubs: list[Background], start_hub: Callable[[str], Background], hub_dir: Path,
    gateway_dir: Path, clinic_path: Path, bundle: Path, pub: Path, port: int, scale: DemoScale,
    stage: StageReporter,
) -> HubResult:  # fmt: skip
    from ble_gateway.guided_test import Guidance, guidance_for, run_guided_test
    from ble_gateway.hub_client import push_model, read_status, set_profile, sync_hub
    from ble_gateway.radio import parse_radio
    from ble_gateway.store import ClinicStore
    from edge_runtime.ble.identity import BleIdentity

    logging.getLogger("bumble").setLevel(logging.ERROR)
    # what the hub's label shows; a clinic types the passkey in once, when pairing
    identity = BleIdentity.load_or_create(hub_dir / "ble")
    address = str(identity.address).removesuffix("/P")
    stage.note(f"hub label: address {address}, passkey {identity.passkey_text}")
    radio = parse_radio(
        f"bumble:tcp-client:127.0.0.1:{port}", gateway_dir, lambda: identity.passkey
    )

    status, held = await read_status(radio, address)
    stage.note(
        f"paired (LE Secure Connections, passkey); hub model: "
        f"{status.model_version or 'none installed'}, profile: {held.sex} "
        f"{held.stature_m} m (factory default)"
    )
    held = await set_profile(radio, address, scenario.PATIENT_PROFILE)
    stage.note(f"profile set: {held.sex}, {held.stature_m} m, {held.body_mass_kg} kg, "
               f"neck {held.neck_length_m} m, head {held.head_mass_kg} kg")  # fmt: skip
    version = await push_model(
        radio, address, bundle,
        progress=lambda done, total: stage.update(done, total, "model bytes pushed"),
    )  # fmt: skip
    stage.note(f"model {version} pushed: the hub verified and installed it and started measuring")
    hub = await _weeks_pass(hubs[-1], start_hub, hub_dir, pub, scale, stage)
    # the patient performs the guided test the gateway runs (wear sessions judge no range)
    prompts: list[str] = []

    def guide(g: Guidance) -> None:
        if g.kind == "prompt":
            prompts.append(g.text)
            stage.update(len(prompts), None, f"test prompts said (latest: {g.text[:40]}...)")

    end = await run_guided_test(radio, address, guide)
    stage.note(f"guided test: {len(prompts)} prompts; {guidance_for(end).text}")
    started = time.monotonic()
    while "all sensors ended" not in hub.log.read_text(errors="replace"):
        hub.check_running()
        if time.monotonic() - started > SESSION_TIMEOUT_S:
            raise DemoProcessError(f"the hub's session did not end; {hub.log}:\n{hub.log_tail()}")
        stage.update(time.monotonic() - started, None, "s: the hub measures the patient")
        await asyncio.sleep(0.2)
    clinic = ClinicStore(clinic_path)
    try:
        result = await sync_hub(
            radio, address, clinic,
            progress=lambda done, total: stage.update(done, total, "records synced"),
        )  # fmt: skip
        payloads = [
            parse_record(r.kind, r.payload_json).to_dict()
            for r in clinic.records(result.device_id)
            if r.kind == "session"
        ]
    finally:
        clinic.close()
    final, _ = await read_status(radio, address)
    stage.note(
        f"synced {result.new_records} records into {clinic_path}; the hub reports "
        f"{final.unsynced} unsynced"
    )
    stage.outcome.note = (
        f"{len(payloads)} session(s), {result.new_records} records synced from hub {address}"
    )
    return HubResult(address, result.device_id, version, result.new_records, payloads)
