"""A bleak backend on bumble, so the gateway's code (which uses only bleak's public API:
``BleakScanner``, ``BleakClient``) runs unchanged on a virtual radio in tests and the demo, and on
any controller bumble can drive (a USB dongle with ``usb:0``).

``BumbleAdapter`` is what an operating system's Bluetooth stack is to the other backends: one
powered-on bumble device per process and transport, with a persistent identity (static random
address, IRK) and a key store file, shared by scanners and clients. Select it with::

    adapter = BumbleAdapter.get("tcp-client:127.0.0.1:9101", state_dir, passkey=lambda: 123456)
    BleakScanner(backend=BleakScannerBumble, bumble=adapter)
    BleakClient(address, backend=BleakClientBumble, bumble=adapter)

Every request races the link: a dropped link fails the request at once with ``BleakError``
instead of leaving it to the 30 s ATT timeout (bumble cancels pending requests on disconnection,
but one sent in the window before the event would wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid as uuid_lib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble import att, core
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData, PhysicalTransport
from bumble.device import Advertisement, Connection, Device, DeviceConfiguration, Peer
from bumble.gatt import Characteristic
from bumble.gatt_client import CharacteristicProxy
from bumble.hci import Address, HCI_Error, HCI_ErrorCode
from bumble.host import Host
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

from ble_gateway.errors import GatewayError
from edge_runtime.common.atomic import write_atomic
from edge_runtime.contracts.bonds import DurableJsonKeyStore

log = logging.getLogger(__name__)
T = TypeVar("T")
PIN_OR_KEY_MISSING = HCI_ErrorCode.PIN_OR_KEY_MISSING_ERROR
MTU = 247
IDENTITY_FILE = "gateway-identity.json"
BONDS_FILE = "gateway-bonds.json"

CANCEL_GRACE_S = 5.0  # how long a controller may take to end a cancelled connection attempt

PasskeySource = Callable[[], int | None]


class BondLostError(BleakError, GatewayError):
    """The hub rejected the bond's key (*PIN or Key Missing*): it no longer knows this gateway.
    The gateway's half of the bond is deleted; the next connection pairs with the passkey."""

    def __init__(self, address: str, can_repair: bool) -> None:
        then = (
            "pairing again with the passkey on its label"
            if can_repair
            else "pair again with the passkey on its label"
        )
        super().__init__(f"{address}: the hub no longer knows this gateway: {then}")
        self.address, self.can_repair = address, can_repair


def _key_missing(exc: BaseException) -> bool:
    """Whether a failed encryption was the peer's *PIN or Key Missing* (HCI error 0x06)."""
    cause = exc.__cause__
    return isinstance(cause, HCI_Error) and cause.error_code == PIN_OR_KEY_MISSING


class _GatewayPairingDelegate(PairingDelegate):
    """Keyboard only (passkey entry); with no passkey source, no input/output (Just Works)."""

    def __init__(self, passkey: PasskeySource | None) -> None:
        keys = PairingDelegate.KeyDistribution
        distribution = keys.DISTRIBUTE_ENCRYPTION_KEY | keys.DISTRIBUTE_IDENTITY_KEY
        io = (
            PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY
            if passkey is not None
            else PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
        )
        super().__init__(io, distribution, distribution)
        self.passkey = passkey
        self.prompts = 0

    async def get_number(self) -> int | None:
        self.prompts += 1
        return None if self.passkey is None else self.passkey()


class BumbleAdapter:
    """One bumble central per process and transport (see the module docstring)."""

    _adapters: ClassVar[dict[str, BumbleAdapter]] = {}

    def __init__(
        self,
        transport: str | Controller,
        state_dir: Path,
        passkey: PasskeySource | None = None,
    ) -> None:
        self.transport, self.state_dir = transport, state_dir
        self.delegate = _GatewayPairingDelegate(passkey)
        self.can_pair = passkey is not None  # a passkey source: pairing needs no user here
        self._device: Device | None = None
        self._closer: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def get(
        cls, transport: str | Controller, state_dir: Path, passkey: PasskeySource | None = None
    ) -> BumbleAdapter:
        key = f"{transport if isinstance(transport, str) else id(transport)}|{state_dir}"
        if key not in cls._adapters:
            cls._adapters[key] = cls(transport, state_dir, passkey)
        return cls._adapters[key]

    async def device(self) -> Device:
        async with self._lock:
            if self._device is None:
                self._device = await self._power_on()
            return self._device

    async def _power_on(self) -> Device:
        address, irk = _gateway_identity(self.state_dir)
        config = DeviceConfiguration(name="Cervical gateway", address=address, irk=irk)
        if isinstance(self.transport, Controller):
            host = Host(self.transport, AsyncPipeSink(self.transport))
        else:
            opened = await open_transport(self.transport)
            self._closer = opened
            host = Host(opened.source, opened.sink)
        device = Device(config=config, host=host)
        device.keystore = DurableJsonKeyStore(str(address), self.state_dir / BONDS_FILE)
        device.pairing_config_factory = lambda _: PairingConfig(
            sc=True,
            mitm=True,
            bonding=True,
            delegate=self.delegate,
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )
        await device.power_on()
        return device

    async def close(self) -> None:
        if self._device is not None:
            for connection in list(self._device.connections.values()):
                with contextlib.suppress(Exception):
                    await connection.disconnect()
            with contextlib.suppress(Exception):
                await self._device.host.reset()
        if self._closer is not None:
            await self._closer.close()
        self._device = self._closer = None
        for key, adapter in list(self._adapters.items()):
            if adapter is self:
                del self._adapters[key]


