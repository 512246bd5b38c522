"""Showing data (user names, paths, values from files or devices) on a terminal or in a log:
non-printable characters escaped, so that an ESC sequence or a carriage return in a stored value
cannot rewrite what the reader sees. Print the result with markup off (Rich's ``markup=False``
or a ``rich.text.Text``), so that ``[bold]`` in data is shown, not interpreted."""

from __future__ import annotations


def printable(text: str, limit: int = 200) -> str:
    """``text`` with control and other non-printable characters as Python escapes, cut at
    ``limit`` characters (with an ellipsis)."""
    shown = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def report_error(problem: object, prefix: str = "error") -> None:
    """The one way every command prints a refusal: ``error: <message>`` on stderr in bold red,
    the message shown as data (paths and values may contain '[' or escape sequences)."""
    from rich.console import Console

    message = printable(str(problem), limit=4000)
    Console(stderr=True, soft_wrap=True).print(
        f"{prefix}: {message}", markup=False, highlight=False, style="bold red"
    )
