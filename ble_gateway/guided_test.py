"""The guided range-of-motion test from the gateway: start it on the hub, tell the wearer each
step, report the result in words. A library API that any front end drives (a phone app's
screens, a desktop window, a voice); ``cervical gateway test --device ADDR`` is its terminal
front end.

A test is interactive, so once the hub has started it, it runs on that one connection and is never
silently retried (connecting before that is retried as usual): if the link drops, the hub abandons
the test (nobody prompts the wearer any more) and stores it as abandoned, and ``run_guided_test``
raises ``GuidedTestLinkLostError`` saying so; the front end offers to start again. A hub that
refuses (no model, a test already running, no envelope) raises ``HubRefusedError`` with the hub's
words.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ble_gateway.errors import GatewayError
from ble_gateway.hub_client import (
    HubConnection,
    HubRefusedError,
    LinkLostError,
    RetryPolicy,
    with_attempts,
)
from ble_gateway.radio import GatewayRadio
from edge_runtime.contracts import gatt_guided as wire
from edge_runtime.contracts.gatt import ProtocolError
from edge_runtime.contracts.guided_test import PROMPTS, GuidedTestResult, StepProgress

# the longest a test may take without a word from the hub: its slowest step and a margin
SILENCE_TIMEOUT_S = 120.0


class GuidedTestLinkLostError(GatewayError):
    """The link dropped during a test: the hub abandoned it; start a new one (not retried)."""


@dataclass(frozen=True)
class Guidance:
    """One thing to tell the wearer: a step to do (``prompt``), a step finished (``done``,
    ``missed``) or the test's end (``result``, with ``end``)."""

    kind: Literal["prompt", "done", "missed", "result"]
    text: str
    step: str | None = None
    progress: StepProgress | None = None
    end: wire.GuidedEnd | None = None


def guidance_for(item: wire.GuidedStep | wire.GuidedEnd) -> Guidance:
    """What the wearer hears for an indication of the hub."""
    if isinstance(item, wire.GuidedEnd):
        words = GuidedTestResult(item.outcome, (), item.missing, item.reason).words()  # type: ignore[arg-type]
        return Guidance("result", words, end=item)
    p = item.progress
    if p.state == "active":
        return Guidance("prompt", PROMPTS[p.step], p.step, p)
    if p.state == "done":
        reached = "" if p.peak_deg is None else f" ({p.peak_deg:.0f} deg)"
        return Guidance("done", f"Done{reached}.", p.step, p)
    return Guidance("missed", "No movement seen; going on to the next one.", p.step, p)


async def run_guided_test(
    radio: GatewayRadio,
    address: str,
    on_guidance: Callable[[Guidance], None],
    policy: RetryPolicy | None = None,
) -> wire.GuidedEnd:
    """Start a guided test on the hub and follow it to its end (module docstring). Connecting is
    retried like any operation until the hub has answered START; after that a failed link ends
    the call (the hub abandons a test whose link drops), never a silent second test."""
    policy = policy or RetryPolicy()

    async def work(hub: HubConnection) -> wire.GuidedEnd:
        queue: asyncio.Queue[wire.GuidedResponse | wire.GuidedStep | wire.GuidedEnd] = (
            asyncio.Queue()
        )

        def on_indication(_: Any, data: bytearray) -> None:
            with contextlib.suppress(ProtocolError):
                queue.put_nowait(wire.decode_indication(bytes(data)))

        await hub.client.start_notify(wire.TEST_CONTROL, on_indication)
        start = wire.GuidedRequest(wire.GuidedOp.START)
        await hub.client.write_gatt_char(wire.TEST_CONTROL, bytes(start), response=True)
        started = False
        while True:
            try:
                item = await hub.answer(
                    queue, SILENCE_TIMEOUT_S if started else policy.response_timeout_s
                )
            except LinkLostError as exc:
                if not started:
                    raise
                raise GuidedTestLinkLostError(
                    f"{address}: the link to the hub failed during the test ({exc}); the hub "
                    "abandons a test whose link drops and stores it as abandoned: start a new test"
                ) from exc
            if isinstance(item, wire.GuidedResponse):
                if item.op is not wire.GuidedOp.START:
                    continue
                if item.status is not wire.GuidedStatus.OK:
                    raise HubRefusedError(
                        f"{address}: the hub did not start the test: {item.message}"
                    )
                started = True
                continue
            guidance = guidance_for(item)
            on_guidance(guidance)
            if isinstance(item, wire.GuidedEnd):
                return item

    result: wire.GuidedEnd = await with_attempts(radio, address, policy, work, lambda: 0)
    return result


async def abort_guided_test(
    radio: GatewayRadio, address: str, policy: RetryPolicy | None = None
) -> bool:
    """Stop the test running on the hub (False: none was running); it is stored as abandoned."""
    policy = policy or RetryPolicy()

    async def work(hub: HubConnection) -> bool:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def on_indication(_: Any, data: bytearray) -> None:
            with contextlib.suppress(ProtocolError):
                item = wire.decode_indication(bytes(data))
                if isinstance(item, wire.GuidedResponse):
                    queue.put_nowait(item)

        await hub.client.start_notify(wire.TEST_CONTROL, on_indication)
        request = wire.GuidedRequest(wire.GuidedOp.ABORT)
        await hub.client.write_gatt_char(wire.TEST_CONTROL, bytes(request), response=True)
        response: wire.GuidedResponse = await hub.answer(queue, policy.response_timeout_s)
        return response.status is wire.GuidedStatus.OK

    aborted: bool = await with_attempts(radio, address, policy, work, lambda: 0)
    return aborted
