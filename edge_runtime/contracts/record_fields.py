"""Typed reads from the JSON objects of a record payload: every refusal is a
:class:`RecordError` naming the record and the key path (``forces.groups.flexion.mean_n``),
the value and what is wrong with it. Used by ``record_payloads``; nothing here is defaulted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from edge_runtime.common.numbers import is_finite_number
from edge_runtime.contracts.errors import ContractError

# Names a record may carry (muscles, muscle groups, features, sectors, events, reasons): plain
# identifiers, so that no page, plot (matplotlib mathtext: '$'), terminal (Rich markup: '[')
# or spreadsheet (formulas: '=') interprets them.
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.\- ]{0,63}")
MAX_TEXT = 500  # characters of a free-text field (notes, reasons)


class RecordError(ContractError, ValueError):
    """A record payload that is not what its kind defines; names the record and the key."""

    def __init__(self, record: str, key: str, reason: str) -> None:
        super().__init__(
            f"{record} record: {key}: {reason}" if key else f"{record} record: {reason}"
        )
        self.record, self.key, self.reason = record, key, reason


class Fields:
    """Typed reads from one JSON object of a payload, every error naming the record and key."""

    def __init__(self, record: str, data: object, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise RecordError(record, path, f"must be an object, not {type(data).__name__}")
        self.record, self.data, self.path = record, data, path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, value: object, reason: str) -> RecordError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return RecordError(self.record, self.key(name), f"{shown}: {reason}")

    def raw(self, name: str) -> Any:
        self.used.add(name)
        if name not in self.data:
            raise RecordError(self.record, self.key(name), "missing")
        return self.data[name]

    def number(self, name: str, minimum: float | None = None, optional: bool = False) -> Any:
        v = self.raw(name)
        if v is None and optional:
            return None
        return self.check_number(name, v, minimum)

    def check_number(self, name: str, v: object, minimum: float | None = None) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(name, v, "not a number")
        if not is_finite_number(v):
            raise self.fail(name, v, "not finite")
        if minimum is not None and v < minimum:
            raise self.fail(name, v, f"below {minimum}")
        return float(v)

    def count(self, name: str) -> int:
        v = self.raw(name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 2**53:
            raise self.fail(name, v, "not a count (a whole number >= 0)")
        return v

    def text(
        self, name: str, optional: bool = False, pattern: re.Pattern[str] | None = None
    ) -> Any:
        v = self.raw(name)
        if v is None and optional:
            return None
        return self.check_text(name, v, pattern)

    def check_text(self, name: str, v: object, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(v, str):
            raise self.fail(name, v, "not a string")
        if len(v) > MAX_TEXT or not v.isprintable():
            raise self.fail(name, v, f"not printable text of at most {MAX_TEXT} characters")
        if pattern is not None and not pattern.fullmatch(v):
            raise self.fail(name, v, f"not a name matching {pattern.pattern}")
        return v

    def names(self, name: str, pattern: re.Pattern[str] = NAME_PATTERN) -> tuple[str, ...]:
        return tuple(self.check_text(name, v, pattern) for v in self.array(name))

    def array(self, name: str, optional: bool = False) -> Any:
        v = self.raw(name)
        if v is None and optional:
            return None
        if not isinstance(v, list):
            raise self.fail(name, v, "not a list")
        return v

    def numbers(self, name: str, length: int | None = None, optional: bool = False) -> Any:
        v = self.array(name, optional)
        if v is None:
            return None
        if length is not None and len(v) != length:
            raise self.fail(name, v, f"{len(v)} values, not {length}")
        return tuple(self.check_number(name, x) for x in v)

    def sub(self, name: str, optional: bool = False) -> Any:
        v = self.raw(name)
        if v is None and optional:
            return None
        return Fields(self.record, v, self.key(name))

    def mapping(self, name: str) -> dict[str, Any]:
        """An object whose keys are names (muscles, groups, features)."""
        v = self.raw(name)
        if not isinstance(v, Mapping):
            raise self.fail(name, v, "not an object")
        for k in v:
            self.check_text(f"{name} key", k, NAME_PATTERN)
        return dict(v)

    def done(self, ignore: Sequence[str] = ()) -> None:
        unknown = set(self.data) - self.used - set(ignore)
        if unknown:
            raise RecordError(self.record, self.key(sorted(unknown)[0]), "unknown key")
