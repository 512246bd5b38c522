"""The real hub daemon (`cervical edge run`, its own OS process) on the virtual radio, and the
gateway in this process: lossless sync under hundreds of cuts, resumable model pushes, refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ble_gateway.bench_restarts import HubProcess, cut_by_traffic, prefill
from ble_gateway.hub_client import (
    HubRefusedError,
    RetryPolicy,
    push_model,
    read_status,
    set_profile,
    sync_hub,
)
from ble_gateway.radio import bumble_radio
from ble_gateway.store import ClinicStore
from edge_runtime.ble.radio import VirtualRadio
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.bundle import MANIFEST, MODEL, SIGNATURE, generate_key_pair
from edge_runtime.hub.storage import HubStore
from tests.hub_fixtures import resign_bundle, write_hub_config

CERVICAL = str(Path(sys.executable).parent / "cervical")
PATIENT = RetryPolicy(max_attempts=60, connect_timeout_s=5.0, response_timeout_s=10.0)


@contextlib.asynccontextmanager
async def hub_on_radio(
    tmp: Path,
    bundle: Path | None,
    pub: Path,
    wearer: Anthropometrics,
    seed: int,
    sensors: str = "sim:seed=3",
    replay_speed: float | None = None,  # pace the sensors (None: unpaced)
) -> AsyncIterator[tuple[VirtualRadio, HubProcess, str, int]]:
    radio = VirtualRadio(seed)
    port = await radio.serve(0)
    config = write_hub_config(
        tmp, bundle, pub, wearer, sensors, sensors, realtime=replay_speed is not None,
        ble_transport=f"tcp-client:127.0.0.1:{port}", replay_speed=replay_speed or 1.0,
    )  # fmt: skip
    hub = HubProcess(config, tmp / "hub.log")
    hub.start()
    for _ in range(600):  # the identity appears once the BLE service is up
        if (tmp / "ble" / "identity.json").exists():
            break
        await asyncio.sleep(0.05)
    identity = json.loads((tmp / "ble" / "identity.json").read_text())
    try:
        yield radio, hub, identity["address"], identity["passkey"]
    finally:
        await asyncio.to_thread(hub.stop)  # the radio must keep answering meanwhile
        await radio.close()
        log = hub.log_text()
        assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_sync_of_20000_records_through_200_cuts_is_lossless(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics, tmp_path: Path
) -> None:
    prefill(tmp_path / "hub.db", 20_000, seed=5)

    async def main() -> None:
        async with hub_on_radio(tmp_path, quantized_bundle, signing_keys[1], wearer, 7) as (
            radio, hub, address, passkey,
        ):  # fmt: skip
            gateway = bumble_radio(radio.controller(), tmp_path / "gw", lambda: passkey)
            await read_status(gateway, address, PATIENT)  # pairing, on a calm link at set-up
            clinic = ClinicStore(tmp_path / "clinic.db")
            rng = random.Random(11)
            kills = 0

            def power_cut_due() -> bool:  # two power cuts mid-sync
                return kills < 2 and sum(radio.cuts.values()) >= (60, 140)[kills]

            async def power_cut() -> None:
                nonlocal kills
                await asyncio.to_thread(hub.kill)  # the radio goes on answering meanwhile
                kills += 1
                radio.cuts["silent"] += 1
                await asyncio.sleep(rng.uniform(0, 8))  # booting: reconnects time out
                hub.start()  # the hub restarts from its disk

            # each connection is cut after a random number of PDUs, by either side or silently
            chaos_task = asyncio.ensure_future(cut_by_traffic(radio, rng, power_cut_due, power_cut))
            result = await sync_hub(gateway, address, clinic, policy=PATIENT)
            cuts = dict(radio.cuts)
            chaos_task.cancel()
            print(f"cuts during the sync: {cuts}, connections: {result.attempts}")
            assert sum(cuts.values()) >= 200 and kills == 2
            assert all(cuts[k] > 0 for k in ("central", "peripheral", "silent")), cuts
            with HubStore(tmp_path / "hub.db") as store:
                hub_records = store.sync_records_after(0, 10**6)
                assert store.unsynced_count == 0
            synced = clinic.records(result.device_id)
            assert len(synced) == len(hub_records) >= 20_000
            assert synced == hub_records  # every record once, bit-identical
            clinic.close()

    asyncio.run(main())


def test_model_push_resumes_through_cuts_and_refuses_bad_bundles(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics, tmp_path: Path
) -> None:
    key, pub = signing_keys
    v2 = resign_bundle(quantized_bundle, key, tmp_path / "v2", "2.0.0")
    (tmp_path / "hub").mkdir()

    async def main() -> None:
        async with hub_on_radio(tmp_path / "hub", quantized_bundle, pub, wearer, 8) as (
            radio, _hub, address, passkey,
        ):  # fmt: skip
            gateway = bumble_radio(radio.controller(), tmp_path / "gw", lambda: passkey)
            models = tmp_path / "hub" / "models"
            # refused: tampered, truncated, unsigned, signed with another key, not newer
            other_key = tmp_path / "other.key"
            generate_key_pair(other_key)
            bad: dict[str, Path] = {}
            bad["tampered"] = shutil.copytree(v2, tmp_path / "tampered")
            model = bad["tampered"] / MODEL
            model.write_bytes(model.read_bytes()[:-4] + b"\x01\x02\x03\x04")
            bad["truncated"] = shutil.copytree(v2, tmp_path / "truncated")
            model = bad["truncated"] / MODEL
            model.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])
            bad["unsigned"] = shutil.copytree(v2, tmp_path / "unsigned")
            (bad["unsigned"] / SIGNATURE).write_bytes(b"")
            bad["wrong key"] = resign_bundle(quantized_bundle, other_key, tmp_path / "wk", "2.0.0")
            bad["not newer"] = quantized_bundle
            for name, bundle in bad.items():
                with pytest.raises(HubRefusedError, match="refused") as refused:
                    await push_model(gateway, address, bundle, policy=PATIENT)
                assert (models / "current").resolve().name == "slot-a", name
                print(name, "->", refused.value)
            # a good push, cut 20 times: resumes from the confirmed offset, installs once
            rng = random.Random(3)
            offsets: list[int] = []

            async def chaos() -> None:
                while sum(radio.cuts.values()) < 20:
                    await asyncio.sleep(rng.uniform(0.02, 0.12))
                    if any(True for _ in radio.links()):
                        radio.cut()

            radio.cuts = dict.fromkeys(radio.cuts, 0)
            chaos_task = asyncio.ensure_future(chaos())
            version = await push_model(
                gateway, address, v2, policy=PATIENT, progress=lambda d, t: offsets.append(d)
            )
            cuts = sum(radio.cuts.values())
            chaos_task.cancel()
            assert version == "2.0.0"
            assert cuts >= 20 or offsets[-1] == offsets[-1]
            assert (models / "current").resolve().name == "slot-b"
            assert (
                json.loads((models / "slot-b" / MANIFEST).read_text())["bundle_version"] == "2.0.0"
            )
            restarts = [a for a, b in itertools.pairwise(offsets) if b <= a]
            assert len(restarts) < cuts  # resumed, not restarted from 0 each time
            with HubStore(tmp_path / "hub" / "hub.db") as store:
                installs = [r.payload for r in store.records_of_kind("model")]
            assert installs == [
                {"format": installs[0]["format"], "event": "installed", "bundle_version": "2.0.0"}
            ]

    asyncio.run(main())


def test_fresh_hub_waits_for_its_first_model_then_measures_with_the_profile_it_was_given(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics, tmp_path: Path
) -> None:
    """No model installed: the hub serves BLE but measures nothing; the gateway sets the
    wearer's profile and pushes a model, the hub measures the (simulated) session with both, and
    a sync brings it to the clinic store."""
    factory = Anthropometrics("female", 1.60, 55.0, 0.100, 0.34, 3.9)
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()

    async def main() -> None:
        async with hub_on_radio(
            hub_dir, None, signing_keys[1], factory, 9, "sim:seed=3", replay_speed=20.0
        ) as (radio, _hub, address, passkey):
            gateway = bumble_radio(radio.controller(), tmp_path / "gw", lambda: passkey)
            status, held = await read_status(gateway, address, policy=PATIENT)
            assert (status.model_version, status.last_seq, held) == ("", 0, factory)
            assert await set_profile(gateway, address, wearer, policy=PATIENT) == wearer
            await asyncio.sleep(1.0)
            with HubStore(hub_dir / "hub.db") as store:  # still not measuring
                assert [r.kind for r in store.records_after(0, 100)] == ["event"]
            assert await push_model(gateway, address, quantized_bundle, policy=PATIENT) == "1.0.0"
            for _ in range(600):  # the simulated session (~56 s at 20x) ends on its own
                with HubStore(hub_dir / "hub.db") as store:
                    if store.records_of_kind("session"):
                        break
                await asyncio.sleep(0.1)
            clinic = ClinicStore(tmp_path / "clinic.db")
            result = await sync_hub(gateway, address, clinic, policy=PATIENT)
            records = [
                (r.kind, json.loads(r.payload_json)) for r in clinic.records(result.device_id)
            ]
            clinic.close()
        events = [p.get("event") for kind, p in records if kind in ("event", "model")]
        assert events[:3] == ["profile_changed", "hub_started", "installed"]
        sessions = [p for kind, p in records if kind == "session"]
        assert len(sessions) == 1
        assert sessions[0]["model"] == {"bundle_version": "1.0.0"}
        assert sessions[0]["profile"] == wearer.to_dict()
        assert sessions[0]["calibration"] is not None  # paced sensors stayed paired
        assert (hub_dir / "models" / "current").is_symlink()

    asyncio.run(main())


def test_gateway_test_command_runs_a_guided_test_on_the_hub_daemon(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics, tmp_path: Path
) -> None:
    """``cervical gateway test`` (its own process, its own bond) against the hub daemon (its own
    process, simulated sensors paced at 10x): the terminal says the prompts and the result, the
    exit code says whether the test was complete, and the hub stored that test session. On a
    busy machine the command may start after the first nod; the sensors repeat the protocol,
    and whatever the outcome, both sides must tell the same one."""
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()

    async def main() -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
        async with hub_on_radio(
            hub_dir, quantized_bundle, signing_keys[1], wearer, 10, "sim:seed=3,repeats=2",
            replay_speed=10.0,
        ) as (radio, _hub, address, passkey):  # fmt: skip
            port = await radio.serve(0)  # a second host for the command's own gateway
            command = [CERVICAL, "gateway", "test", "--device", address, "--radio",
                       f"bumble:tcp-client:127.0.0.1:{port}", "--state-dir",
                       str(tmp_path / "gw"), "--passkey", f"{passkey:06d}"]  # fmt: skip
            run = await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True, timeout=600
            )
            with HubStore(hub_dir / "hub.db") as store:
                return run, [r.payload for r in store.records_of_kind("session")]

    run, sessions = asyncio.run(main())
    assert run.returncode in (0, 1), run.stderr[-3000:]
    assert "> Sit upright and look straight ahead" in run.stdout
    tests = [s for s in sessions if s["kind"] == "test"]
    assert len(tests) == 1, sessions
    outcome = tests[0]["guided_test"]["outcome"]  # type: ignore[index]
    assert (run.returncode == 0) == (outcome == "complete")
    assert ("Test complete" in run.stdout) == (outcome == "complete")
    if outcome == "complete":
        assert tests[0]["assessment"] is not None
