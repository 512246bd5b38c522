"""A hub GATT server and gateways on one in-process virtual radio (the cross-process tests run
the real daemon instead)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from bumble.transport.common import AsyncPipeSink

from edge_runtime.ble.identity import BleIdentity
from edge_runtime.ble.radio import VirtualRadio
from edge_runtime.ble.server import WithoutGuidedTests
from edge_runtime.ble.service import run_gatt_server
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.hub.config import BleSettings
from edge_runtime.hub.models import InstallError
from edge_runtime.hub.storage import HubStore

PROFILE = Anthropometrics("female", 1.64, 61.0, 0.105, 0.36, 4.1)


class StoreHub(WithoutGuidedTests):
    """HubAccess over a real record store (no model: installs are refused)."""

    def __init__(self, store: HubStore) -> None:
        self.store = store
        self.wearer = PROFILE

    def model_version(self) -> str:
        return "1.0.0"

    def profile(self) -> Anthropometrics:
        return self.wearer

    async def set_profile(self, profile: Anthropometrics) -> None:
        self.wearer = profile

    async def install_model(self, bundle: Path) -> str:
        raise InstallError("this test hub installs nothing")


@contextlib.asynccontextmanager
async def running_hub(
    radio: VirtualRadio, hub: StoreHub, state_dir: Path
) -> AsyncIterator[BleIdentity]:
    stop = asyncio.Event()
    controller = radio.controller()
    settings = BleSettings(state_dir=state_dir, advertising_interval_ms=20.0)
    task = asyncio.ensure_future(
        run_gatt_server(hub, settings, stop, controller, AsyncPipeSink(controller))
    )
    for _ in range(100):
        if (state_dir / "identity.json").exists():
            break
        await asyncio.sleep(0.02)
    try:
        yield BleIdentity.load_or_create(state_dir)
    finally:
        stop.set()
        await task
        radio.unplug(controller)
