"""The hub's GATT protocol: UUIDs and every payload, as pure codecs both sides import.

Service ``CERVICAL_SERVICE`` (custom 128-bit), beside the standard Device Information (0x180A):

=================  ==========================  ===============================================
characteristic     properties                  payload
=================  ==========================  ===============================================
record control     write, indicate             ``RacpRequest`` in, ``RacpResponse`` out
records            notify                      a stream of ``RecordFrame`` cut to the ATT MTU
profile            read, write                 ``ProfilePayload`` (22 bytes: fits MTU 23)
model control      write, indicate             ``ModelRequest`` in, ``ModelResponse`` out
model data         write                       ``ModelChunk`` (offset-addressed)
status             read                        ``StatusPayload``
test control       write, indicate             ``gatt_guided``: a guided range-of-motion test
=================  ==========================  ===============================================

Every characteristic of the Cervical service needs an encrypted link whose key came from an
LE Secure Connections pairing with MITM protection (passkey); see ``edge_runtime.ble.server``.

Record sync follows the Record Access Control Point pattern of the Bluetooth Glucose/CGM
profiles: REPORT(after seq, max) makes the hub notify the stored records after ``seq`` in order,
then indicate a response with the count and last seq sent; ACK(seq) moves the hub's sync cursor
(the gateway sends it only after its own store committed); COUNT reports how many records wait;
ABORT stops a report. A notification that was sent is not one that arrived (a dropped link loses
what was in flight), so each frame carries the seq of the frame before it in the same report and
a CRC-32: the gateway keeps the unbroken, checked prefix and asks again from there.

All integers are little-endian. Decoders raise ``ProtocolError`` naming the payload and what was
wrong; they never raise anything else for any input (fuzzed in the tests).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from edge_runtime.contracts.anthropometrics import SEXES, Anthropometrics
from edge_runtime.contracts.errors import ContractError, InvalidAnthropometricsError
from edge_runtime.contracts.hub_records import RECORD_KINDS

PROTOCOL_VERSION = 1

_BASE = "6b1d{:04x}-5c1e-4f6e-9a4b-2f0c3e7a9d10"
CERVICAL_SERVICE = _BASE.format(0x0001)
RECORD_CONTROL = _BASE.format(0x0002)
RECORDS = _BASE.format(0x0003)
PROFILE = _BASE.format(0x0004)
MODEL_CONTROL = _BASE.format(0x0005)
MODEL_DATA = _BASE.format(0x0006)
STATUS = _BASE.format(0x0007)
DEVICE_INFORMATION_SERVICE = "0000180a-0000-1000-8000-00805f9b34fb"

ATT_HEADER_BYTES = 3  # opcode + handle in front of every notification / write value
MAX_FRAME_BYTES = 1 << 20  # one record, decompressed or not: far above any summary
MAX_MODEL_BYTES = 64 << 20
MODEL_CHUNK_MAX = 512  # the ATT maximum attribute value length
MESSAGE_MAX = 180  # a response's text, in UTF-8 bytes (fits one indication at MTU 185+)
U64_MAX = (1 << 63) - 1  # SQLite's INTEGER range: seqs never exceed it


class ProtocolError(ContractError, ValueError):
    """A payload that does not decode; names the payload and what was wrong."""

    def __init__(self, payload: str, reason: str) -> None:
        super().__init__(f"{payload}: {reason}")
        self.payload, self.reason = payload, reason


def _unpack(name: str, fmt: str, data: bytes, exact: bool = True) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if len(data) < size or (exact and len(data) != size):
        raise ProtocolError(name, f"{len(data)} bytes, expected {size}")
    return struct.unpack_from(fmt, data)


def _enum(name: str, cls: type[IntEnum], value: int) -> IntEnum:
    try:
        return cls(value)
    except ValueError:
        raise ProtocolError(name, f"unknown {cls.__name__} {value}") from None


# -- record access control point ------------------------------------------------------------
class RacpOp(IntEnum):
    REPORT = 1  # notify the records after ``seq`` (at most ``max_records``, 0: all)
    COUNT = 2  # how many records are stored after ``seq``
    ACK = 3  # the gateway committed every record up to ``seq``
    ABORT = 4  # stop the report in progress


class RacpStatus(IntEnum):
    SUCCESS = 0
    NO_RECORDS = 1
    ABORTED = 2
    INVALID_OPERAND = 3
    STORAGE_ERROR = 4


@dataclass(frozen=True)
class RacpRequest:
    op: RacpOp
    seq: int = 0
    max_records: int = 0
    FORMAT: ClassVar[str] = "<BQI"

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= U64_MAX or not 0 <= self.max_records < 1 << 32:
            raise ProtocolError("RacpRequest", f"operand out of range: {self}")

    def __bytes__(self) -> bytes:
        return struct.pack(self.FORMAT, self.op, self.seq, self.max_records)

    @classmethod
    def from_bytes(cls, data: bytes) -> RacpRequest:
        op, seq, max_records = _unpack("RacpRequest", cls.FORMAT, data)
        return cls(RacpOp(_enum("RacpRequest", RacpOp, op)), seq, max_records)


@dataclass(frozen=True)
class RacpResponse:
    op: RacpOp
    status: RacpStatus
    seq: int = 0  # REPORT: last seq sent; ACK: the hub's cursor; COUNT: the last stored seq
    count: int = 0  # REPORT: records sent; COUNT: records after the asked seq; ACK: unsynced
    FORMAT: ClassVar[str] = "<BBQI"

    def __bytes__(self) -> bytes:
        return struct.pack(self.FORMAT, self.op, self.status, self.seq, min(self.count, 2**32 - 1))

    @classmethod
    def from_bytes(cls, data: bytes) -> RacpResponse:
        op, status, seq, count = _unpack("RacpResponse", cls.FORMAT, data)
        return cls(
            RacpOp(_enum("RacpResponse", RacpOp, op)),
            RacpStatus(_enum("RacpResponse", RacpStatus, status)),
            seq,
            count,
        )


# -- records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncRecord:
    """One stored record as it travels: the hub's row, byte for byte (payload as stored)."""

    seq: int
    t_utc: str
    kind: str
    session_id: str | None
    payload_json: str


