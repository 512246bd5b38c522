"""What the gateway does with a hub, over bleak's public API: sync records into the clinic store,
push a model bundle, set the wearer's profile, read the status.

Links drop and hubs restart (a power cut, an update). Every operation runs in attempts: connect
(pairing on first contact), work until done or until the link drops, then back off (50 ms
doubling to 5 s, with jitter) and go on from where it stood. Sync resumes from the last record
the clinic store holds, a model push from the last offset the hub confirmed. An operation gives
up only after ``max_attempts`` consecutive attempts that made no progress. A hub that has lost its
half of the bond is reported in words (HubRefusedError) unless a passkey source lets the gateway
pair again.

Sync order, for nothing lost and nothing duplicated: REPORT from the store's last seq; each
notified frame is checked (CRC, chain of seqs); the checked records are committed in one
transaction (also the partial batch of an attempt cut short); only then is ACK sent to the hub,
whose cursor frees them for retention. The clinic store's insert is idempotent on
(device, seq), so a record re-sent because an ACK was lost is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from ble_gateway.bumble_backend import BondLostError
from ble_gateway.errors import GatewayError
from ble_gateway.radio import GatewayRadio
from ble_gateway.store import ClinicStore, DeviceKey
from edge_runtime.contracts import gatt
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.bundle_archive import pack_bundle

log = logging.getLogger(__name__)
T = TypeVar("T")

Progress = Callable[[int, int], None]  # (done, total)


class HubRefusedError(GatewayError):
    """The hub refused the request (its reason is in the message); retrying will not help."""


class LinkLostError(GatewayError):
    """The attempt ended early (link dropped, timeout, bad frame); the next one goes on."""


@dataclass
class RetryPolicy:
    max_attempts: int = 20  # consecutive attempts without progress before giving up
    backoff_start_s: float = 0.05
    backoff_max_s: float = 5.0
    connect_timeout_s: float = 10.0
    response_timeout_s: float = 30.0
    install_timeout_s: float = 300.0


class HubConnection:
    """One connected, subscribed hub: requests with their indicated responses."""

    def __init__(self, client: BleakClient, policy: RetryPolicy) -> None:
        self.client, self.policy = client, policy
        self.racp: asyncio.Queue[gatt.RacpResponse] = asyncio.Queue()
        self.model: asyncio.Queue[gatt.ModelResponse] = asyncio.Queue()
        self.decoder = gatt.RecordStreamDecoder()
        self.received: list[gatt.SyncRecord] = []
        self.lost = asyncio.Event()

    async def subscribe(self) -> None:
        def on_racp(_: Any, data: bytearray) -> None:
            with contextlib.suppress(gatt.ProtocolError):
                self.racp.put_nowait(gatt.RacpResponse.from_bytes(bytes(data)))

        def on_model(_: Any, data: bytearray) -> None:
            with contextlib.suppress(gatt.ProtocolError):
                self.model.put_nowait(gatt.ModelResponse.from_bytes(bytes(data)))

        def on_records(_: Any, data: bytearray) -> None:
            self.received += self.decoder.feed(bytes(data))

        await self.client.start_notify(gatt.RECORD_CONTROL, on_racp)
        await self.client.start_notify(gatt.MODEL_CONTROL, on_model)
        await self.client.start_notify(gatt.RECORDS, on_records)

    async def status(self) -> gatt.StatusPayload:
        return gatt.StatusPayload.from_bytes(bytes(await self.client.read_gatt_char(gatt.STATUS)))

    async def answer(self, queue: asyncio.Queue[T], timeout_s: float) -> T:
        getter = asyncio.ensure_future(queue.get())
        lost = asyncio.ensure_future(self.lost.wait())
        done, _ = await asyncio.wait(
            {getter, lost}, timeout=timeout_s, return_when="FIRST_COMPLETED"
        )
        for task in (getter, lost):
            task.cancel()
        if getter in done:
            return getter.result()
        raise LinkLostError("link lost" if lost in done else f"no response within {timeout_s} s")

    async def racp_request(self, request: gatt.RacpRequest, timeout_s: float) -> gatt.RacpResponse:
        return await self._request(gatt.RECORD_CONTROL, request, self.racp, timeout_s)

    async def model_request(
        self, request: gatt.ModelRequest, timeout_s: float
    ) -> gatt.ModelResponse:
        return await self._request(gatt.MODEL_CONTROL, request, self.model, timeout_s)

    async def _request(
        self, uuid: str, request: Any, queue: asyncio.Queue[T], timeout_s: float
    ) -> T:
        """Write a control-point request; the indicated response to the same op."""
        await self.client.write_gatt_char(uuid, bytes(request), response=True)
        while True:
            response = await self.answer(queue, timeout_s)
            if response.op is request.op:  # type: ignore[attr-defined]
                return response


async def with_attempts(
    radio: GatewayRadio,
    address: str,
    policy: RetryPolicy,
    work: Callable[[HubConnection], Any],
    progress_marker: Callable[[], int],
) -> Any:
    """Run ``work`` on fresh connections until it returns (see the module docstring)."""
    failures, delay = 0, policy.backoff_start_s
    while True:
        before = progress_marker()
        error: Exception
        try:
            async with _connected(radio, address, policy) as hub:
                return await work(hub)
        except BondLostError as exc:
            if not exc.can_repair:
                raise HubRefusedError(str(exc)) from exc
            log.warning("%s", exc)  # the next connection pairs again with the passkey
            error = exc
        except BleakGATTProtocolError as exc:
            if exc.code in (
                BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION,
                BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION,
            ):
                raise HubRefusedError(
                    f"{address}: the hub needs a passkey-protected bond; pair with the passkey "
                    "printed on the hub (Just Works is refused)"
                ) from exc
            error = exc
        except (BleakError, LinkLostError, TimeoutError, OSError, gatt.ProtocolError) as exc:
            error = exc
        made_progress = progress_marker() > before
        failures = 0 if made_progress else failures + 1
        delay = policy.backoff_start_s if made_progress else min(delay * 2, policy.backoff_max_s)
        if failures >= policy.max_attempts:
            raise LinkLostError(
                f"{address}: gave up after {failures} attempts without progress: {error}"
            ) from error
        log.info("%s: %s; retrying in %.2f s", address, error, delay)
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))


@contextlib.asynccontextmanager
async def _connected(
    radio: GatewayRadio, address: str | BLEDevice, policy: RetryPolicy
) -> AsyncIterator[HubConnection]:
    holder: list[HubConnection] = []

    def on_disconnect(_: BleakClient) -> None:
        if holder:
            holder[0].lost.set()

    client = radio.client(
        address, disconnected_callback=on_disconnect, timeout=policy.connect_timeout_s, pair=True
    )
    await client.connect()
    try:
        hub = HubConnection(client, policy)
        holder.append(hub)
        await hub.subscribe()
        yield hub
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


# -- sync ------------------------------------------------------------------------------------
@dataclass
class SyncResult:
    address: str
    device_id: int
    new_records: int
    last_seq: int
    hub_unsynced: int
    attempts: int


async def sync_hub(
    radio: GatewayRadio,
    address: str,
    store: ClinicStore,
    batch_records: int = 256,
    policy: RetryPolicy | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Sync every record the clinic store lacks from the hub at ``address``."""
    policy = policy or RetryPolicy()
    state = {"new": 0, "device": 0, "unsynced": 0, "attempts": 0, "total": 0}

    async def work(hub: HubConnection) -> None:
        state["attempts"] += 1
        status = await hub.status()
        key = DeviceKey(address.upper(), status.store_id.hex())
        device_id = state["device"] = store.device_id(key, status.model_version)
        after = store.last_seq(device_id)
        if not state["total"]:
            state["total"] = await _count(hub, after, policy)
        if after > status.acked_seq:  # committed last time, the ACK was lost with the link
            await hub.racp_request(
                gatt.RacpRequest(gatt.RacpOp.ACK, after), policy.response_timeout_s
            )
        while True:
            hub.decoder.start(after)
            hub.received = []
            try:
                response = await hub.racp_request(
                    gatt.RacpRequest(gatt.RacpOp.REPORT, after, batch_records),
                    policy.response_timeout_s,
                )
            finally:  # the checked prefix is committed even when the link dropped mid-batch
                got = list(hub.received)
                state["new"] += store.add_records(device_id, got)
                if got:
                    after = got[-1].seq
                    if progress:
                        progress(state["new"], max(state["total"], state["new"]))
            if response.status is gatt.RacpStatus.NO_RECORDS:
                break
            if response.status is not gatt.RacpStatus.SUCCESS:
                raise LinkLostError(f"report ended with {response.status.name}")
            if hub.decoder.error is not None or response.count != len(got):
                raise LinkLostError(
                    f"report of {response.count} record(s) delivered {len(got)} intact"
                    + (f" ({hub.decoder.error})" if hub.decoder.error else "")
                )
            ack = await hub.racp_request(
                gatt.RacpRequest(gatt.RacpOp.ACK, after), policy.response_timeout_s
            )
            state["unsynced"] = ack.count
        if after > 0:
            ack = await hub.racp_request(
                gatt.RacpRequest(gatt.RacpOp.ACK, after), policy.response_timeout_s
            )
            state["unsynced"] = ack.count

    await with_attempts(radio, address, policy, work, lambda: state["new"])
    return SyncResult(
        address,
        state["device"],
        state["new"],
        store.last_seq(state["device"]),
        state["unsynced"],
        state["attempts"],
    )


