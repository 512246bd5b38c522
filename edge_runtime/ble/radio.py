"""A virtual radio for tests and the demo: bumble's virtual controllers on one link, in place of
Bluetooth hardware, with the faults a real radio has.

Hosts attach in-process (``VirtualRadio.controller()``) or from other processes over TCP
(``serve(port)``: each host connection gets a fresh virtual controller, like plugging in a
dongle; ``tcp-client:127.0.0.1:PORT`` on the host side). The hub and the gateway run real bumble
host stacks (HCI, L2CAP, ATT/GATT, SMP) over it.

Faults, for tests and benchmarks (a real link is cut all the time):

* ``terminate(side)``: one side's controller ends the link as its host would (LL_TERMINATE_IND:
  the other side sees "remote user terminated");
* ``lose_silently(seconds)``: the link goes quiet (nothing is delivered either way, as when the
  patient walks away) and both sides see a supervision timeout when ``seconds`` have passed;
* a host process that dies (or disconnects from its TCP port) loses its links silently too.

The controllers are bumble's, except for one command bumble's virtual controller leaves undone:
*LE Create Connection Cancel* (Core 5.4 Vol 4 Part E 7.8.13) answers success but leaves the
connection pending, so a central that gave up on a hub that was not advertising (a hub still
booting after a power cut) was connected to it later behind its back, and the hub, holding that
orphan link, stopped advertising: every later attempt timed out. ``RadioController`` cancels as
a real controller does (the pending connection ends with an LE Connection Complete event whose
status is Unknown Connection Identifier), and it reports encryption events only for links still
open (a cut during the encryption procedure left bumble's reporting it for a closed handle).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass

from bumble import hci, ll
from bumble.controller import Connection as LinkConnection
from bumble.controller import Controller
from bumble.core import PhysicalTransport
from bumble.link import LocalLink
from bumble.transport.common import StreamPacketSource

log = logging.getLogger(__name__)

SUPERVISION_TIMEOUT_S = 0.2  # what a silent loss takes to be noticed (real links: 0.1–32 s)
LOCAL_HOST_TERMINATED = hci.HCI_ErrorCode.CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR
REMOTE_USER_TERMINATED = hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR
CONNECTION_TIMEOUT = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR


class _LossyLink(LocalLink):
    """bumble's LocalLink, except that the radio path between two silenced controllers carries
    nothing, advertising included (a new connection cannot form across a dead path). Silence is
    per pair of devices, not per device: silencing a whole controller swallowed the
    disconnection of its *other* links, so a hub kept a stale link (and its report running on a
    reused handle) that blocked every later sync."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.silenced: collections.Counter[frozenset[Controller]] = collections.Counter()
        self.delivered = 0  # L2CAP PDUs carried between any two devices
        self.traffic_waiters: list[tuple[int, asyncio.Future[None]]] = []

    def path_silent(self, a: Controller | None, b: Controller | None) -> bool:
        return a is not None and b is not None and self.silenced[frozenset((a, b))] > 0

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: PhysicalTransport,
        data: bytes,
    ) -> None:
        if self.path_silent(sender_controller, self.find_le_controller(destination_address)):
            return
        super().send_acl_data(sender_controller, destination_address, transport, data)
        self.delivered += 1
        if self.traffic_waiters and self.traffic_waiters[0][0] <= self.delivered:
            due = [w for w in self.traffic_waiters if w[0] <= self.delivered]
            self.traffic_waiters = [w for w in self.traffic_waiters if w[0] > self.delivered]
            for _, future in due:
                if not future.done():
                    future.set_result(None)

    def send_advertising_pdu(
        self, sender_controller: Controller, packet: ll.AdvertisingPdu
    ) -> None:
        loop = asyncio.get_running_loop()
        for c in self.controllers:
            if c is not sender_controller and not self.path_silent(sender_controller, c):
                loop.call_soon(c.on_ll_advertising_pdu, packet)

    def send_ll_control_pdu(
        self, sender_address: hci.Address, receiver_address: hci.Address, packet: ll.ControlPdu
    ) -> None:
        sender = self.find_le_controller(sender_address)
        receiver = self.find_le_controller(receiver_address)
        if receiver is None or self.path_silent(sender, receiver):
            return
        super().send_ll_control_pdu(sender_address, receiver_address, packet)


