"""What the clinician pages say of a session's kind and of a guided test's result, in words."""

from __future__ import annotations

from typing import Any

from edge_runtime.contracts.guided_test import GuidedTestResult
from edge_runtime.contracts.record_fields import Fields

SESSION_KIND_WORDS = {
    "test": "guided test",
    "wear": "wear",
    None: "session",  # recorded before guided tests: assessed as every session then was
}


def session_kind_words(kind: str | None) -> str:
    """A session's kind as the pages name it (wear is never assessed; only tests are)."""
    return SESSION_KIND_WORDS.get(kind, str(kind))


def guided_test_words(result: dict[str, Any]) -> str:
    """A stored guided test's result (a session payload's ``guided_test``), in words."""
    return GuidedTestResult.read(Fields("session", result, "guided_test")).words()
