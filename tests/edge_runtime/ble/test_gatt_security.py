"""Who may do what over BLE: no bond or a Just Works bond reads nothing and writes nothing; a
passkey bond (MITM-protected) can, and survives a hub restart. And a fuzzed server stays up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from bleak.exc import BleakGATTProtocolError
from hypothesis import given, settings
from hypothesis import strategies as st

from ble_gateway.hub_client import HubRefusedError, RetryPolicy, read_status, set_profile, sync_hub
from ble_gateway.radio import bumble_radio
from ble_gateway.store import ClinicStore
from edge_runtime.ble.radio import VirtualRadio
from edge_runtime.contracts import gatt
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.hub.storage import HubStore, NewRecord
from tests.edge_runtime.ble.harness import PROFILE, StoreHub, running_hub

QUICK = RetryPolicy(max_attempts=3, connect_timeout_s=5.0, response_timeout_s=5.0)


def _filled_store(path: Path, n: int) -> HubStore:
    store = HubStore(path)
    store.append_many([NewRecord("epoch", {"i": i}, "s1") for i in range(n)])
    return store


def test_only_a_passkey_bond_gets_data_and_it_survives_a_hub_restart(tmp_path: Path) -> None:
    async def main() -> None:
        radio = VirtualRadio(seed=1)
        store = _filled_store(tmp_path / "hub.db", 30)
        hub = StoreHub(store)
        clinic = ClinicStore(tmp_path / "clinic.db")
        async with running_hub(radio, hub, tmp_path / "ble") as identity:
            address = str(identity.address)
            # an unpaired central: connected, but every Cervical characteristic is refused
            stranger = bumble_radio(radio.controller(), tmp_path / "stranger", passkey=None)
            async with stranger.client(address, timeout=5.0) as client:
                for uuid in (gatt.STATUS, gatt.PROFILE):
                    with pytest.raises(BleakGATTProtocolError) as refused:
                        await client.read_gatt_char(uuid)
                    assert refused.value.code == 5  # insufficient authentication
                for uuid, value in (
                    (gatt.RECORD_CONTROL, bytes(gatt.RacpRequest(gatt.RacpOp.REPORT))),
                    (gatt.MODEL_CONTROL, bytes(gatt.ModelRequest(gatt.ModelOp.ABORT))),
                    (gatt.PROFILE, bytes(gatt.ProfilePayload(PROFILE))),
                ):
                    with pytest.raises(BleakGATTProtocolError):
                        await client.write_gatt_char(uuid, value, response=True)
                # device information stays public
                dis = client.services.get_service(gatt.DEVICE_INFORMATION_SERVICE)
                assert dis is not None
            # a Just Works central (no passkey): pairing refused, nothing readable
            just_works = bumble_radio(radio.controller(), tmp_path / "jw", passkey=None)
            with pytest.raises(HubRefusedError, match="passkey"):
                await sync_hub(just_works, address, clinic, policy=QUICK)
            # the wrong passkey: refused the same way
            wrong = (identity.passkey + 1) % 1_000_000
            guesser = bumble_radio(radio.controller(), tmp_path / "guess", passkey=lambda: wrong)
            with pytest.raises(HubRefusedError):
                await read_status(guesser, address, policy=QUICK)
            # the passkey from the hub's label: a MITM-protected bond, full access
            asked: list[int] = []

            def passkey() -> int:
                asked.append(1)
                return identity.passkey

            clinician = bumble_radio(radio.controller(), tmp_path / "clinic-gw", passkey=passkey)
            result = await sync_hub(clinician, address, clinic, policy=QUICK)
            assert result.new_records == 30 and store.unsynced_count == 0
            assert len(asked) == 1
        # the hub restarts (same state dir: identity and bonds from disk); no new pairing
        store.append_many([NewRecord("event", {"event": "after_restart"})])
        async with running_hub(radio, hub, tmp_path / "ble") as again:
            assert again == identity
            status, profile = await read_status(clinician, address, policy=QUICK)
            assert status.unsynced == 1 and profile == PROFILE
            new = Anthropometrics("male", 1.80, 80.0, 0.12, 0.40, 4.6)
            assert await set_profile(clinician, address, new, policy=QUICK) == new
            assert hub.wearer == new
            assert len(asked) == 1  # the bond was reused, not re-paired
        bonds = json.loads((tmp_path / "ble" / "bonds.json").read_text())
        (peers,) = bonds.values()
        assert all(keys["ltk"]["authenticated"] for keys in peers.values())
        assert len(peers) == 1  # only the passkey bond was stored
        clinic.close()
        store.close()

    asyncio.run(main())


WRITABLE = (gatt.RECORD_CONTROL, gatt.MODEL_CONTROL, gatt.MODEL_DATA, gatt.PROFILE)


def test_fuzzed_writes_get_att_errors_and_the_server_stays_up(tmp_path: Path) -> None:
    """Random payloads to every writable characteristic: accepted or an ATT error response,
    never a crash (the benchmark runs 10,000 per characteristic)."""

    async def main() -> None:
        radio = VirtualRadio(seed=2)
        store = _filled_store(tmp_path / "hub.db", 3)
        async with running_hub(radio, StoreHub(store), tmp_path / "ble") as identity:
            gateway = bumble_radio(radio.controller(), tmp_path / "gw", lambda: identity.passkey)
            async with gateway.client(str(identity.address), timeout=5.0, pair=True) as client:
                cases: list[tuple[str, bytes]] = []

                @settings(max_examples=150, deadline=None, database=None)
                @given(st.sampled_from(WRITABLE), st.binary(max_size=240))
                def collect(uuid: str, data: bytes) -> None:
                    cases.append((uuid, data))

                collect()
                codes = []
                for uuid, data in cases:
                    try:
                        await client.write_gatt_char(uuid, data, response=True)
                    except BleakGATTProtocolError as exc:
                        codes.append(exc.code)
                assert set(codes) <= {0x07, 0x0D, 0x80, 0x81, 0xFE}
                assert len(codes) > len(cases) / 2
                status = gatt.StatusPayload.from_bytes(
                    bytes(await client.read_gatt_char(gatt.STATUS))
                )
                assert status.last_seq == 3
        store.close()

    asyncio.run(main())
