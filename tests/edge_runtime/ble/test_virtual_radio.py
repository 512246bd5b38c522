"""The virtual radio's controller behaves as a real one where bumble's virtual one does not."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from bumble import hci

from edge_runtime.ble.radio import VirtualRadio


class _Host:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def on_packet(self, packet: bytes) -> None:
        self.packets.append(packet)


def test_no_encryption_event_is_reported_for_a_link_already_closed() -> None:
    """A cut during the encryption procedure: bumble's controller reported Encryption Change for
    the closed handle afterwards, and the host raised on it (seen under load in CI)."""

    async def main() -> None:
        controller: Any = VirtualRadio(seed=1).controller()
        host = _Host()
        controller.host = host
        peer = hci.Address("F3:22:9F:0D:3E:D6")
        connection = SimpleNamespace(peer_address=peer, handle=1)
        controller.on_le_encryption_change(connection, hci.HCI_ErrorCode.SUCCESS)
        await asyncio.sleep(0)
        assert host.packets == []  # closed: nothing reported
        controller.le_connections[peer] = connection
        controller.on_le_encryption_change(connection, hci.HCI_ErrorCode.SUCCESS)
        await asyncio.sleep(0)
        assert len(host.packets) == 1  # open: reported as before
        event = hci.HCI_Packet.from_bytes(host.packets[0])
        assert isinstance(event, hci.HCI_Encryption_Change_Event) and event.connection_handle == 1

    asyncio.run(main())