class FrameFlags(IntEnum):
    ZLIB = 1  # the payload is zlib-compressed


@dataclass(frozen=True)
class RecordFrame:
    """``u32 length`` then ``seq u64, prev_seq u64, kind u8, flags u8, t_utc (u8 len + ASCII),
    session_id (u8 len + ASCII, 0: none), payload (UTF-8 JSON, zlib when it is smaller),
    crc32 u32`` over everything between the length and the CRC."""

    record: SyncRecord
    prev_seq: int
    HEAD: ClassVar[str] = "<QQBB"

    def __bytes__(self) -> bytes:
        r = self.record
        if r.kind not in RECORD_KINDS:
            raise ProtocolError("RecordFrame", f"record kind {r.kind!r}")
        payload = r.payload_json.encode()
        packed = zlib.compress(payload, 6)
        flags = FrameFlags.ZLIB if len(packed) < len(payload) else 0
        t_utc = r.t_utc.encode("ascii")
        session = (r.session_id or "").encode("ascii")
        if len(t_utc) > 255 or len(session) > 255:
            raise ProtocolError("RecordFrame", "t_utc or session_id longer than 255 bytes")
        body = b"".join(
            (
                struct.pack(self.HEAD, r.seq, self.prev_seq, RECORD_KINDS.index(r.kind), flags),
                bytes([len(t_utc)]),
                t_utc,
                bytes([len(session)]),
                session,
                packed if flags else payload,
            )
        )
        body += struct.pack("<I", zlib.crc32(body))
        return struct.pack("<I", len(body)) + body

    @classmethod
    def decode_body(cls, body: bytes) -> RecordFrame:
        name = "RecordFrame"
        if len(body) < struct.calcsize(cls.HEAD) + 2 + 4:
            raise ProtocolError(name, f"{len(body)} bytes is shorter than a frame")
        (crc,) = struct.unpack_from("<I", body, len(body) - 4)
        content = body[:-4]
        if zlib.crc32(content) != crc:
            raise ProtocolError(name, "CRC-32 mismatch")
        seq, prev_seq, kind, flags = struct.unpack_from(cls.HEAD, content)
        if kind >= len(RECORD_KINDS) or flags & ~int(FrameFlags.ZLIB):
            raise ProtocolError(name, f"kind {kind} / flags {flags} unknown")
        at = struct.calcsize(cls.HEAD)
        texts = []
        for field in ("t_utc", "session_id"):
            if at >= len(content) or at + 1 + content[at] > len(content):
                raise ProtocolError(name, f"{field} runs past the frame")
            raw = content[at + 1 : at + 1 + content[at]]
            at += 1 + content[at]
            try:
                texts.append(raw.decode("ascii"))
            except UnicodeDecodeError:
                raise ProtocolError(name, f"{field} is not ASCII") from None
        payload = content[at:]
        try:
            if flags & FrameFlags.ZLIB:
                inflater = zlib.decompressobj()
                payload = inflater.decompress(payload, MAX_FRAME_BYTES)
                if inflater.unconsumed_tail or not inflater.eof:
                    raise ProtocolError(name, "compressed payload truncated or too large")
            text = payload.decode()
        except (zlib.error, UnicodeDecodeError) as exc:
            raise ProtocolError(name, f"payload does not decode: {exc}") from None
        if seq > U64_MAX or prev_seq >= seq:
            raise ProtocolError(name, f"seq {seq} after {prev_seq}")
        record = SyncRecord(seq, texts[0], RECORD_KINDS[kind], texts[1] or None, text)
        return cls(record, prev_seq)


