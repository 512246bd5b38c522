"""Errors raised when a contract record is constructed from bad values.

ContractError
 └── InvalidAnthropometricsError (ValueError)   field, value, reason
"""

from __future__ import annotations


class ContractError(Exception):
    """Base of every error a contract raises on validation."""


class InvalidAnthropometricsError(ContractError, ValueError):
    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"anthropometrics: {field} = {value!r}: {reason}")
        self.field, self.value, self.reason = field, value, reason