def _gateway_identity(state_dir: Path) -> tuple[Address, bytes]:
    path = state_dir / IDENTITY_FILE
    if path.exists():
        data = json.loads(path.read_text())
        return Address(data["address"], Address.RANDOM_DEVICE_ADDRESS), bytes.fromhex(data["irk"])
    state_dir.mkdir(parents=True, exist_ok=True)
    raw = bytearray(secrets.token_bytes(6))
    raw[5] |= 0xC0  # a static random address
    address, irk = Address(bytes(raw), Address.RANDOM_DEVICE_ADDRESS), secrets.token_bytes(16)
    data = {"address": str(address), "irk": irk.hex()}
    write_atomic(path, json.dumps(data), mode=0o600, durable=True)  # the IRK is a secret
    return address, irk


def _uuid_str(uuid: UUID) -> str:
    return str(uuid_lib.UUID(bytes=bytes(reversed(uuid.to_bytes(force_128=True)))))


_PROPERTY_NAMES = {
    Characteristic.Properties.BROADCAST: "broadcast",
    Characteristic.Properties.READ: "read",
    Characteristic.Properties.WRITE_WITHOUT_RESPONSE: "write-without-response",
    Characteristic.Properties.WRITE: "write",
    Characteristic.Properties.NOTIFY: "notify",
    Characteristic.Properties.INDICATE: "indicate",
    Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES: "authenticated-signed-writes",
    Characteristic.Properties.EXTENDED_PROPERTIES: "extended-properties",
}


