"""The period a clinician looks at (inclusive dates), and the review's errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_
from sqlalchemy.sql.elements import ColumnElement

from ble_gateway.errors import GatewayError
from edge_runtime.contracts.record_payloads import DATE_RANGE


class ReviewError(GatewayError, ValueError):
    """A request the review cannot answer (a bad period; names the field and value)."""


class NotFoundError(ReviewError, LookupError):
    """An unknown patient, device or session."""


@dataclass(frozen=True)
class Period:
    """Inclusive UTC dates; None is open-ended."""

    start: date | None = None
    end: date | None = None

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> Period:
        def day(text: str | None, name: str) -> date | None:
            if not text:
                return None
            try:
                value = date.fromisoformat(text)
            except ValueError:
                raise ReviewError(f"{name} = {text[:40]!r}: not a date (YYYY-MM-DD)") from None
            first, last = DATE_RANGE[0].date(), DATE_RANGE[1].date() - timedelta(days=1)
            if not first <= value <= last:
                raise ReviewError(f"{name} = {text!r}: not between {first} and {last}")
            return value

        period = cls(day(start, "from"), day(end, "to"))
        if period.start and period.end and period.start > period.end:
            raise ReviewError(f"period: from {period.start} is after to {period.end}")
        return period

    def where(self, column: Any) -> ColumnElement[bool]:
        """SQL condition on an ISO-8601 UTC text column."""
        conditions = []
        if self.start:
            conditions.append(column >= self.start.isoformat())
        if self.end:
            conditions.append(column < (self.end + timedelta(days=1)).isoformat())
        return and_(True, *conditions)

    @property
    def label(self) -> str:
        if not self.start and not self.end:
            return "all data"
        return f"{self.start or 'first session'} to {self.end or 'last session'}"

    def query(self) -> str:
        """As URL query parameters (empty for all data)."""
        parts = [f"from={self.start}" if self.start else "", f"to={self.end}" if self.end else ""]
        return "&".join(p for p in parts if p)