async def _count(hub: HubConnection, after: int, policy: RetryPolicy) -> int:
    response = await hub.racp_request(
        gatt.RacpRequest(gatt.RacpOp.COUNT, after), policy.response_timeout_s
    )
    return response.count


# -- model push ------------------------------------------------------------------------------
async def push_model(
    radio: GatewayRadio,
    address: str,
    bundle: Path,
    policy: RetryPolicy | None = None,
    progress: Progress | None = None,
) -> str:
    """Send a bundle (resuming after cuts) and have the hub verify and install it; returns the
    installed version. Raises HubRefusedError with the hub's reason when it does not install it."""
    policy = policy or RetryPolicy()
    archive = pack_bundle(bundle)
    digest = hashlib.sha256(archive).digest()
    version = str(json.loads((bundle / "manifest.json").read_text())["bundle_version"])
    state = {"confirmed": 0, "sent_since_begin": 0}
    running_before: list[str] = []  # the hub's model when the push started
    commit_unanswered = False

    async def work(hub: HubConnection) -> str:
        nonlocal commit_unanswered
        running = (await hub.status()).model_version
        if not running_before:
            running_before.append(running)
        elif commit_unanswered and running == version != running_before[0]:
            # a COMMIT whose answer was lost with the link did install this bundle: sending it
            # again would only be refused as "not newer"
            return running
        begin = await hub.model_request(
            gatt.ModelRequest(gatt.ModelOp.BEGIN, len(archive), digest), policy.response_timeout_s
        )
        if begin.status is not gatt.ModelStatus.OK:
            raise HubRefusedError(f"transfer refused: {begin.status.name} {begin.message}".strip())
        offset = begin.offset
        state["confirmed"] = max(state["confirmed"], offset)
        size = min(hub.client.mtu_size - gatt.ATT_HEADER_BYTES, gatt.MODEL_CHUNK_MAX) - 4
        while offset < len(archive):
            piece = archive[offset : offset + size]
            await hub.client.write_gatt_char(
                gatt.MODEL_DATA, bytes(gatt.ModelChunk(offset, piece)), response=True
            )
            offset += len(piece)
            state["confirmed"] = max(state["confirmed"], offset)
            if progress:
                progress(offset, len(archive))
        commit_unanswered = True
        done = await hub.model_request(
            gatt.ModelRequest(gatt.ModelOp.COMMIT), policy.install_timeout_s
        )
        commit_unanswered = False
        if done.status is gatt.ModelStatus.OK:
            return done.message
        if done.status in (gatt.ModelStatus.INCOMPLETE, gatt.ModelStatus.HASH_MISMATCH):
            raise LinkLostError(f"hub reports {done.status.name}; sending again")
        raise HubRefusedError(f"the hub refused the model: {done.status.name}: {done.message}")

    return str(await with_attempts(radio, address, policy, work, lambda: state["confirmed"]))


