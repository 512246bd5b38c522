"""``cervical edge run``: the hub daemon (asyncio).

Tasks: one reader per sensor (blocking bus reads run in worker threads and only enqueue, each
chunk stamped with the time it was taken: a reader starved by a busy hub is then told from a
silent sensor, ``hub.frames``), one processing task (pipeline and storage), a housekeeping task
(retention), and any services handed in (the BLE GATT service). SIGTERM or SIGINT stop it
cleanly: readers stop, queued samples are processed, the open session is summarised and stored,
the database is closed.

With services, the end of finite sources (replay, sim) closes the session but the daemon keeps
serving until it is stopped; without, it stops.

A sensor that fails to open or stops answering is logged once and retried every
``sensor_retry_s`` until it returns; its silence shows in the records as SENSOR_LOST. A model
that fails verification stops the daemon with a clear error (exit code 3): the hub never runs an
unverified model, and systemd restarts it after an install. A hub with no model yet (fresh from
the factory) and a BLE service waits for a gateway to push one, serving BLE meanwhile (the
profile can be set, nothing is measured); without a service it stops (exit code 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.contracts.anthropometrics import Anthropometrics, read_profile
from edge_runtime.contracts.bundle import load_public_key
from edge_runtime.contracts.model_bundle import VerifiedBundle
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.hub.config import HubConfig
from edge_runtime.hub.frames import Arrival
from edge_runtime.hub.models import ModelSlots
from edge_runtime.hub.pipeline import HubPipeline
from edge_runtime.hub.storage import HubStore
from edge_runtime.sensors import ImuSource, SensorError, SensorRanges, SensorRole, open_source

log = logging.getLogger(__name__)
QUEUE_CHUNKS = 256
SensorItem = tuple[SensorRole, ImuRecording, Arrival | None]
HOUSEKEEPING_S = 3600.0
SERVICE_STOP_S = 5.0  # a service still running this long after the stop is cancelled

Service = Callable[["HubContext", asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class HubContext:
    """What services share with the daemon (the BLE service reads the store and profile)."""

    config: HubConfig
    store: HubStore
    slots: ModelSlots
    profile: Anthropometrics  # the wearer, as read at start or last set (the pipeline's own)
    pipeline: HubPipeline | None = None  # None while a fresh hub waits for its first model
    model_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def start_pipeline(self, bundle: VerifiedBundle) -> HubPipeline:
        """Measuring starts: the readers wait for this (a fresh hub's first model)."""
        self.pipeline = HubPipeline(
            self.store, bundle, self.profile, self.config.pipeline, SensorRanges(), SensorRanges()
        )
        self.pipeline.event("hub_started", bundle_version=self.pipeline.bundle_version)
        self.model_ready.set()
        return self.pipeline


async def _read_sensor(
    role: SensorRole,
    spec: str,
    config: HubConfig,
    queue: asyncio.Queue[SensorItem | None],
    stop: asyncio.Event,
) -> None:
    failing = False
    while not stop.is_set():
        try:
            source = await asyncio.to_thread(
                open_source, spec, role, config.realtime, config.replay_speed
            )
            chunks: Iterator[ImuRecording] = source.chunks()
            failing = False
            while not stop.is_set():
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:  # a finite source (replay, sim) ended
                    log.info("%s sensor %s: end of data", role, spec)
                    await queue.put(None)
                    return
                await queue.put((role, chunk, _arrival(source)))
        except SensorError as exc:
            if not failing:
                log.error("%s (retrying every %.0f s)", exc, config.sensor_retry_s)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), config.sensor_retry_s)


def _arrival(source: ImuSource) -> Arrival | None:
    """When the reader took the chunk, on the source's time scale (None: an unpaced source)."""
    if source.pace is None:
        return None
    return Arrival(time.monotonic() * source.pace, source.buffer_s)


async def _process(
    pipeline: HubPipeline,
    queue: asyncio.Queue[SensorItem | None],
    sources: int,
    stop: asyncio.Event,
    keep_serving: bool,
) -> None:
    ended = 0
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), timeout=1.0)
        except TimeoutError:
            if stop.is_set():
                return
            continue
        if item is None:
            ended += 1
            if ended == sources:
                if keep_serving:  # the services (BLE sync) go on until the daemon is stopped
                    pipeline.close()
                    log.info("all sensors ended; serving until stopped")
                    continue
                stop.set()
                return
            continue
        pipeline.push(*item)
        if stop.is_set():  # the rest of the queue is processed by the shutdown
            return


async def _housekeeping(ctx: HubContext, stop: asyncio.Event) -> None:
    while not stop.is_set():
        removed = ctx.store.prune_synced(ctx.config.retention_days * 86400.0)
        if removed:
            log.info("retention: removed %d synced record(s)", removed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HOUSEKEEPING_S)


def _sensor_specs(config: HubConfig) -> tuple[tuple[SensorRole, str], ...]:
    return (("head", config.head), ("trunk", config.trunk))


async def _first_model(ctx: HubContext, stop: asyncio.Event) -> HubPipeline | None:
    """The pipeline, once a model is installed (None if the daemon is stopped first)."""
    if ctx.pipeline is None:
        log.info("no model installed: serving BLE until a gateway pushes one; not measuring")
        waits = [asyncio.ensure_future(ctx.model_ready.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waits:
            waiter.cancel()
    return None if stop.is_set() else ctx.pipeline


async def run_hub(
    config: HubConfig, services: Sequence[Service] = (), stop: asyncio.Event | None = None
) -> HubContext:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    profile = read_profile(config.profile)
    slots = ModelSlots(config.models, load_public_key(config.public_key))
    fresh = slots.current_slot is None and bool(services)  # waits for a model over BLE
    bundle = None if fresh else slots.active()
    store = HubStore(config.database, max_bytes=config.max_database_bytes)
    try:
        ctx = HubContext(config, store, slots, profile)
        if bundle is not None:
            ctx.start_pipeline(bundle)
        queue: asyncio.Queue[SensorItem | None] = asyncio.Queue(QUEUE_CHUNKS)
        others = [asyncio.create_task(_housekeeping(ctx, stop))]
        others += [asyncio.create_task(service(ctx, stop)) for service in services]
        readers: list[asyncio.Task[None]] = []
        pipeline = await _first_model(ctx, stop)
        if pipeline is not None:
            log.info(
                "hub running: model %s, sensors head=%s trunk=%s, database %s",
                pipeline.bundle_version,
                config.head,
                config.trunk,
                config.database,
            )
            readers = [
                asyncio.create_task(_read_sensor(role, spec, config, queue, stop))
                for role, spec in _sensor_specs(config)
            ]
            await _process(pipeline, queue, len(readers), stop, keep_serving=bool(services))
        stop.set()
        await asyncio.wait(others, timeout=SERVICE_STOP_S)  # services wind down on their own
        for task in readers + others:
            task.cancel()
        await asyncio.gather(*readers, *others, return_exceptions=True)
        pipeline = ctx.pipeline  # a model may have arrived while stopping
        if pipeline is not None:
            while not queue.empty():  # samples read before the stop are still processed
                item = queue.get_nowait()
                if item is not None:
                    pipeline.push(*item)
            pipeline.close()
            pipeline.event("hub_stopped")
        log.info(
            "hub stopped cleanly: %d session(s) closed, last record %d",
            0 if pipeline is None else pipeline.sessions_closed,
            store.last_seq,
        )
        return ctx
    finally:
        store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
