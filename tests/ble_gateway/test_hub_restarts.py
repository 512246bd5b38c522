"""A hub that restarts never strands its gateway: a reconnect that finds the hub still booting
gives up cleanly (no connection completes later behind the gateway's back), the bond survives a
power cut on both sides, and a bond the hub lost is reported in words and paired again when the
gateway has a passkey source. In-process hub and gateways on one virtual radio, no timing luck:
each step waits for the state it needs."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from bleak.exc import BleakError
from bumble.controller import Controller
from bumble.transport.common import AsyncPipeSink

from ble_gateway.bumble_backend import BumbleAdapter
from ble_gateway.hub_client import HubRefusedError, RetryPolicy, sync_hub
from ble_gateway.radio import GatewayRadio, bumble_radio
from ble_gateway.store import ClinicStore
from edge_runtime.ble.identity import BONDS_FILE, BleIdentity
from edge_runtime.ble.radio import VirtualRadio
from edge_runtime.ble.service import run_gatt_server
from edge_runtime.hub.config import BleSettings
from edge_runtime.hub.storage import HubStore, NewRecord
from tests.edge_runtime.ble.harness import StoreHub

QUICK = RetryPolicy(max_attempts=4, connect_timeout_s=1.0, response_timeout_s=5.0)


@asynccontextmanager
async def powered_hub(radio: VirtualRadio, store: HubStore, state_dir: Path) -> AsyncIterator[None]:
    """The hub's BLE service until the block ends in a power cut: its controller vanishes from
    the radio mid-whatever (no disconnection sent), its process state is gone."""
    controller = radio.controller()
    settings = BleSettings(state_dir=state_dir, advertising_interval_ms=20.0)
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_gatt_server(StoreHub(store), settings, stop, controller, AsyncPipeSink(controller))
    )
    while not any(a.enabled for a in controller.advertising_sets.values()):  # up, advertising
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        radio.unplug(controller)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _gateway(
    radio: VirtualRadio, state: Path, passkey: int | None
) -> tuple[GatewayRadio, Controller]:
    controller = radio.controller()
    return bumble_radio(
        controller, state, (lambda: passkey) if passkey is not None else None
    ), controller


async def _close(radio: VirtualRadio, gateway: GatewayRadio, controller: Controller) -> None:
    adapter: BumbleAdapter = gateway.backend_kwargs["bumble"]
    await adapter.close()
    radio.unplug(controller)


def _store(path: Path, n: int, start: int = 0) -> HubStore:
    store = HubStore(path)
    store.append_many([NewRecord("epoch", {"i": i}, "s1") for i in range(start, start + n)])
    return store


def test_a_connect_that_finds_no_hub_gives_up_cleanly_and_the_next_one_works(
    tmp_path: Path,
) -> None:
    """The hub is booting after a power cut (not advertising) when the gateway tries. bumble's
    virtual controller ignored LE Create Connection Cancel and the gateway sent the BR/EDR
    cancel: the attempt stayed pending, completed behind the gateway's back once the hub
    advertised, and that orphan link held the hub (no more advertising): every later
    attempt timed out."""

    async def main() -> None:
        radio = VirtualRadio(seed=2)
        identity = BleIdentity.load_or_create(tmp_path / "ble")  # the hub, not yet running
        store = _store(tmp_path / "hub.db", 40)
        gateway, _ = _gateway(radio, tmp_path / "gw", identity.passkey)
        address = str(identity.address)
        with pytest.raises(BleakError, match="not reachable within"):
            async with gateway.client(address, timeout=0.3, pair=True):
                pass
        central = await gateway.backend_kwargs["bumble"].device()
        async with powered_hub(radio, store, tmp_path / "ble"):
            for _ in range(10):  # many advertisements: a pending attempt would complete now
                await asyncio.sleep(0.05)
            assert not central.connections and not list(radio.links())  # no orphan link
            clinic = ClinicStore(tmp_path / "clinic.db")
            result = await sync_hub(gateway, address, clinic, policy=QUICK)
            assert result.new_records == 40 and result.hub_unsynced == 0
            clinic.close()
        store.close()

    asyncio.run(main())


def test_a_hub_power_cut_keeps_both_bonds_and_the_sync_resumes(tmp_path: Path) -> None:
    async def main() -> None:
        radio = VirtualRadio(seed=3)
        store = _store(tmp_path / "hub.db", 50)
        identity = BleIdentity.load_or_create(tmp_path / "ble")
        gateway, _ = _gateway(radio, tmp_path / "gw", identity.passkey)
        address = str(identity.address)
        clinic = ClinicStore(tmp_path / "clinic.db")
        async with powered_hub(radio, store, tmp_path / "ble"):
            first = await sync_hub(gateway, address, clinic, policy=QUICK)
        delegate = gateway.backend_kwargs["bumble"].delegate
        assert first.new_records == 50 and delegate.prompts == 1
        store.append_many([NewRecord("epoch", {"i": i}, "s2") for i in range(50, 80)])

        async def boot_later() -> None:  # the gateway tries while the hub is still off
            await asyncio.sleep(1.5)

        sync = asyncio.ensure_future(
            sync_hub(gateway, address, clinic, policy=RetryPolicy(max_attempts=10,
                     connect_timeout_s=0.5, response_timeout_s=5.0))
        )  # fmt: skip
        await boot_later()
        assert not sync.done()
        async with powered_hub(radio, store, tmp_path / "ble"):
            second = await sync
        assert second.new_records == 30 and second.last_seq == 80 and second.hub_unsynced == 0
        assert delegate.prompts == 1  # the bond held: no pairing again
        hub_bonds = json.loads((tmp_path / "ble" / BONDS_FILE).read_text())
        gw_bonds = json.loads((tmp_path / "gw" / "gateway-bonds.json").read_text())
        ltk = {k["ltk"]["value"] for ns in hub_bonds.values() for k in ns.values()}
        assert ltk == {k["ltk"]["value"] for ns in gw_bonds.values() for k in ns.values()}
        for bonds in (tmp_path / "ble" / BONDS_FILE, tmp_path / "gw" / "gateway-bonds.json"):
            assert stat.S_IMODE(os.stat(bonds).st_mode) == 0o600, bonds  # secrets stay private
        clinic.close()
        store.close()

    asyncio.run(main())


def test_a_bond_the_hub_lost_is_reported_in_words_and_paired_again_with_a_passkey(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        radio = VirtualRadio(seed=4)
        store = _store(tmp_path / "hub.db", 20)
        identity = BleIdentity.load_or_create(tmp_path / "ble")
        address = str(identity.address)
        clinic = ClinicStore(tmp_path / "clinic.db")
        gateway, controller = _gateway(radio, tmp_path / "gw", identity.passkey)
        async with powered_hub(radio, store, tmp_path / "ble"):
            await sync_hub(gateway, address, clinic, policy=QUICK)
        await _close(radio, gateway, controller)
        (tmp_path / "ble" / BONDS_FILE).unlink()  # the hub's bonds are gone (a wiped store)
        store.append_many([NewRecord("epoch", {"i": i}, "s2") for i in range(20, 25)])
        async with powered_hub(radio, store, tmp_path / "ble"):
            # a gateway that cannot ask for the passkey: told what to do, in words
            unattended, controller = _gateway(radio, tmp_path / "gw", None)
            with pytest.raises(HubRefusedError, match="no longer knows this gateway: pair again"):
                await sync_hub(unattended, address, clinic, policy=QUICK)
            await _close(radio, unattended, controller)
            # one with a passkey source pairs again and syncs what is new
            attended, controller = _gateway(radio, tmp_path / "gw", identity.passkey)
            again = await sync_hub(attended, address, clinic, policy=QUICK)
            assert again.new_records == 5 and again.hub_unsynced == 0
            assert attended.backend_kwargs["bumble"].delegate.prompts == 1
            await _close(radio, attended, controller)
        clinic.close()
        store.close()

    asyncio.run(main())


def test_a_gateway_that_lost_its_bond_pairs_afresh_and_without_a_passkey_is_told_why(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        radio = VirtualRadio(seed=5)
        store = _store(tmp_path / "hub.db", 10)
        identity = BleIdentity.load_or_create(tmp_path / "ble")
        address = str(identity.address)
        clinic = ClinicStore(tmp_path / "clinic.db")
        async with powered_hub(radio, store, tmp_path / "ble"):
            gateway, controller = _gateway(radio, tmp_path / "gw", identity.passkey)
            await sync_hub(gateway, address, clinic, policy=QUICK)
            await _close(radio, gateway, controller)
            (tmp_path / "gw" / "gateway-bonds.json").unlink()  # the gateway's half is gone
            store.append_many([NewRecord("epoch", {"i": 10}, "s2")])
            unattended, controller = _gateway(radio, tmp_path / "gw", None)  # Just Works only
            with pytest.raises(HubRefusedError, match="pair with the passkey printed on the hub"):
                await sync_hub(unattended, address, clinic, policy=QUICK)
            await _close(radio, unattended, controller)
            attended, controller = _gateway(radio, tmp_path / "gw", identity.passkey)
            again = await sync_hub(attended, address, clinic, policy=QUICK)
            assert (
                again.new_records == 1 and attended.backend_kwargs["bumble"].delegate.prompts == 1
            )
            await _close(radio, attended, controller)
        clinic.close()
        store.close()

    asyncio.run(main())


def test_bench_sync_through_hub_restarts_json() -> None:
    """`cervical bench sync --runs R --hub-restarts K --json`: a real hub daemon killed and
    restarted mid-sync; the figures the README quotes come from this command."""
    import subprocess
    import sys

    cervical = str(Path(sys.executable).with_name("cervical"))
    r = subprocess.run(
        [cervical, "bench", "sync", "--runs", "1", "--hub-restarts", "1", "--records", "400",
         "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"runs", "runs_lossless", "hub_restarts", "cuts", "gave_up"} <= set(figures)
    assert figures["runs"] == figures["runs_lossless"] == 1 and figures["gave_up"] == 0
    assert figures["hub_restarts"] == 1 and figures["cuts"] > 0
