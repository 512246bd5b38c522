"""The GATT payload codecs: golden bytes (the wire format is a contract with deployed phones and
hubs), round trips, and fuzzing (every decoder raises ProtocolError and nothing else)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.contracts import gatt
from edge_runtime.contracts import gatt_guided as wire
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.guided_test import StepProgress

PROFILE = Anthropometrics("female", 1.64, 61.0, 0.105, 0.36, 4.1)
RECORD = gatt.SyncRecord(7, "2026-11-24T10:00:00.000+00:00", "epoch", "s1", '{"a":1}')
FUZZ = settings(max_examples=300, deadline=None)  # CI; the benchmark runs 10,000 per codec


def test_golden_bytes() -> None:
    assert (
        bytes(gatt.RacpRequest(gatt.RacpOp.REPORT, 258, 16)).hex() == "01020100000000000010000000"
    )
    assert bytes(gatt.RacpResponse(gatt.RacpOp.ACK, gatt.RacpStatus.SUCCESS, 5, 2)).hex() == (
        "0300050000000000000002000000"
    )
    # lengths in µm, masses in mg
    assert bytes(gatt.ProfilePayload(PROFILE)) == struct.pack(
        "<BB5I", 1, 0, 1_640_000, 61_000_000, 105_000, 360_000, 4_100_000
    )
    assert bytes(gatt.ModelChunk(1, b"\xaa")).hex() == "01000000aa"
    response = gatt.ModelResponse(gatt.ModelOp.COMMIT, gatt.ModelStatus.OK, 3, "2.0")
    assert bytes(response).hex() == "020003000000" + "322e30"
    frame = bytes(gatt.RecordFrame(RECORD, 6))
    body = (
        struct.pack("<QQBB", 7, 6, 0, 0)
        + bytes([29])
        + RECORD.t_utc.encode()
        + b"\x02s1"
        + b'{"a":1}'
    )
    assert frame == struct.pack("<I", len(body) + 4) + body + struct.pack("<I", zlib.crc32(body))


def test_round_trips() -> None:
    for value in (
        gatt.RacpRequest(gatt.RacpOp.ACK, 2**62, 0),
        gatt.RacpResponse(gatt.RacpOp.REPORT, gatt.RacpStatus.NO_RECORDS, 9, 0),
        gatt.ProfilePayload(PROFILE),
        gatt.ModelRequest(gatt.ModelOp.BEGIN, 1234, bytes(range(32))),
        gatt.ModelResponse(gatt.ModelOp.COMMIT, gatt.ModelStatus.INSTALL_REFUSED, 0, "bad sig é"),
        gatt.ModelChunk(99, b"xyz"),
        gatt.StatusPayload(bytes(16), 10, 5, 5, 10, 4096, 10**9, 0, 1_800_000_000, "1.2.3"),
    ):
        assert type(value).from_bytes(bytes(value)) == value
    assert len(bytes(gatt.ProfilePayload(PROFILE))) == 22  # one read at the default MTU 23


def test_guided_test_payloads_golden_and_round_trips() -> None:
    assert bytes(wire.GuidedRequest(wire.GuidedOp.START)) == b"\x01"
    response = wire.GuidedResponse(wire.GuidedOp.START, wire.GuidedStatus.NO_MODEL, "no model")
    assert bytes(response) == b"\x01\x01\x01no model"
    step = wire.GuidedStep(StepProgress(2, "right_bend", "done", 12.345, 38.52))
    # kind, index, step 3 of TEST_STEPS, state 1 (done), 12,345 ms, 3,852 cdeg
    assert bytes(step) == struct.pack("<BBBBIh", 2, 2, 3, 1, 12345, 3852)
    assert len(bytes(step)) <= 20  # one indication at the default MTU
    end = wire.GuidedEnd("incomplete", ("calibrate", "left_rotation"), "a step timed out")
    assert bytes(end)[:4] == struct.pack("<BBH", 3, 1, 1 | 1 << 9)
    nod = wire.GuidedStep(StepProgress(1, "flexion", "done", 20.0, None))
    for value in (response, step, end, nod, wire.GuidedEnd("complete", ())):
        assert wire.decode_indication(bytes(value)) == value
    with pytest.raises(gatt.ProtocolError, match="complete with missing"):
        wire.GuidedEnd.from_bytes(struct.pack("<BBH", 3, 0, 2))
    with pytest.raises(gatt.ProtocolError, match="unknown kind 9"):
        wire.decode_indication(b"\x09")


def test_record_stream_reassembles_any_cuts_and_detects_loss() -> None:
    payload = '{"x":"' + "abc" * 400 + '"}'  # compresses: travels zlib'd
    records = [gatt.SyncRecord(s, "t", "epoch", None, payload) for s in (3, 4, 9)]
    stream = b"".join(
        bytes(gatt.RecordFrame(r, p)) for r, p in zip(records, (0, 3, 4), strict=True)
    )
    assert len(stream) < len(payload) * 3 / 4
    for size in (1, 7, 20, 244, len(stream)):
        decoder = gatt.RecordStreamDecoder()
        decoder.start(0)
        got = [r for piece in gatt.chunk(stream, size) for r in decoder.feed(piece)]
        assert got == records and decoder.error is None
    # a lost notification: the chain (or the CRC) breaks; what came before stays good
    decoder = gatt.RecordStreamDecoder()
    decoder.start(0)
    pieces = gatt.chunk(stream, 50)
    got = [r for piece in pieces[:1] + pieces[2:] for r in decoder.feed(piece)]
    assert decoder.error is not None and got == records[: len(got)] and len(got) < 3
    # a report starting after another seq than asked is refused
    decoder.start(1)
    assert decoder.feed(stream) == [] and "lost" in str(decoder.error)


def test_bad_payloads_are_named() -> None:
    with pytest.raises(gatt.ProtocolError, match="RacpRequest: 2 bytes, expected 13"):
        gatt.RacpRequest.from_bytes(b"\x01\x02")
    with pytest.raises(gatt.ProtocolError, match="unknown RacpOp 9"):
        gatt.RacpRequest.from_bytes(bytes([9]) + bytes(12))
    bad_profile = bytearray(bytes(gatt.ProfilePayload(PROFILE)))
    bad_profile[2:6] = struct.pack("<I", 164_000)  # stature in cm, not m
    with pytest.raises(gatt.ProtocolError, match="stature_m"):
        gatt.ProfilePayload.from_bytes(bytes(bad_profile))
    with pytest.raises(gatt.ProtocolError, match="no data"):
        gatt.ModelChunk.from_bytes(b"\0\0\0\0")


DECODERS = [
    gatt.RacpRequest.from_bytes,
    gatt.RacpResponse.from_bytes,
    gatt.ProfilePayload.from_bytes,
    gatt.ModelRequest.from_bytes,
    gatt.ModelResponse.from_bytes,
    gatt.ModelChunk.from_bytes,
    gatt.StatusPayload.from_bytes,
    gatt.RecordFrame.decode_body,
    wire.GuidedRequest.from_bytes,
    wire.decode_indication,
]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda d: d.__qualname__.split(".")[0])
@FUZZ
@given(data=st.binary(max_size=300))
def test_decoders_raise_only_protocol_errors(decode: object, data: bytes) -> None:
    refusal: gatt.ProtocolError | None = None
    decoded: object = None
    try:
        decoded = decode(data)  # type: ignore[operator]
    except gatt.ProtocolError as exc:  # the only refusal allowed; anything else fails the test
        refusal = exc
    if refusal is not None:
        assert refusal.payload and refusal.reason  # it names the payload and what was wrong
    else:
        # accepted: a payload of the contract
        assert type(decoded).__module__ in (gatt.__name__, wire.__name__)


@FUZZ
@given(data=st.binary(max_size=2000), cut=st.integers(1, 300))
def test_stream_decoder_never_raises(data: bytes, cut: int) -> None:
    decoder = gatt.RecordStreamDecoder()
    decoder.start(0)
    for piece in gatt.chunk(data, cut):
        decoder.feed(piece)