class BleakScannerBumble(BaseBleakScanner):
    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        bumble: BumbleAdapter,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self.adapter = bumble
        self.active = scanning_mode == "active"
        self._device: Device | None = None
        self._seen: dict[str, tuple[str | None, list[str]]] = {}

    async def start(self) -> None:
        self.seen_devices = {}
        self._seen.clear()
        self._device = await self.adapter.device()
        self._device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self._device.start_scanning(active=self.active, filter_duplicates=False)

    async def stop(self) -> None:
        if self._device is not None:
            self._device.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
            with contextlib.suppress(Exception):
                await self._device.stop_scanning()

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        data = advertisement.data
        address = str(advertisement.address)
        name, uuids = self._seen.get(address, (None, []))
        local = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(
            AdvertisingData.SHORTENED_LOCAL_NAME
        )
        if isinstance(local, str | bytes):
            name = local.decode() if isinstance(local, bytes) else local
        found = data.get(AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
        if isinstance(found, list) and found:
            uuids = [_uuid_str(u) for u in found]
        self._seen[address] = (name, uuids)
        if not self.is_allowed_uuid(uuids):
            return
        adv = AdvertisementData(
            local_name=name,
            manufacturer_data={},
            service_data={},
            service_uuids=uuids,
            tx_power=None,
            rssi=advertisement.rssi,
            platform_data=(advertisement,),
        )
        device = self.create_or_update_device(address, address, name, advertisement, adv)
        self.call_detection_callbacks(device, adv)


class BleakClientBumble(BaseBleakClient):
    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        bumble: BumbleAdapter,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self.adapter = bumble
        self._connection: Connection | None = None
        self._lost: asyncio.Future[None] | None = None
        self._proxies: dict[int, CharacteristicProxy[bytes]] = {}

    # -- connection --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection else 23

    @property
    def is_connected(self) -> bool:
        return self._lost is not None and not self._lost.done()

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        device = await self.adapter.device()
        connection = await self._open_link(device)
        self._connection = connection
        self._lost = asyncio.get_running_loop().create_future()

        def on_disconnection(reason: int) -> None:
            if self._lost is not None and not self._lost.done():
                self._lost.set_result(None)
                if self._disconnected_callback is not None:
                    self._disconnected_callback()

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)
        try:
            await self._secure(device, connection, pair)
            await self._race(Peer(connection).request_mtu(MTU))
            self.services = await self._discover(connection)
        except BaseException:
            await self.disconnect()
            raise

    async def _open_link(self, device: Device) -> Connection:
        """A new LE link to the peer. bumble owns the connect timeout: on expiry it sends LE
        Create Connection Cancel and waits for the controller to end the attempt, so no
        connection can complete later behind the gateway's back (an orphan link holds the hub,
        which then stops advertising). A link this adapter still holds to the peer from an
        earlier attempt is closed first, for the same reason."""
        peer = Address.from_string_for_transport(self.address, PhysicalTransport.LE)
        leftover = device.find_connection_by_bd_addr(peer, transport=PhysicalTransport.LE)
        if leftover is not None:
            log.info("%s: closing a link left from an earlier attempt", self.address)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(leftover.disconnect(), CANCEL_GRACE_S)
        try:
            return await asyncio.wait_for(
                device.connect(self.address, transport=PhysicalTransport.LE, timeout=self._timeout),
                self._timeout + CANCEL_GRACE_S,  # the controller never answered the cancel
            )
        except (core.TimeoutError, TimeoutError) as exc:
            raise BleakError(
                f"{self.address}: not reachable within {self._timeout:g} s (not advertising: "
                "switched off, out of range or still starting)"
            ) from exc
        except Exception as exc:
            raise BleakError(f"{self.address}: cannot connect: {exc!r}") from exc

    async def _secure(self, device: Device, connection: Connection, pair: bool) -> None:
        """Encrypt with the bond's key, or pair when there is none. A hub that answers the
        bond's key with *PIN or Key Missing* has lost its half of the bond (a reset, a wiped
        store): ours is deleted so that the next connection pairs afresh, which takes the
        passkey; without a passkey source that is the user's to do (BondLostError)."""
        keys = await device.keystore.get(str(connection.peer_address)) if device.keystore else None
        if keys is not None:
            try:
                await self._race(connection.encrypt())
            except BleakError as exc:
                if not _key_missing(exc):
                    raise
                if device.keystore is not None:
                    with contextlib.suppress(KeyError):
                        await device.keystore.delete(str(connection.peer_address))
                raise BondLostError(self.address, can_repair=self.adapter.can_pair) from exc
        elif pair:
            try:
                await self._race(connection.pair())
            except BleakError as exc:  # as an OS stack does: the link stays, unencrypted;
                log.warning("%s: pairing failed: %s", self.address, exc)  # reads fail 0x05

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is not None and self.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), 2.0)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        await self._race(self._require().pair())

    async def unpair(self) -> None:
        device = await self.adapter.device()
        if device.keystore is not None:
            with contextlib.suppress(KeyError):
                await device.keystore.delete(self.address)

    def _require(self) -> Connection:
        if self._connection is None or not self.is_connected:
            raise BleakError(f"{self.address}: not connected")
        return self._connection

    async def _race(self, request: Awaitable[T]) -> T:
        """The request, or BleakError when the link drops or the timeout passes first."""
        task: asyncio.Future[T] = asyncio.ensure_future(request)
        lost = self._lost
        assert lost is not None
        waiters: set[asyncio.Future[Any]] = {task, lost}
        done, _ = await asyncio.wait(
            waiters, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done and not task.cancelled():
            exc = task.exception()
            if isinstance(exc, att.ATT_Error):
                raise BleakGATTProtocolError(int(exc.error_code)) from exc
            if exc is not None:
                raise BleakError(f"{self.address}: {exc!r}") from exc
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if lost.done():
            raise BleakError(f"{self.address}: disconnected")
        raise BleakError(f"{self.address}: no answer within {self._timeout} s")

    async def _discover(self, connection: Connection) -> BleakGATTServiceCollection:
        peer = Peer(connection)
        collection = BleakGATTServiceCollection()
        for service in await self._race(peer.discover_services()):
            bleak_service = BleakGATTService(service, service.handle, _uuid_str(service.uuid))
            collection.add_service(bleak_service)
            for char in await self._race(peer.discover_characteristics(service=service)):
                props = [n for bit, n in _PROPERTY_NAMES.items() if char.properties & bit]
                bleak_char = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    _uuid_str(char.uuid),
                    props,  # type: ignore[arg-type]
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                self._proxies[char.handle] = char
                for desc in await self._race(peer.discover_descriptors(char)):
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, _uuid_str(desc.type), bleak_char)
                    )
        return collection

    # -- I/O ---------------------------------------------------------------------------------
    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        client = self._require().gatt_client
        return bytearray(await self._race(client.read_value(characteristic.handle)))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        client = self._require().gatt_client
        return bytearray(await self._race(client.read_value(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        client = self._require().gatt_client
        await self._race(client.write_value(characteristic.handle, bytes(data), response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        client = self._require().gatt_client
        await self._race(client.write_value(descriptor.handle, bytes(data), True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        client = self._require().gatt_client
        proxy = self._proxies[characteristic.handle]
        await self._race(
            client.subscribe(proxy, lambda value: callback(bytearray(value)), prefer_notify=True)
        )

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        client = self._require().gatt_client
        await self._race(client.unsubscribe(self._proxies[characteristic.handle]))
