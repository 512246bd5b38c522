"""The BLE service of the hub daemon: opens the HCI transport, brings up the GATT server with
the hub's persistent identity and bonds, advertises, and serves until the daemon stops.

Transports (bumble's names): ``hci-socket:0`` for the Raspberry Pi's own controller (the
adapter must be down and not held by bluetoothd; the service needs CAP_NET_ADMIN),
``usb:0`` for a USB dongle, ``tcp-client:HOST:PORT`` for the virtual radio
(``cervical radio serve``) in tests and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from bumble.core import UUID, AdvertisingData
from bumble.device import Device, DeviceConfiguration
from bumble.hci import HCI_Error
from bumble.host import Host
from bumble.transport import open_transport
from bumble.transport.common import TransportLostError, TransportSink, TransportSource

from edge_runtime.ble.identity import BONDS_FILE, BleIdentity
from edge_runtime.ble.server import CervicalGattServer, HubAccess
from edge_runtime.common.atomic import atomic_path
from edge_runtime.contracts import gatt
from edge_runtime.contracts.anthropometrics import Anthropometrics, write_profile
from edge_runtime.contracts.bonds import DurableJsonKeyStore
from edge_runtime.contracts.guided_test import GuidedTestError, GuidedTestResult, StepProgress
from edge_runtime.contracts.record_payloads import EventRecord, ModelRecord
from edge_runtime.hub.config import BleSettings
from edge_runtime.hub.daemon import HubContext, Service
from edge_runtime.hub.storage import HubStore

log = logging.getLogger(__name__)


def software_version() -> str:
    try:
        return metadata.version("cervical")
    except metadata.PackageNotFoundError:
        return "unknown"


def hub_device(
    identity: BleIdentity,
    state_dir: Path,
    source: TransportSource,
    sink: TransportSink,
    name: str,
) -> Device:
    """A bumble device with the hub's static random address, IRK and file key store."""
    config = DeviceConfiguration(
        name=name,
        address=identity.address,
        irk=identity.irk,
        advertising_data=bytes(
            AdvertisingData(
                [
                    (AdvertisingData.FLAGS, bytes([0x06])),  # LE general discoverable, no BR/EDR
                    (
                        AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                        bytes(UUID(gatt.CERVICAL_SERVICE)),
                    ),
                ]
            )
        ),
        scan_response_data=bytes(
            AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()[:29])])
        ),
    )
    device = Device(config=config, host=Host(source, sink))
    namespace = str(identity.address).removesuffix("/P")
    device.keystore = DurableJsonKeyStore(namespace, state_dir / BONDS_FILE)  # secrets: 0600
    return device


class DaemonHubAccess:
    """``HubAccess`` over the daemon's context: profile and model changes take effect at once
    (the open session closes under the old ones) and are recorded. A fresh hub (no model yet)
    keeps a profile it is given and starts measuring with the first model it installs."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx
        self.store: HubStore = ctx.store

    def model_version(self) -> str:
        return "" if self.ctx.pipeline is None else self.ctx.pipeline.bundle_version

    def profile(self) -> Anthropometrics:
        return self.ctx.profile

    async def set_profile(self, profile: Anthropometrics) -> None:
        with atomic_path(self.ctx.config.profile, durable=True) as tmp:  # a power cut: old or new
            write_profile(profile, tmp)
        self.ctx.profile = profile
        changed = EventRecord("profile_changed", {"source": "ble", "profile": profile.to_dict()})
        if self.ctx.pipeline is None:
            self.store.append(changed.KIND, changed.to_dict())
        else:
            self.ctx.pipeline.reconfigure(profile=profile)
            self.ctx.pipeline.store_record(changed)

    def start_test(self, listener: Callable[[StepProgress | GuidedTestResult], None]) -> None:
        pipeline = self.ctx.pipeline
        if pipeline is None:
            raise GuidedTestError("no model is installed: a test needs one", "no_model")
        pipeline.start_test()  # (refusals leave the listener of the test that runs)
        pipeline.test_listener = listener

    def abort_test(self, words: str) -> bool:
        return self.ctx.pipeline is not None and self.ctx.pipeline.abort_test(words)

    def guided_test_running(self) -> bool:
        return self.ctx.pipeline is not None and self.ctx.pipeline.guided_test_running

    async def install_model(self, bundle: Path) -> str:
        installed = await asyncio.to_thread(self.ctx.slots.install, bundle, self.ctx.profile)
        pipeline = self.ctx.pipeline
        if pipeline is None:
            pipeline = self.ctx.start_pipeline(installed)
        else:
            pipeline.reconfigure(bundle=installed)
        version = pipeline.bundle_version
        pipeline.store_record(ModelRecord(version))
        return version


async def run_gatt_server(
    hub: HubAccess,
    settings: BleSettings,
    stop: asyncio.Event,
    source: TransportSource,
    sink: TransportSink,
) -> CervicalGattServer:
    state_dir = settings.state_dir
    identity = BleIdentity.load_or_create(state_dir)
    device = hub_device(identity, state_dir, source, sink, settings.name)
    server = CervicalGattServer(device, hub, identity, state_dir, software_version())
    await device.power_on()
    interval = settings.advertising_interval_ms
    await device.start_advertising(
        auto_restart=True, advertising_interval_min=interval, advertising_interval_max=interval
    )
    log.info("BLE: advertising as %s (%s)", settings.name, identity.address)
    _log_link_races_briefly(asyncio.get_running_loop())
    lost = getattr(source, "terminated", None)  # the HCI transport went away
    waits = [asyncio.ensure_future(stop.wait())] + ([asyncio.ensure_future(lost)] if lost else [])
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            raise ConnectionError("the HCI transport closed")
    finally:
        for waiter in waits:
            waiter.cancel()
        with contextlib.suppress(Exception):  # first: no advertising restart on disconnection
            await device.stop_advertising()
        for connection in list(device.connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()
    return server


def _log_link_races_briefly(loop: asyncio.AbstractEventLoop) -> None:
    """bumble's background tasks race dropped links (an LTK reply for a connection that just
    vanished, a command on a closing transport): one warning line each, not a traceback; any
    other unhandled exception still goes to the default handler."""
    fallback = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, HCI_Error | TransportLostError):
            log.warning("BLE: %s (%s)", exc, context.get("message", "background task"))
        elif fallback is not None:
            fallback(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def ble_service(settings: BleSettings) -> Service:
    """The daemon service (``run_hub(services=[...])``) for these settings."""

    async def service(ctx: HubContext, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with await open_transport(settings.transport) as transport:
                    hub = DaemonHubAccess(ctx)
                    source, sink = transport.source, transport.sink
                    await run_gatt_server(hub, settings, stop, source, sink)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the radio is gone or not there: retry, keep measuring
                log.error("BLE: %s: %s (retrying in 5 s)", settings.transport, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5.0)

    return service
