"""The guided test's GATT characteristic (``TEST_CONTROL``, write + indicate): the gateway
writes a ``GuidedRequest`` (start, abort, query); the hub indicates a ``GuidedResponse`` to each,
then, for the test it started on that link, a ``GuidedStep`` at every change of step and one
``GuidedEnd`` with the outcome. The wearer's prompts are the gateway's (``guided_test.PROMPTS``,
looked up by step), so the hub sends codes, not words.

The link that started a test owns it: if that link drops, the hub abandons the test ("the phone
or computer disconnected"), since nobody prompts the wearer any more; the abandoned test is
stored like any session and syncs later. A gateway whose link dropped reports the test as lost
and may start a new one.

Every indication starts with its kind (``GuidedKind``) and fits one indication at the default
MTU except a ``GuidedEnd``/``GuidedResponse`` with a long message (cut to ``MESSAGE_MAX``).
Integers little-endian; decoders raise ``ProtocolError`` and nothing else (fuzzed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from edge_runtime.contracts.gatt import _BASE, MESSAGE_MAX, ProtocolError, _enum, _unpack
from edge_runtime.contracts.guided_test import (
    OUTCOMES,
    STEP_STATES,
    TEST_STEPS,
    GuidedTestResult,
    StepProgress,
)

TEST_CONTROL = _BASE.format(0x0008)
NO_PEAK = -(1 << 15)  # a step without a measured peak (the calibration and its nod)


class GuidedOp(IntEnum):
    START = 1
    ABORT = 2
    QUERY = 3


class GuidedStatus(IntEnum):
    OK = 0
    NO_MODEL = 1  # no model installed: nothing to assess against
    RUNNING = 2  # a test already runs (START), or is running (QUERY)
    NOT_RUNNING = 3  # no test to abort (ABORT), or none running (QUERY)
    REFUSED = 4  # the hub cannot run a test now (the message says why)


class GuidedKind(IntEnum):
    RESPONSE = 1
    STEP = 2
    END = 3


def _text(message: str) -> bytes:
    return message.encode()[:MESSAGE_MAX].decode(errors="ignore").encode()


def _message(name: str, data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ProtocolError(name, "message is not UTF-8") from None


@dataclass(frozen=True)
class GuidedRequest:
    op: GuidedOp
    HEAD: ClassVar[str] = "<B"

    def __bytes__(self) -> bytes:
        return struct.pack(self.HEAD, self.op)

    @classmethod
    def from_bytes(cls, data: bytes) -> GuidedRequest:
        (op,) = _unpack("GuidedRequest", cls.HEAD, data)
        return cls(GuidedOp(_enum("GuidedRequest", GuidedOp, op)))


@dataclass(frozen=True)
class GuidedResponse:
    op: GuidedOp
    status: GuidedStatus
    message: str = ""
    HEAD: ClassVar[str] = "<BBB"

    def __bytes__(self) -> bytes:
        return struct.pack(self.HEAD, GuidedKind.RESPONSE, self.op, self.status) + _text(
            self.message
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> GuidedResponse:
        kind, op, status = _unpack("GuidedResponse", cls.HEAD, data, exact=False)
        if kind != GuidedKind.RESPONSE:
            raise ProtocolError("GuidedResponse", f"kind {kind}, not a response")
        return cls(
            GuidedOp(_enum("GuidedResponse", GuidedOp, op)),
            GuidedStatus(_enum("GuidedResponse", GuidedStatus, status)),
            _message("GuidedResponse", data[struct.calcsize(cls.HEAD) :]),
        )


@dataclass(frozen=True)
class GuidedStep:
    """A step's new state (``guided_test.StepProgress`` on the wire; times in ms)."""

    progress: StepProgress
    HEAD: ClassVar[str] = "<BBBBIh"

    def __bytes__(self) -> bytes:
        p = self.progress
        peak = (
            NO_PEAK if p.peak_deg is None else max(NO_PEAK + 1, min(32767, round(p.peak_deg * 100)))
        )
        t_ms = max(0, min(2**32 - 1, round(p.t_s * 1000)))
        return struct.pack(
            self.HEAD, GuidedKind.STEP, p.step_index, TEST_STEPS.index(p.step),
            STEP_STATES.index(p.state), t_ms, peak,
        )  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes) -> GuidedStep:
        kind, index, step, state, t_ms, peak = _unpack("GuidedStep", cls.HEAD, data)
        if kind != GuidedKind.STEP:
            raise ProtocolError("GuidedStep", f"kind {kind}, not a step")
        if step >= len(TEST_STEPS) or state >= len(STEP_STATES) or index >= len(TEST_STEPS):
            raise ProtocolError("GuidedStep", f"step {step} / index {index} / state {state}")
        progress = StepProgress(
            index, TEST_STEPS[step], STEP_STATES[state],  # type: ignore[arg-type]
            t_ms / 1000, None if peak == NO_PEAK else peak / 100,
        )  # fmt: skip
        return cls(progress)


@dataclass(frozen=True)
class GuidedEnd:
    """The test's outcome, the steps missing (a bit per ``TEST_STEPS``) and why."""

    outcome: str
    missing: tuple[str, ...]
    reason: str = ""
    HEAD: ClassVar[str] = "<BBH"

    @classmethod
    def of(cls, result: GuidedTestResult) -> GuidedEnd:
        return cls(result.outcome, result.missing, result.reason)

    def __bytes__(self) -> bytes:
        mask = sum(1 << TEST_STEPS.index(s) for s in self.missing)
        head = struct.pack(self.HEAD, GuidedKind.END, OUTCOMES.index(self.outcome), mask)
        return head + _text(self.reason)

    @classmethod
    def from_bytes(cls, data: bytes) -> GuidedEnd:
        kind, outcome, mask = _unpack("GuidedEnd", cls.HEAD, data, exact=False)
        if kind != GuidedKind.END:
            raise ProtocolError("GuidedEnd", f"kind {kind}, not an end")
        if outcome >= len(OUTCOMES) or mask >> len(TEST_STEPS):
            raise ProtocolError("GuidedEnd", f"outcome {outcome} / missing mask {mask:#x}")
        missing = tuple(s for k, s in enumerate(TEST_STEPS) if mask >> k & 1)
        if (OUTCOMES[outcome] == "complete") != (not missing):
            raise ProtocolError("GuidedEnd", f"{OUTCOMES[outcome]} with missing {missing}")
        return cls(OUTCOMES[outcome], missing, _message("GuidedEnd", data[4:]))


def decode_indication(data: bytes) -> GuidedResponse | GuidedStep | GuidedEnd:
    """Any indication of ``TEST_CONTROL``, by its first byte."""
    if not data:
        raise ProtocolError("guided test indication", "empty")
    kind = data[0]
    if kind == GuidedKind.RESPONSE:
        return GuidedResponse.from_bytes(data)
    if kind == GuidedKind.STEP:
        return GuidedStep.from_bytes(data)
    if kind == GuidedKind.END:
        return GuidedEnd.from_bytes(data)
    raise ProtocolError("guided test indication", f"unknown kind {kind}")