class RadioController(Controller):
    """bumble's virtual controller with LE Create Connection Cancel done (module docstring)."""

    def on_hci_le_create_connection_cancel_command(
        self, _command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:  # nothing to cancel (7.8.13: Command Disallowed)
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        cancelled = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address.address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # after the Command Complete this handler's return value becomes (both are queued)
        asyncio.get_running_loop().call_soon(self.send_hci_packet, cancelled)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    # A link's encryption procedure may finish after the link was cut (the Start Encryption
    # response was already on its way): bumble's controller then reports it for a connection
    # handle its host has closed, which no real controller does (an event names a live handle;
    # Core 5.4 Vol 4 Part E 7.7.8), and the host raises on the unknown handle. Only events of
    # links still open are sent.
    def on_le_encryption_change(self, connection: LinkConnection, status: int) -> None:
        if self._open(connection):
            super().on_le_encryption_change(connection, status)

    def on_le_encryption_request(self, connection: LinkConnection, packet: ll.EncReq) -> None:
        if self._open(connection):
            super().on_le_encryption_request(connection, packet)

    def _open(self, connection: LinkConnection) -> bool:
        if self.le_connections.get(connection.peer_address) is connection:
            return True
        log.debug("virtual radio: no event for the closed connection 0x%04x", connection.handle)
        return False


@dataclass
class LinkEnds:
    central: tuple[Controller, LinkConnection]
    peripheral: tuple[Controller, LinkConnection]


class _HciSink:
    """Controller -> host bytes over the host's TCP connection."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def on_packet(self, packet: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(packet)


class VirtualRadio:
    def __init__(self, seed: int | None = None) -> None:
        self.link = _LossyLink()
        self.rng = random.Random(seed)
        self.servers: list[asyncio.Server] = []
        self._count = 0
        self.cuts: dict[str, int] = {"central": 0, "peripheral": 0, "silent": 0}

    # -- attaching hosts ---------------------------------------------------------------------
    def controller(self, name: str | None = None) -> Controller:
        """A controller for a host in this process (``Host(c, AsyncPipeSink(c))``)."""
        self._count += 1
        return RadioController(name or f"C{self._count}", link=self.link)

    async def serve(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Accept host processes on a TCP port (0: any free one); returns the port."""
        loop = asyncio.get_running_loop()
        radio = self

        class HostProtocol(StreamPacketSource):
            controller: Controller | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.controller = RadioController(
                    f"tcp{port}", host_source=None, host_sink=_HciSink(transport), link=radio.link
                )
                self.set_packet_sink(self.controller)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.controller is not None:
                    radio.unplug(self.controller)

        server = await loop.create_server(HostProtocol, host, port)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def unplug(self, controller: Controller) -> None:
        """A controller whose host went away (a power cut): it stops advertising, its links end
        silently, it leaves the link. (bumble's advertising sets run on their own timers: a
        hub killed while advertising went on advertising, a ghost the gateway connected to.)"""
        controller.le_legacy_advertiser.stop()
        for advertising_set in controller.advertising_sets.values():
            advertising_set.stop()
        controller.pending_le_connection = None
        for ends in list(self.links()):
            if controller in (ends.central[0], ends.peripheral[0]):
                self._drop(ends, silent_s=SUPERVISION_TIMEOUT_S, only_peer_of=controller)
        with contextlib.suppress(KeyError):
            self.link.remove_controller(controller)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()

    # -- faults ------------------------------------------------------------------------------
    def links(self) -> Iterator[LinkEnds]:
        for c in list(self.link.controllers):
            for conn in list(c.le_connections.values()):
                if conn.role != hci.Role.CENTRAL:
                    continue
                peer = self.link.find_le_controller(conn.peer_address)
                if peer is None:
                    continue
                back = next(
                    (
                        p
                        for p in peer.le_connections.values()
                        if p.peer_address == conn.self_address
                    ),
                    None,
                )
                if back is not None:
                    yield LinkEnds((c, conn), (peer, back))

    def terminate(self, side: str) -> int:
        """``side`` ("central" or "peripheral") ends every link; returns how many."""
        count = 0
        for ends in list(self.links()):
            controller, conn = ends.central if side == "central" else ends.peripheral
            conn.send_ll_control_pdu(ll.TerminateInd(REMOTE_USER_TERMINATED))
            controller.on_le_disconnected(conn, LOCAL_HOST_TERMINATED)
            count += 1
        self.cuts[side] += count
        return count

    def lose_silently(self, silent_s: float = SUPERVISION_TIMEOUT_S) -> int:
        count = 0
        for ends in list(self.links()):
            self._drop(ends, silent_s)
            count += 1
        self.cuts["silent"] += count
        return count

    async def after_packets(self, n: int) -> None:
        """Return once ``n`` more L2CAP PDUs have crossed the radio. Faults timed by traffic,
        not by the clock, hit a connection at the same point of its exchange however busy the
        machine is (a cut 5-120 ms after connecting fell in the middle of pairing or service
        discovery every time on a loaded machine, so no connection ever reached the records)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.link.traffic_waiters.append((self.link.delivered + n, future))
        self.link.traffic_waiters.sort(key=lambda w: w[0])
        await future

    def cut(self, kind: str | None = None) -> str:
        """One fault of ``kind`` (or a random one): "central", "peripheral" or "silent"."""
        kind = kind or self.rng.choice(("central", "peripheral", "silent"))
        if kind == "silent":
            self.lose_silently(self.rng.uniform(0.02, SUPERVISION_TIMEOUT_S))
        else:
            self.terminate(kind)
        return kind

    def _drop(
        self, ends: LinkEnds, silent_s: float, only_peer_of: Controller | None = None
    ) -> None:
        sides = [ends.central, ends.peripheral]
        if only_peer_of is not None:
            sides = [s for s in sides if s[0] is not only_peer_of]
        path = frozenset((ends.central[0], ends.peripheral[0]))
        self.link.silenced[path] += 1

        def timeout() -> None:
            self.link.silenced[path] -= 1
            if self.link.silenced[path] <= 0:
                del self.link.silenced[path]
            for controller, conn in sides:
                if controller.le_connections.get(conn.peer_address) is conn:
                    controller.on_le_disconnected(conn, CONNECTION_TIMEOUT)

        asyncio.get_running_loop().call_later(silent_s, timeout)
