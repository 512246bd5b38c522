"""Which radio the gateway talks through: the platform's own (bleak's default backend: BlueZ,
CoreBluetooth, WinRT, Android) or bumble (a virtual radio, or a controller bumble drives
directly). The gateway's code builds every scanner and client here and otherwise uses only
bleak's public API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import BaseBleakScanner
from bumble.controller import Controller

from ble_gateway.bumble_backend import BleakClientBumble, BleakScannerBumble, BumbleAdapter
from ble_gateway.errors import HubNotFoundError

DEFAULT_STATE_DIR = Path.home() / ".local" / "share" / "cervical-gateway"


@dataclass(frozen=True)
class GatewayRadio:
    scanner_backend: type[BaseBleakScanner] | None = None  # None: the platform's
    client_backend: type[BaseBleakClient] | None = None
    backend_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = "system Bluetooth"

    def scanner(self, **kwargs: Any) -> BleakScanner:
        return BleakScanner(backend=self.scanner_backend, **self.backend_kwargs, **kwargs)

    def client(self, device: BLEDevice | str, **kwargs: Any) -> BleakClient:
        return BleakClient(device, backend=self.client_backend, **self.backend_kwargs, **kwargs)

    async def find(self, service_uuid: str, address: str | None, timeout_s: float) -> BLEDevice:
        """The first device advertising ``service_uuid`` (and with ``address``, if given)."""

        def match(device: BLEDevice, adv: Any) -> bool:
            if address is not None:
                return device.address.upper() == address.upper()
            return service_uuid in adv.service_uuids

        found = await BleakScanner.find_device_by_filter(
            match,
            timeout=timeout_s,
            backend=self.scanner_backend,  # type: ignore[arg-type]  # None: the platform's
            **self.backend_kwargs,
        )
        if found is None:
            what = address or "a Cervical hub"
            raise HubNotFoundError(
                f"{what} not found within {timeout_s:.0f} s ({self.description})"
            )
        return found


def system_radio() -> GatewayRadio:
    return GatewayRadio()


def bumble_radio(
    transport: str | Controller,
    state_dir: Path = DEFAULT_STATE_DIR,
    passkey: Callable[[], int | None] | None = None,
) -> GatewayRadio:
    """bumble as the radio: ``transport`` is a bumble transport name
    (``tcp-client:127.0.0.1:9101`` for the virtual radio, ``usb:0`` for a dongle) or an
    in-process virtual controller. ``passkey`` answers the hub's passkey (None: Just Works)."""
    adapter = BumbleAdapter.get(transport, state_dir, passkey)
    name = transport if isinstance(transport, str) else "in-process virtual radio"
    return GatewayRadio(
        BleakScannerBumble, BleakClientBumble, {"bumble": adapter}, f"bumble on {name}"
    )


def parse_radio(
    spec: str, state_dir: Path, passkey: Callable[[], int | None] | None
) -> GatewayRadio:
    """``system`` or ``bumble:TRANSPORT`` (e.g. ``bumble:tcp-client:127.0.0.1:9101``)."""
    if spec == "system":
        return system_radio()
    if spec.startswith("bumble:") and len(spec) > len("bumble:"):
        return bumble_radio(spec.removeprefix("bumble:"), state_dir, passkey)
    raise ValueError(f"radio {spec!r}: use 'system' or 'bumble:TRANSPORT'")
