"""A page's plots rendered side by side: one share in the request's own process, the others in
worker processes.

matplotlib is pure Python under the GIL, so threads would not overlap; rendering is most of a
page's time (the patient page's three plots ~220 ms of ~330 with two years of data). The jobs are
dealt round-robin, in the order given (heaviest first), into one batch per process; a batch goes
to its worker as one pickle, so the data its plots share (the patient's history) crosses once.

Workers come from a ``forkserver`` that has imported the plotting modules, so a new worker starts
in milliseconds rather than re-importing matplotlib; they are shared by every app in the process
and live as long as it does (a worker whose server was killed outright exits within a second).
A worker that dies (killed, out of memory) costs nothing but time:
its batch is rendered here and the pool is started afresh on the next page. The in-process path
is the reference: both give the same SVG, byte for byte (tested).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger(__name__)

PlotJob = tuple[Callable[..., str], tuple[Any, ...]]
# beside the request's own process; 0 renders everything in it (a one-core computer)
DEFAULT_PLOT_PROCESSES = max(0, min(3, (os.cpu_count() or 1) - 1))
_PRELOAD = ["ble_gateway.web.plots", "ble_gateway.web.plots_daily"]


class PlotWorkers:
    """``processes`` worker processes beside the caller's (module docstring)."""

    def __init__(self, processes: int = DEFAULT_PLOT_PROCESSES) -> None:
        if processes < 0:
            raise ValueError(f"plot processes must be 0 or more, not {processes}")
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def render(self, jobs: Mapping[str, PlotJob]) -> dict[str, str]:
        """Each job's SVG, by name; an exception from a plot is raised here as it would be
        in-process."""
        names = list(jobs)
        pool = self._started() if len(names) > 1 else None
        shares = 1 + (self.processes if pool else 0)
        batches = [names[i::shares] for i in range(shares)]
        sent: list[tuple[list[str], Future[list[str]]]] = []
        here = list(batches[0])
        for batch in batches[1:]:
            future = self._submit(pool, [jobs[n] for n in batch]) if batch else None
            if future is None:
                here += batch
            else:
                sent.append((batch, future))
        out = dict(zip(here, _render_batch([jobs[n] for n in here]), strict=True))
        for batch, sent_future in sent:
            try:
                svgs = sent_future.result()
            except BrokenProcessPool:
                log.warning("a plot worker died; rendering its plots here and restarting them")
                self._discard(pool)
                svgs = _render_batch([jobs[n] for n in batch])
            out.update(zip(batch, svgs, strict=True))
        return {n: out[n] for n in names}

    def warm_up(self) -> None:
        """Start the workers and load matplotlib's fonts in each (a server does this at start, so
        its first page does not pay for it)."""
        pool = self._started()
        if pool is not None:
            for future in [pool.submit(_warm) for _ in range(self.processes)]:
                future.result()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _started(self) -> ProcessPoolExecutor | None:
        if self.processes == 0:
            return None
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=_context(),
                    initializer=_watch_parent,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def _submit(
        self, pool: ProcessPoolExecutor | None, batch: list[PlotJob]
    ) -> Future[list[str]] | None:
        """The batch sent to a worker, or None where there is none to take it (it is then
        rendered here)."""
        if pool is None:
            return None
        try:
            return pool.submit(_render_batch, batch)
        except BrokenProcessPool:  # a worker died since the last page
            log.warning("a plot worker had died; rendering here and restarting them")
            self._discard(pool)
        except RuntimeError:  # shut down meanwhile (the interpreter is exiting)
            pass
        return None

    def _discard(self, pool: ProcessPoolExecutor | None) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")  # macOS, Windows


def _watch_parent(pid: int, every_s: float = 1.0) -> None:
    """In a worker: exit once the process that started the pool is gone. A server killed outright
    (SIGKILL, an unhandled SIGTERM) cannot shut its workers down, and a worker would otherwise
    wait on its call queue for ever (it holds that pipe's write end itself), keeping the
    forkserver alive with it."""

    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive (or its number reused by another user's process)
                pass

    threading.Thread(target=watch, name="plot-worker-parent-watch", daemon=True).start()


def _render_batch(batch: list[PlotJob]) -> list[str]:
    return [fn(*args) for fn, args in batch]


def _warm() -> None:
    from ble_gateway.web import plots

    plots.warm_up()


_SHARED: PlotWorkers | None = None
_SHARED_LOCK = threading.Lock()


def shared_workers() -> PlotWorkers:
    """The process's plot workers (created on first use; every app in the process shares
    them)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = PlotWorkers()
        return _SHARED