class RecordStreamDecoder:
    """Reassembles frames from notifications (any cut points) and checks the chain.

    ``start(after_seq)`` begins a report; ``feed`` returns the complete, checked records. At the
    first bad frame or broken chain it stops: ``error`` says why, the records returned before
    stay good, and everything after is ignored until the next ``start``."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.last_seq = 0
        self.error: ProtocolError | None = None

    def start(self, after_seq: int) -> None:
        self.buffer.clear()
        self.last_seq, self.error = after_seq, None

    def feed(self, data: bytes) -> list[SyncRecord]:
        if self.error is not None:
            return []
        self.buffer += data
        out = []
        try:
            while len(self.buffer) >= 4:
                (length,) = struct.unpack_from("<I", self.buffer)
                if length > MAX_FRAME_BYTES:
                    raise ProtocolError("RecordFrame", f"length {length} over {MAX_FRAME_BYTES}")
                if len(self.buffer) < 4 + length:
                    break
                frame = RecordFrame.decode_body(bytes(self.buffer[4 : 4 + length]))
                del self.buffer[: 4 + length]
                if frame.prev_seq != self.last_seq:
                    raise ProtocolError(
                        "RecordFrame",
                        f"seq {frame.record.seq} follows {frame.prev_seq}, not {self.last_seq}: "
                        "frames were lost",
                    )
                self.last_seq = frame.record.seq
                out.append(frame.record)
        except ProtocolError as exc:
            self.error = exc
            self.buffer.clear()
        return out


def chunk(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes (the notification payload)."""
    if size < 1:
        raise ValueError(f"chunk size {size}")
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- the wearer's profile --------------------------------------------------------------------
_PROFILE_FIELDS = ("stature_m", "body_mass_kg", "neck_length_m", "shoulder_width_m", "head_mass_kg")
MICRO = 1_000_000  # lengths in µm, masses in mg: exact for every value a tape or scale gives


@dataclass(frozen=True)
class ProfilePayload:
    profile: Anthropometrics
    FORMAT: ClassVar[str] = "<BB5I"

    def __bytes__(self) -> bytes:
        p = self.profile
        values = [round(getattr(p, f) * MICRO) for f in _PROFILE_FIELDS]
        return struct.pack(self.FORMAT, PROTOCOL_VERSION, SEXES.index(p.sex), *values)

    @classmethod
    def from_bytes(cls, data: bytes) -> ProfilePayload:
        version, sex, *values = _unpack("ProfilePayload", cls.FORMAT, data)
        if version != PROTOCOL_VERSION:
            raise ProtocolError("ProfilePayload", f"version {version}, expected 1")
        if sex >= len(SEXES):
            raise ProtocolError("ProfilePayload", f"sex code {sex}")
        try:
            fields = {f: v / MICRO for f, v in zip(_PROFILE_FIELDS, values, strict=True)}
            return cls(Anthropometrics(sex=SEXES[sex], **fields))
        except InvalidAnthropometricsError as exc:
            raise ProtocolError("ProfilePayload", str(exc)) from None


