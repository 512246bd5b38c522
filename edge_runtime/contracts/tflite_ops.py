"""Which operators a .tflite flatbuffer needs, and whether a hub runtime has them.

Read from the file itself with a few lines of flatbuffer decoding (stdlib only), so the check runs
where no TFLite runtime is installed (the conversion venv checks for the hub's runtimes). The
models' ``min_runtime_version`` metadata is empty, so op versions are compared one by one with the
highest version each runtime's built-in op resolver registers.

Those maxima were measured by loading this project's int8 and float models with each op's version
field rewritten to 1..19 (see tests/edge_runtime/test_tflite_ops.py for the cross-check against
the official schema). An op a runtime table does not list is treated as unsupported: only ops
measured on both runtimes may reach a hub.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge_runtime.contracts.errors import ContractError

# tflite::BuiltinOperator codes (schema.fbs) of the ops our MLPs can contain, named for messages.
BUILTIN_NAMES: dict[int, str] = {
    0: "ADD",
    6: "DEQUANTIZE",
    9: "FULLY_CONNECTED",
    14: "LOGISTIC",
    18: "MUL",
    19: "RELU",
    22: "RESHAPE",
    28: "TANH",
    32: "CUSTOM",
    114: "QUANTIZE",
}
CUSTOM_CODE = 32

LITERT = "ai-edge-litert 2.3"  # the hub's runtime
TFLITE_RUNTIME = "tflite-runtime 2.14"  # its fallback, where LiteRT cannot be installed

# Highest op version each hub runtime's built-in resolver accepts (measured, see module docstring).
RUNTIME_MAX_OP_VERSIONS: dict[str, dict[str, int]] = {
    LITERT: {
        "FULLY_CONNECTED": 14,
        "RESHAPE": 1,
        "ADD": 6,
        "MUL": 8,
        "QUANTIZE": 6,
        "DEQUANTIZE": 9,
    },
    TFLITE_RUNTIME: {
        "FULLY_CONNECTED": 10,
        "RESHAPE": 1,
        "ADD": 5,
        "MUL": 7,
        "QUANTIZE": 3,
        "DEQUANTIZE": 5,
    },
}
HUB_RUNTIMES = tuple(RUNTIME_MAX_OP_VERSIONS)


class TfliteModelError(ContractError):
    """A .tflite file that cannot be read or needs operators a hub runtime lacks."""


@dataclass(frozen=True)
class OperatorCode:
    builtin_code: int
    version: int
    custom_code: str | None

    @property
    def name(self) -> str:
        if self.builtin_code == CUSTOM_CODE:
            return f"CUSTOM:{self.custom_code}"
        return BUILTIN_NAMES.get(self.builtin_code, f"BUILTIN#{self.builtin_code}")


class _Table:
    """A flatbuffer table: fields by index through its vtable (absent fields read as None)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - _i32(buf, pos)
        self.vtable_size = _u16(buf, self.vtable)

    def field_pos(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return None
        offset = _u16(self.buf, self.vtable + entry)
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default: int) -> int:
        p = self.field_pos(index)
        return default if p is None else int(struct.unpack_from("<" + fmt, self.buf, p)[0])

    def tables(self, index: int) -> list[_Table]:
        p = self.field_pos(index)
        if p is None:
            return []
        vec = p + _u32(self.buf, p)
        n = _u32(self.buf, vec)
        return [
            _Table(self.buf, e + _u32(self.buf, e)) for e in (vec + 4 + 4 * i for i in range(n))
        ]

    def string(self, index: int) -> str | None:
        p = self.field_pos(index)
        if p is None:
            return None
        s = p + _u32(self.buf, p)
        return self.buf[s + 4 : s + 4 + _u32(self.buf, s)].decode("utf-8", "replace")


def _u16(buf: bytes, pos: int) -> int:
    return int(struct.unpack_from("<H", buf, pos)[0])


def _u32(buf: bytes, pos: int) -> int:
    return int(struct.unpack_from("<I", buf, pos)[0])


def _i32(buf: bytes, pos: int) -> int:
    return int(struct.unpack_from("<i", buf, pos)[0])


def operator_codes(model: bytes) -> list[OperatorCode]:
    """The operator codes a TFLite model declares (Model.operator_codes, schema v3)."""
    if len(model) < 8 or model[4:8] != b"TFL3":
        raise TfliteModelError("not a TFLite flatbuffer (file identifier 'TFL3' missing)")
    try:
        root = _Table(model, _u32(model, 0))
        codes = []
        for oc in root.tables(1):  # Model field 1: operator_codes
            deprecated = oc.scalar(0, "b", 0)  # int8 deprecated_builtin_code
            builtin = oc.scalar(3, "i", 0)  # int32 builtin_code (codes > 127)
            codes.append(OperatorCode(max(deprecated, builtin), oc.scalar(2, "i", 1), oc.string(1)))
    except (struct.error, IndexError) as exc:
        raise TfliteModelError(f"the TFLite flatbuffer is truncated or corrupt ({exc})") from exc
    return codes


def unsupported_ops(model: bytes, runtime: str) -> list[str]:
    """Human-readable problems of ``model`` on ``runtime`` (empty when it can run there)."""
    if runtime not in RUNTIME_MAX_OP_VERSIONS:
        raise TfliteModelError(f"unknown runtime {runtime!r}; known: {list(HUB_RUNTIMES)}")
    table = RUNTIME_MAX_OP_VERSIONS[runtime]
    problems = []
    for op in operator_codes(model):
        if op.builtin_code == CUSTOM_CODE:
            problems.append(
                f"{op.name} is a custom (Flex/select TF) op, which {runtime} cannot run"
            )
        elif op.name not in table:
            problems.append(
                f"{op.name} v{op.version} is not in the op table measured for {runtime}"
            )
        elif op.version > table[op.name]:
            problems.append(
                f"{op.name} v{op.version} needs a newer runtime than {runtime} "
                f"(it has up to v{table[op.name]})"
            )
    return problems


def check_hub_compatible(model: bytes, runtimes: tuple[str, ...] = HUB_RUNTIMES) -> list[str]:
    """Raise TfliteModelError naming every op one of ``runtimes`` lacks; return the ops (name
    vN)."""
    problems = [f"{rt}: {p}" for rt in runtimes for p in unsupported_ops(model, rt)]
    if problems:
        raise TfliteModelError("the model cannot run on every hub runtime: " + "; ".join(problems))
    return [f"{op.name} v{op.version}" for op in operator_codes(model)]


def runtimes_supporting(model: bytes) -> tuple[str, ...]:
    """The hub runtimes that can run ``model`` (in ``HUB_RUNTIMES`` order)."""
    return tuple(rt for rt in HUB_RUNTIMES if not unsupported_ops(model, rt))
