"""The guided test end to end over the virtual radio: the gateway starts it, the hub's real
pipeline follows a simulated wearer performing it, the gateway says every step and the result;
a lost link leaves an abandoned test on both sides; a hub without a model refuses in words."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from ble_gateway.guided_test import (
    Guidance,
    GuidedTestLinkLostError,
    abort_guided_test,
    run_guided_test,
)
from ble_gateway.hub_client import HubRefusedError, RetryPolicy
from ble_gateway.radio import GatewayRadio, bumble_radio
from edge_runtime.ble.radio import VirtualRadio
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.bundle import load_public_key
from edge_runtime.contracts.guided_test import (
    CALIBRATE,
    DIRECTION_ORDER,
    PROMPTS,
    GuidedTestResult,
    StepProgress,
)
from edge_runtime.contracts.model_bundle import verify_model_bundle
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.hub.pipeline import HubPipeline
from edge_runtime.hub.storage import HubStore
from tests.edge_runtime.ble.harness import StoreHub, running_hub
from tests.hub_fixtures import protocol_session, sensor_chunks

QUICK = RetryPolicy(max_attempts=3, connect_timeout_s=5.0, response_timeout_s=5.0)


class PipelineHub(StoreHub):
    """The hub's BLE access over a real pipeline; once a test starts, the simulated wearer
    performs it (the sensors' chunks, half a second at a time, between radio events)."""

    def __init__(
        self, store: HubStore, pipeline: HubPipeline, motion: tuple[ImuRecording, ImuRecording]
    ) -> None:
        super().__init__(store)
        self.pipeline, self.motion = pipeline, motion
        self.feeder: asyncio.Task[None] | None = None
        self.on_chunk: Callable[[float], None] = lambda _t: None

    def start_test(self, listener: Callable[[StepProgress | GuidedTestResult], None]) -> None:
        self.pipeline.start_test()
        self.pipeline.test_listener = listener
        self.feeder = asyncio.ensure_future(self._perform())

    def abort_test(self, words: str) -> bool:
        return self.pipeline.abort_test(words)

    def guided_test_running(self) -> bool:
        return self.pipeline.guided_test_running

    async def _perform(self) -> None:
        for start, role, part in sensor_chunks(*self.motion):
            self.pipeline.push(role, part)  # type: ignore[arg-type]
            self.on_chunk(start)
            await asyncio.sleep(0.002)
        self.pipeline.close()


def _hub(
    tmp: Path, bundle: Path, pub: Path, wearer: Anthropometrics
) -> tuple[PipelineHub, tuple[str, ...]]:
    head, trunk, restricted = protocol_session(bundle, pub, wearer, seed=21)
    store = HubStore(tmp / "hub.db")
    checked = verify_model_bundle(bundle, load_public_key(pub))
    return PipelineHub(store, HubPipeline(store, checked, wearer), (head, trunk)), restricted


def _gateway(radio: VirtualRadio, tmp: Path, passkey: int) -> GatewayRadio:
    return bumble_radio(radio.controller(), tmp / "gw", passkey=lambda: passkey)


def test_the_gateway_guides_a_complete_test_and_the_hub_assesses_it(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics,
    tmp_path: Path,
) -> None:  # fmt: skip
    hub, restricted = _hub(tmp_path, quantized_bundle, signing_keys[1], wearer)
    said: list[Guidance] = []

    async def main() -> None:
        radio = VirtualRadio(seed=11)
        async with running_hub(radio, hub, tmp_path / "ble") as identity:
            gateway = _gateway(radio, tmp_path, identity.passkey)
            end = await run_guided_test(gateway, str(identity.address), said.append, QUICK)
            assert end.outcome == "complete" and end.missing == ()
            assert await abort_guided_test(gateway, str(identity.address), QUICK) is False
            assert hub.feeder is not None
            await hub.feeder

    asyncio.run(main())
    prompts = [g for g in said if g.kind == "prompt"]
    assert prompts[0].step == CALIBRATE and prompts[0].text == PROMPTS[CALIBRATE]
    nod = next(g.step for g in said if g.kind == "done" and g.step != CALIBRATE)
    assert [g.step for g in prompts[1:]] == [d for d in DIRECTION_ORDER if d != nod]
    assert said[-1].kind == "result" and said[-1].text.startswith("Test complete")
    sessions = [r.payload for r in hub.store.records_of_kind("session")]
    test = sessions[0]
    assert test["kind"] == "test" and test["guided_test"]["outcome"] == "complete"
    assert set(test["assessment"]["flagged"]) == set(restricted)


def test_a_lost_link_abandons_the_test_on_both_sides_and_nothing_is_lost(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics,
    tmp_path: Path,
) -> None:  # fmt: skip
    hub, _ = _hub(tmp_path, quantized_bundle, signing_keys[1], wearer)
    radio = VirtualRadio(seed=12)

    def cut_mid_test(t_s: float) -> None:
        if t_s >= 30.0 and hub.pipeline.guided_test_running and not radio.cuts["central"]:
            radio.terminate("central")

    hub.on_chunk = cut_mid_test
    said: list[Guidance] = []

    async def main() -> None:
        async with running_hub(radio, hub, tmp_path / "ble") as identity:
            gateway = _gateway(radio, tmp_path, identity.passkey)
            with pytest.raises(GuidedTestLinkLostError, match="abandoned"):
                await run_guided_test(gateway, str(identity.address), said.append, QUICK)
            assert hub.feeder is not None
            with contextlib.suppress(asyncio.CancelledError):
                await hub.feeder

    asyncio.run(main())
    assert said and said[0].kind == "prompt" and all(g.kind != "result" for g in said)
    test, *after = [r.payload for r in hub.store.records_of_kind("session")]
    assert test["kind"] == "test" and test["end_reason"] == "test_aborted"
    assert test["guided_test"]["outcome"] == "abandoned" and test["assessment"] is None
    assert test["guided_test"]["reason"] == "the phone or computer disconnected"
    assert [s["kind"] for s in after] == ["wear"] * len(after) and after  # measuring goes on


def test_a_hub_without_a_model_refuses_a_test_in_words(tmp_path: Path) -> None:
    async def main() -> None:
        radio = VirtualRadio(seed=13)
        hub = StoreHub(HubStore(tmp_path / "hub.db"))
        async with running_hub(radio, hub, tmp_path / "ble") as identity:
            gateway = _gateway(radio, tmp_path, identity.passkey)
            with pytest.raises(HubRefusedError, match="no model is installed"):
                await run_guided_test(gateway, str(identity.address), lambda g: None, QUICK)

    asyncio.run(main())