# -- profile and status ----------------------------------------------------------------------
async def set_profile(
    radio: GatewayRadio, address: str, profile: Anthropometrics, policy: RetryPolicy | None = None
) -> Anthropometrics:
    """Write the wearer's profile and read it back; returns what the hub now holds."""
    policy = policy or RetryPolicy()

    async def work(hub: HubConnection) -> Anthropometrics:
        await hub.client.write_gatt_char(
            gatt.PROFILE, bytes(gatt.ProfilePayload(profile)), response=True
        )
        echoed = gatt.ProfilePayload.from_bytes(
            bytes(await hub.client.read_gatt_char(gatt.PROFILE))
        )
        if echoed.profile != profile:
            raise HubRefusedError(f"the hub holds {echoed.profile}, not the profile written")
        return echoed.profile

    result: Anthropometrics = await with_attempts(radio, address, policy, work, lambda: 0)
    return result


async def read_status(
    radio: GatewayRadio, address: str, policy: RetryPolicy | None = None
) -> tuple[gatt.StatusPayload, Anthropometrics]:
    policy = policy or RetryPolicy()

    async def work(hub: HubConnection) -> tuple[gatt.StatusPayload, Anthropometrics]:
        raw = bytes(await hub.client.read_gatt_char(gatt.PROFILE))
        return await hub.status(), gatt.ProfilePayload.from_bytes(raw).profile

    result: tuple[gatt.StatusPayload, Anthropometrics] = await with_attempts(
        radio, address, policy, work, lambda: 0
    )
    return result
