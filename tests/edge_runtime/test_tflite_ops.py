"""The flatbuffer op reader against the official TFLite schema, and the hub op-table check."""

from __future__ import annotations

import flatbuffers
import pytest

from edge_runtime.contracts.tflite_ops import (
    TfliteModelError,
    check_hub_compatible,
    operator_codes,
    unsupported_ops,
)

schema = pytest.importorskip("ai_edge_litert.schema_py_generated", reason="needs the edge extra")


def model_bytes(ops: list[tuple[int, int, str | None]]) -> bytes:
    """A TFLite model declaring the given (builtin code, version, custom code) operators,
    packed with the official generated schema (the reference the reader is checked against)."""
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = []
    for code, version, custom in ops:
        oc = schema.OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)
        oc.version = version
        oc.customCode = custom
        model.operatorCodes.append(oc)
    model.subgraphs, model.buffers = [], []
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_reader_matches_official_schema() -> None:
    ops = [(9, 4, None), (22, 1, None), (114, 3, None), (150, 2, None), (32, 1, "FlexErf")]
    data = model_bytes(ops)
    parsed = operator_codes(data)
    official = schema.ModelT.InitFromPackedBuf(data, 0).operatorCodes
    assert [(o.builtin_code, o.version) for o in parsed] == [
        (max(o.builtinCode, o.deprecatedBuiltinCode), o.version) for o in official
    ]
    assert parsed[-1].custom_code == "FlexErf"
    assert [o.name for o in parsed[:3]] == ["FULLY_CONNECTED", "RESHAPE", "QUANTIZE"]


def test_hub_tables() -> None:
    fine = model_bytes([(9, 4, None), (22, 1, None)])
    assert check_hub_compatible(fine) == ["FULLY_CONNECTED v4", "RESHAPE v1"]
    # FULLY_CONNECTED v12 (dynamic-range models) runs on LiteRT 2.3, not on tflite-runtime 2.14.
    dynamic = model_bytes([(9, 12, None)])
    assert unsupported_ops(dynamic, "ai-edge-litert 2.3") == []
    assert (
        "FULLY_CONNECTED v12 needs a newer runtime than tflite-runtime 2.14 (it has up to v10)"
        in (unsupported_ops(dynamic, "tflite-runtime 2.14")[0])
    )
    with pytest.raises(TfliteModelError, match="CUSTOM:FlexErf is a custom"):
        check_hub_compatible(model_bytes([(32, 1, "FlexErf")]))
    with pytest.raises(TfliteModelError, match="BUILTIN#150 v1 is not in the op table"):
        check_hub_compatible(model_bytes([(150, 1, None)]))
    with pytest.raises(TfliteModelError, match="unknown runtime"):
        unsupported_ops(fine, "tflite 1.0")


def test_rejects_non_tflite_and_truncated() -> None:
    with pytest.raises(TfliteModelError, match="TFL3"):
        operator_codes(b"PK\x03\x04 not a model")
    data = model_bytes([(9, 4, None), (22, 1, None)])
    with pytest.raises(TfliteModelError, match="truncated or corrupt"):
        operator_codes(data[:24])