# -- model update ----------------------------------------------------------------------------
class ModelOp(IntEnum):
    BEGIN = 1  # size + SHA-256 of the archive; the response gives the offset to send from
    COMMIT = 2  # all bytes sent: check the hash, verify, install
    ABORT = 3  # drop the staged transfer
    QUERY = 4  # where the staged transfer stands


class ModelStatus(IntEnum):
    OK = 0
    NO_TRANSFER = 1
    INCOMPLETE = 2
    HASH_MISMATCH = 3
    INSTALL_REFUSED = 4
    TOO_LARGE = 5
    BUSY = 6


@dataclass(frozen=True)
class ModelRequest:
    op: ModelOp
    size: int = 0
    sha256: bytes = bytes(32)
    FORMAT: ClassVar[str] = "<BI32s"

    def __bytes__(self) -> bytes:
        return struct.pack(self.FORMAT, self.op, self.size, self.sha256)

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelRequest:
        op, size, sha = _unpack("ModelRequest", cls.FORMAT, data)
        return cls(ModelOp(_enum("ModelRequest", ModelOp, op)), size, bytes(sha))


@dataclass(frozen=True)
class ModelResponse:
    op: ModelOp
    status: ModelStatus
    offset: int = 0  # bytes the hub holds of the transfer
    message: str = ""  # the installed version, or why it was refused
    HEAD: ClassVar[str] = "<BBI"

    def __bytes__(self) -> bytes:
        text = self.message.encode()[:MESSAGE_MAX].decode(errors="ignore").encode()
        return struct.pack(self.HEAD, self.op, self.status, self.offset) + text

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelResponse:
        op, status, offset = _unpack("ModelResponse", cls.HEAD, data, exact=False)
        try:
            message = data[struct.calcsize(cls.HEAD) :].decode()
        except UnicodeDecodeError:
            raise ProtocolError("ModelResponse", "message is not UTF-8") from None
        return cls(
            ModelOp(_enum("ModelResponse", ModelOp, op)),
            ModelStatus(_enum("ModelResponse", ModelStatus, status)),
            offset,
            message,
        )


@dataclass(frozen=True)
class ModelChunk:
    offset: int
    data: bytes
    HEAD: ClassVar[str] = "<I"

    def __bytes__(self) -> bytes:
        return struct.pack(self.HEAD, self.offset) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelChunk:
        (offset,) = _unpack("ModelChunk", cls.HEAD, data, exact=False)
        body = bytes(data[4:])
        if not body:
            raise ProtocolError("ModelChunk", "no data after the offset")
        return cls(offset, body)


# -- status ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusPayload:
    store_id: bytes  # 16 random bytes fixed when the hub's record store was created
    last_seq: int
    acked_seq: int
    unsynced: int
    stored: int
    database_bytes: int
    free_bytes: int
    last_sync_unix_s: int  # 0: never synced
    hub_time_unix_s: int
    model_version: str
    HEAD: ClassVar[str] = "<B16sQQIIQQII"

    def __bytes__(self) -> bytes:
        return (
            struct.pack(
                self.HEAD,
                PROTOCOL_VERSION,
                self.store_id,
                self.last_seq,
                self.acked_seq,
                min(self.unsynced, 2**32 - 1),
                min(self.stored, 2**32 - 1),
                self.database_bytes,
                self.free_bytes,
                self.last_sync_unix_s,
                self.hub_time_unix_s,
            )
            + self.model_version.encode()[:32]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> StatusPayload:
        version, store_id, *numbers = _unpack("StatusPayload", cls.HEAD, data, exact=False)
        if version != PROTOCOL_VERSION:
            raise ProtocolError("StatusPayload", f"version {version}, expected 1")
        try:
            model = data[struct.calcsize(cls.HEAD) :].decode()
        except UnicodeDecodeError:
            raise ProtocolError("StatusPayload", "model version is not UTF-8") from None
        last, acked, unsynced, stored, db_bytes, free, last_sync, hub_time = numbers
        return cls(
            bytes(store_id),
            last,
            acked,
            unsynced,
            stored,
            db_bytes,
            free,
            last_sync,
            hub_time,
            model,
        )
