"""The hub's GATT server on bumble: Device Information and the Cervical service
(``edge_runtime.contracts.gatt`` defines every payload).

Security. Pairing is LE Secure Connections with bonding; the hub's I/O capability is "display
only", its "display" being the six-digit passkey on its label, so a central with a keyboard gets
passkey entry (MITM-protected). A central without input (Just Works) is refused in the pairing
delegate, and every characteristic of the Cervical service answers *Insufficient
Authentication* unless the link is encrypted with a key from such a pairing: bumble marks any
encrypted link "authenticated", Just Works included, so the check reads the bond's own
``authenticated`` flag. Five failed pairings in ten minutes close pairing for a minute (a
guessing central gets ~20 tries an hour, not a million). Device Information stays public.

Robustness. Every handler turns any failure into an ATT error response (malformed payloads:
0x80 Invalid Request, wrong lengths: 0x0D, a second report while one runs: 0xFE): the server
never stops on input. A dropped link cancels that link's report; nothing is lost because the
hub's sync cursor moves only on the gateway's ACK, which it sends after its own store
committed. Model transfers are staged on disk and survive disconnects and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bumble import att
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.keys import PairingKeys
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.profiles.device_information_service import DeviceInformationService

from edge_runtime.ble.identity import BleIdentity
from edge_runtime.contracts import gatt, gatt_guided
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.bundle_archive import unpack_bundle
from edge_runtime.contracts.guided_test import GuidedTestError, GuidedTestResult, StepProgress
from edge_runtime.hub.storage import HubStore, StorageError

log = logging.getLogger(__name__)

REPORT_BATCH = 64  # records read from the store at a time while reporting
PAIRING_FAILURES_ALLOWED = 5
PAIRING_FAILURE_WINDOW_S = 600.0
PAIRING_LOCKOUT_S = 60.0
PAIRING_WAIT_S = 5.0  # a request that races a pairing in progress waits for it this long

# ATT error codes the handlers answer with
INVALID_REQUEST = 0x80  # a payload that does not decode (application error range)
NOT_PERMITTED_NOW = 0x81  # a valid request the hub cannot do in its current state


class HubAccess(Protocol):
    """What the GATT server needs from the hub (the daemon's context implements it)."""

    store: HubStore

    def model_version(self) -> str: ...

    def profile(self) -> Anthropometrics: ...

    async def set_profile(self, profile: Anthropometrics) -> None: ...

    async def install_model(self, bundle: Path) -> str:
        """Verify and install; returns the installed version or raises (InstallError)."""
        ...

    def start_test(self, listener: Callable[[StepProgress | GuidedTestResult], None]) -> None:
        """Start a guided test reporting to ``listener``, or raise GuidedTestError."""
        ...

    def abort_test(self, words: str) -> bool:
        """Abandon the running test, ``words`` saying why (False: none runs)."""
        ...

    def guided_test_running(self) -> bool: ...


class WithoutGuidedTests:
    """HubAccess's guided-test methods for a hub that measures nothing (no model, no sensors):
    a test is refused as needing a model."""

    def start_test(self, listener: Callable[[StepProgress | GuidedTestResult], None]) -> None:
        raise GuidedTestError("no model is installed: a test needs one", "no_model")

    def abort_test(self, words: str) -> bool:
        return False

    def guided_test_running(self) -> bool:
        return False


class ModelTransfer:
    """The staged model archive (``state_dir/model-transfer``): resumable across disconnects
    and restarts. The offset the hub reports is the staged file's size, so a chunk written
    before a power cut but not flushed is simply sent again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.part, self.meta = root / "archive.part", root / "archive.meta"
        self.size, self.sha256 = 0, b""
        with contextlib.suppress(OSError, ValueError):
            text = self.meta.read_text().split()
            self.size, self.sha256 = int(text[0]), bytes.fromhex(text[1])

    @property
    def active(self) -> bool:
        return bool(self.sha256)

    @property
    def received(self) -> int:
        try:
            return min(self.part.stat().st_size, self.size)
        except OSError:
            return 0

    def begin(self, size: int, sha256: bytes) -> int:
        if self.active and (size, sha256) == (self.size, self.sha256) and self.part.exists():
            offset = self.received
            with open(self.part, "r+b") as f:
                f.truncate(offset)
            return offset
        self.clear()
        self.root.mkdir(parents=True, exist_ok=True)
        self.part.write_bytes(b"")
        self.meta.write_text(f"{size} {sha256.hex()}\n")
        self.size, self.sha256 = size, sha256
        return 0

    def write(self, offset: int, data: bytes) -> None:
        if not self.active:
            raise att.ATT_Error(NOT_PERMITTED_NOW, message="no model transfer begun")
        if offset != self.received:
            raise att.ATT_Error(att.ErrorCode.INVALID_OFFSET, message=f"expected {self.received}")
        if offset + len(data) > self.size:
            raise att.ATT_Error(att.ErrorCode.INVALID_OFFSET, message="past the announced size")
        with open(self.part, "ab") as f:
            f.write(data)

    def archive(self) -> bytes:
        return self.part.read_bytes()

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.size, self.sha256 = 0, b""


@dataclass
class _Link:
    connection: Connection
    authenticated: bool = False
    pairing: asyncio.Event | None = None  # set while a pairing runs, until it ends
    report: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    test_out: asyncio.Queue[bytes] | None = None  # guided-test indications, in order


class _HubPairingDelegate(PairingDelegate):
    def __init__(self, server: CervicalGattServer) -> None:
        keys = PairingDelegate.KeyDistribution
        distribution = keys.DISTRIBUTE_ENCRYPTION_KEY | keys.DISTRIBUTE_IDENTITY_KEY
        super().__init__(
            PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY, distribution, distribution
        )
        self.server = server

    async def accept(self) -> bool:
        return self.server.pairing_open()

    async def confirm(self, auto: bool = False) -> bool:
        log.warning("refused a Just Works pairing: it has no MITM protection")
        return False

    async def compare_numbers(self, number: int, digits: int) -> bool:
        return False  # cannot happen with a display-only hub; refuse if it ever does

    async def generate_passkey(self) -> int:
        return self.server.identity.passkey

    async def display_number(self, number: int, digits: int) -> None:
        log.info("pairing: the central must enter the passkey printed on the hub")


class CervicalGattServer:
    def __init__(
        self,
        device: Device,
        hub: HubAccess,
        identity: BleIdentity,
        state_dir: Path,
        software_version: str,
    ) -> None:
        self.device, self.hub, self.identity = device, hub, identity
        self.transfer = ModelTransfer(state_dir / "model-transfer")
        self.links: dict[Connection, _Link] = {}
        self.pairing_failures: list[float] = []
        self.locked_until = 0.0
        self.installing = False
        self.test_owner: Connection | None = None  # the link that started the running test
        self._delegate = _HubPairingDelegate(self)
        device.pairing_config_factory = lambda _: PairingConfig(
            sc=True,
            mitm=True,
            bonding=True,
            delegate=self._delegate,
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )
        device.on(device.EVENT_CONNECTION, self._on_connection)

        def char(
            uuid: str,
            props: Characteristic.Properties,
            read: Callable[[Connection], Awaitable[bytes]] | None = None,
            write: Callable[[Connection, bytes], Awaitable[None]] | None = None,
        ) -> Characteristic[bytes]:
            perms = Characteristic.Permissions(0)
            if read:
                perms |= Characteristic.READABLE
            if write:
                perms |= Characteristic.WRITEABLE
            value = CharacteristicValue(
                read=self._guard_read(read) if read else None,
                write=self._guard_write(write) if write else None,
            )
            return Characteristic(uuid, props, perms, value if (read or write) else b"")

        p = Characteristic.Properties
        self.racp = char(gatt.RECORD_CONTROL, p.WRITE | p.INDICATE, write=self._on_racp)
        self.records = char(gatt.RECORDS, p.NOTIFY)
        self.profile = char(
            gatt.PROFILE, p.READ | p.WRITE, read=self._read_profile, write=self._write_profile
        )
        self.model_control = char(
            gatt.MODEL_CONTROL, p.WRITE | p.INDICATE, write=self._on_model_control
        )
        self.model_data = char(gatt.MODEL_DATA, p.WRITE, write=self._on_model_data)
        self.status = char(gatt.STATUS, p.READ, read=self._read_status)
        self.test_control = char(
            gatt_guided.TEST_CONTROL, p.WRITE | p.INDICATE, write=self._on_test_control
        )
        device.add_services(
            [
                DeviceInformationService(
                    manufacturer_name="Cervical project",
                    model_number="cervical-hub",
                    serial_number=str(identity.address).removesuffix("/P"),
                    firmware_revision=software_version,
                    software_revision=hub.model_version() or "none",  # a fresh hub
                ),
                Service(
                    gatt.CERVICAL_SERVICE,
                    [
                        self.racp,
                        self.records,
                        self.profile,
                        self.model_control,
                        self.model_data,
                        self.status,
                        self.test_control,
                    ],
                ),
            ]
        )

    # -- links and security ------------------------------------------------------------------
    def _on_connection(self, connection: Connection) -> None:
        link = _Link(connection)
        self.links[connection] = link
        log.info("BLE: connected to %s", connection.peer_address)

        def on_pairing_start() -> None:
            link.pairing = asyncio.Event()

        def on_pairing(keys: PairingKeys) -> None:
            link.authenticated = bool(keys.ltk and keys.ltk.authenticated)
            log.info("BLE: bonded with %s (MITM-protected)", connection.peer_address)
            if link.pairing:
                link.pairing.set()

        def on_pairing_failure(reason: int) -> None:
            now = time.monotonic()
            self.pairing_failures = [
                t for t in self.pairing_failures if now - t < PAIRING_FAILURE_WINDOW_S
            ] + [now]
            if len(self.pairing_failures) >= PAIRING_FAILURES_ALLOWED:
                self.locked_until = now + PAIRING_LOCKOUT_S
                self.pairing_failures.clear()
                log.warning("BLE: too many failed pairings; pairing closed for a minute")
            log.warning("BLE: pairing with %s failed (%s)", connection.peer_address, reason)
            if link.pairing:
                link.pairing.set()

        def on_disconnection(reason: int) -> None:
            self.links.pop(connection, None)
            if self.test_owner is connection:  # nobody prompts the wearer any more
                self.test_owner = None
                self.hub.abort_test("the phone or computer disconnected")
            for task in [link.report, *link.tasks]:
                if task is not None:
                    task.cancel()
            log.info("BLE: %s disconnected (reason 0x%02x)", connection.peer_address, reason)

        connection.on(connection.EVENT_PAIRING_START, on_pairing_start)
        connection.on(connection.EVENT_PAIRING, on_pairing)
        connection.on(connection.EVENT_PAIRING_FAILURE, on_pairing_failure)
        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)

    def pairing_open(self) -> bool:
        if time.monotonic() < self.locked_until:
            log.warning("BLE: pairing refused (closed after repeated failures)")
            return False
        return True

    async def _require_bond(self, connection: Connection) -> _Link:
        link = self.links.get(connection)
        if link is None:
            raise att.ATT_Error(att.ErrorCode.UNLIKELY_ERROR)
        if link.pairing is not None and not link.pairing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.pairing.wait(), PAIRING_WAIT_S)
        if not link.authenticated and connection.is_encrypted and self.device.keystore:
            keys = await self.device.keystore.get(str(connection.peer_address))
            link.authenticated = bool(keys and keys.ltk and keys.ltk.authenticated)
        if not (link.authenticated and connection.is_encrypted):
            raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)
        return link

    def _guard_read(
        self, handler: Callable[[Connection], Awaitable[bytes]]
    ) -> Callable[[Connection], Awaitable[bytes]]:
        async def read(connection: Connection) -> bytes:
            await self._require_bond(connection)
            return await _as_att_error(handler(connection))

        return read

    def _guard_write(
        self, handler: Callable[[Connection, bytes], Awaitable[None]]
    ) -> Callable[[Connection, bytes], Awaitable[None]]:
        async def write(connection: Connection, value: bytes) -> None:
            await self._require_bond(connection)
            await _as_att_error(handler(connection, bytes(value)))

        return write

    def _spawn(self, link: _Link, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)
        return task

    async def _indicate(self, connection: Connection, char: Characteristic[bytes], v: Any) -> None:
        try:
            await self.device.indicate_subscriber(connection, char, bytes(v))
        except Exception as exc:  # the link went away: the central asks again
            log.debug("indication to %s not confirmed: %r", connection.peer_address, exc)

    # -- record access control point ---------------------------------------------------------
    async def _on_racp(self, connection: Connection, value: bytes) -> None:
        request = gatt.RacpRequest.from_bytes(value)
        link = self.links[connection]
        store = self.hub.store
        op = request.op
        if op is gatt.RacpOp.REPORT:
            if link.report is not None and not link.report.done():
                raise att.ATT_Error(att.ErrorCode.PROCEDURE_ALREADY_IN_PROGRESS)
            link.report = asyncio.ensure_future(self._report(link, request))
        elif op is gatt.RacpOp.ABORT:
            if link.report is not None and not link.report.done():
                link.report.cancel()
            else:
                response = gatt.RacpResponse(op, gatt.RacpStatus.SUCCESS)
                self._spawn(link, self._indicate(connection, self.racp, response))
        elif op is gatt.RacpOp.COUNT:
            count = store.count_after(request.seq)
            response = gatt.RacpResponse(op, gatt.RacpStatus.SUCCESS, store.last_seq, count)
            self._spawn(link, self._indicate(connection, self.racp, response))
        else:  # ACK
            try:
                acked = store.ack(request.seq)
                status = gatt.RacpStatus.SUCCESS
            except StorageError as exc:
                log.warning("BLE: ack refused: %s", exc)
                acked, status = store.acked_seq, gatt.RacpStatus.INVALID_OPERAND
            response = gatt.RacpResponse(op, status, acked, store.unsynced_count)
            self._spawn(link, self._indicate(connection, self.racp, response))

    async def _report(self, link: _Link, request: gatt.RacpRequest) -> None:
        connection, store = link.connection, self.hub.store
        size = max(connection.att_mtu - gatt.ATT_HEADER_BYTES, 20)
        limit = request.max_records or (1 << 62)
        sent, last = 0, request.seq
        stream = bytearray()
        status = gatt.RacpStatus.SUCCESS
        try:
            while sent < limit:
                batch = store.sync_records_after(last, min(REPORT_BATCH, limit - sent))
                if not batch:
                    break
                for record in batch:
                    stream += bytes(gatt.RecordFrame(record, last))
                    last = record.seq
                    while len(stream) >= size:
                        await self.device.notify_subscriber(
                            connection, self.records, bytes(stream[:size])
                        )
                        del stream[:size]
                sent += len(batch)
            if stream:
                await self.device.notify_subscriber(connection, self.records, bytes(stream))
            if sent == 0:
                status = gatt.RacpStatus.NO_RECORDS
        except asyncio.CancelledError:
            if connection not in self.links:
                raise  # the link is gone: nobody to tell
            status = gatt.RacpStatus.ABORTED
        except Exception:
            log.exception("BLE: record report failed")
            status = gatt.RacpStatus.STORAGE_ERROR
        response = gatt.RacpResponse(gatt.RacpOp.REPORT, status, last, sent)
        await self._indicate(connection, self.racp, response)

    # -- profile and status ------------------------------------------------------------------
    async def _read_profile(self, connection: Connection) -> bytes:
        return bytes(gatt.ProfilePayload(self.hub.profile()))

    async def _write_profile(self, connection: Connection, value: bytes) -> None:
        profile = gatt.ProfilePayload.from_bytes(value).profile
        await self.hub.set_profile(profile)
        log.info("BLE: wearer profile updated by %s", connection.peer_address)

    async def _read_status(self, connection: Connection) -> bytes:
        store = self.hub.store
        return bytes(
            gatt.StatusPayload(
                store_id=store.store_id,
                last_seq=store.last_seq,
                acked_seq=store.acked_seq,
                unsynced=store.unsynced_count,
                stored=store.count_after(0),
                database_bytes=store.database_bytes,
                free_bytes=shutil.disk_usage(store.path.parent).free,
                last_sync_unix_s=store.last_sync_unix_s,
                hub_time_unix_s=int(time.time()),
                model_version=self.hub.model_version(),
            )
        )

    # -- model update ------------------------------------------------------------------------
    async def _on_model_control(self, connection: Connection, value: bytes) -> None:
        request = gatt.ModelRequest.from_bytes(value)
        link, op = self.links[connection], request.op
        transfer = self.transfer
        if self.installing:
            response = gatt.ModelResponse(op, gatt.ModelStatus.BUSY, transfer.received)
        elif op is gatt.ModelOp.BEGIN:
            if not 0 < request.size <= gatt.MAX_MODEL_BYTES:
                response = gatt.ModelResponse(
                    op, gatt.ModelStatus.TOO_LARGE, 0, f"at most {gatt.MAX_MODEL_BYTES} bytes"
                )
            else:
                offset = transfer.begin(request.size, request.sha256)
                response = gatt.ModelResponse(op, gatt.ModelStatus.OK, offset)
        elif op is gatt.ModelOp.QUERY:
            status = gatt.ModelStatus.OK if transfer.active else gatt.ModelStatus.NO_TRANSFER
            response = gatt.ModelResponse(op, status, transfer.received)
        elif op is gatt.ModelOp.ABORT:
            transfer.clear()
            response = gatt.ModelResponse(op, gatt.ModelStatus.OK, 0)
        else:  # COMMIT: verify and install in the background, answer when done
            self.installing = True
            self._spawn(link, self._commit(connection))
            return
        self._spawn(link, self._indicate(connection, self.model_control, response))

    async def _on_model_data(self, connection: Connection, value: bytes) -> None:
        chunk = gatt.ModelChunk.from_bytes(value)
        if self.installing:
            raise att.ATT_Error(NOT_PERMITTED_NOW)
        self.transfer.write(chunk.offset, chunk.data)

    async def _commit(self, connection: Connection) -> None:
        op, transfer = gatt.ModelOp.COMMIT, self.transfer
        try:
            if not transfer.active:
                response = gatt.ModelResponse(op, gatt.ModelStatus.NO_TRANSFER)
            elif transfer.received < transfer.size:
                response = gatt.ModelResponse(
                    op, gatt.ModelStatus.INCOMPLETE, transfer.received, "send the rest first"
                )
            else:
                archive = transfer.archive()
                if hashlib.sha256(archive).digest() != transfer.sha256:
                    transfer.clear()
                    response = gatt.ModelResponse(
                        op, gatt.ModelStatus.HASH_MISMATCH, 0, "SHA-256 mismatch; send it again"
                    )
                else:
                    response = await self._install(archive)
                    transfer.clear()
        finally:
            self.installing = False
        log.info("BLE: model update: %s %s", response.status.name, response.message)
        await self._indicate(connection, self.model_control, response)

    async def _install(self, archive: bytes) -> gatt.ModelResponse:
        op = gatt.ModelOp.COMMIT
        with tempfile.TemporaryDirectory(dir=self.transfer.root) as tmp:
            try:
                unpack_bundle(archive, Path(tmp) / "bundle", gatt.MAX_MODEL_BYTES)
                version = await self.hub.install_model(Path(tmp) / "bundle")
            except Exception as exc:  # any refusal (BundleError, InstallError): the model stays
                return gatt.ModelResponse(op, gatt.ModelStatus.INSTALL_REFUSED, 0, str(exc))
        return gatt.ModelResponse(op, gatt.ModelStatus.OK, len(archive), version)

    # -- guided test (contracts.gatt_guided) ---------------------------------------------------
    async def _on_test_control(self, connection: Connection, value: bytes) -> None:
        request = gatt_guided.GuidedRequest.from_bytes(value)
        op, status, message = request.op, gatt_guided.GuidedStatus.OK, ""
        if op is gatt_guided.GuidedOp.START:
            try:
                self.hub.start_test(lambda item: self._test_event(connection, item))
                self.test_owner = connection
            except GuidedTestError as exc:
                status = _REFUSALS.get(exc.reason, gatt_guided.GuidedStatus.REFUSED)
                message = str(exc)
        elif op is gatt_guided.GuidedOp.ABORT:
            if self.hub.abort_test("stopped from the phone or computer"):
                self.test_owner = None
            else:
                status = gatt_guided.GuidedStatus.NOT_RUNNING
        elif not self.hub.guided_test_running():
            status = gatt_guided.GuidedStatus.NOT_RUNNING
        else:
            status = gatt_guided.GuidedStatus.RUNNING
        self._send_test(connection, bytes(gatt_guided.GuidedResponse(op, status, message)))

    def _test_event(self, connection: Connection, item: StepProgress | GuidedTestResult) -> None:
        if isinstance(item, GuidedTestResult):
            if self.test_owner is connection:
                self.test_owner = None
            self._send_test(connection, bytes(gatt_guided.GuidedEnd.of(item)))
        else:
            self._send_test(connection, bytes(gatt_guided.GuidedStep(item)))

    def _send_test(self, connection: Connection, payload: bytes) -> None:
        """Queue an indication for the link (gone: dropped); one sender per link keeps them in
        order."""
        link = self.links.get(connection)
        if link is None:
            return
        if link.test_out is None:
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            link.test_out = queue

            async def sender() -> None:
                while True:
                    await self._indicate(connection, self.test_control, await queue.get())

            self._spawn(link, sender())
        link.test_out.put_nowait(payload)


_REFUSALS = {
    "running": gatt_guided.GuidedStatus.RUNNING,
    "no_model": gatt_guided.GuidedStatus.NO_MODEL,
}


async def _as_att_error(awaitable: Awaitable[Any]) -> Any:
    """Any failure of a handler becomes an ATT error response (the server never stops)."""
    try:
        return await awaitable
    except att.ATT_Error:
        raise
    except gatt.ProtocolError as exc:
        code = INVALID_REQUEST if "bytes, expected" not in exc.reason else 0x0D
        raise att.ATT_Error(code, message=str(exc)) from exc
    except Exception as exc:
        log.exception("BLE: handler failed")
        raise att.ATT_Error(att.ErrorCode.UNLIKELY_ERROR, message=str(exc)) from exc
