"""``cervical bench sync --runs R --hub-restarts K``: record sync through random link cuts and K
power cuts of the hub, R times, each run checked for every record arriving once, bit-identical.

Each run is a real hub daemon (``cervical edge run``, its own OS process, no model: it serves BLE
and measures nothing) on a fresh virtual radio, with a store prefilled with epoch-shaped records,
and the gateway in this process syncing it. While the sync runs, each connection is cut after
1-160 PDUs (terminated by either side or lost silently), and K times the hub is killed (SIGKILL: a
power cut) and started again after a boot delay of up to 1.5x the gateway's connect timeout, so
some reconnects find no hub advertising and must give up cleanly (the cuts fall at random points
of the sync; any the sync outran follow it, each with a sync again). A run *gave up* when the
gateway stopped retrying; it is *lossless* when the clinic store then holds exactly the hub's
records.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.contracts.anthropometrics import Anthropometrics, write_profile
from edge_runtime.contracts.bundle import generate_key_pair

if TYPE_CHECKING:
    from edge_runtime.ble.radio import VirtualRadio

CONNECT_TIMEOUT_S = 2.0
# each connection is cut after this many L2CAP PDUs, by traffic, not by time (see
# VirtualRadio.after_packets). Measured on the virtual radio: a reconnection's set-up (encryption,
# MTU, service discovery, subscriptions, status, count, report request) is about 50 PDUs and a
# record batch about 120, so a third of the connections are cut during set-up and the rest carry
# a part of a batch (20,000 records take about 270 connections). Pairing (about 140 PDUs, with
# its passkey rounds) is done before the faults start: it is part of setting a hub up, at hand.
CONNECTION_LIFE_PACKETS = (1, 160)
HUB_STARTS_WITHIN_S = 60.0
FACTORY_PROFILE = Anthropometrics("female", 1.63, 62.0, 0.100, 0.36, 4.0)


class HubProcess:
    """``cervical edge run --config CONFIG`` as a child process; its log goes to a file (a pipe
    nobody reads fills up and freezes the hub mid-write)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        cervical = str(Path(sys.executable).with_name("cervical"))
        with open(self.log, "ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [cervical, "edge", "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.starts += 1

    def kill(self) -> None:
        """A power cut: SIGKILL, nothing flushed or closed."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def fresh_hub_config(hub_dir: Path, transport: str) -> Path:
    """A hub with no model yet (it serves BLE and waits for one), on ``transport``."""
    hub_dir.mkdir(parents=True, exist_ok=True)
    pub = generate_key_pair(hub_dir / "signing.key")
    write_profile(FACTORY_PROFILE, hub_dir / "profile.toml")
    config = hub_dir / "hub.toml"
    config.write_text(
        f'[hub]\ndatabase = "hub.db"\nmodels = "models"\npublic_key = "{pub}"\n'
        'profile = "profile.toml"\n'
        '[sensors]\nhead = "sim:seed=1"\ntrunk = "sim:seed=1"\n'
        f'[ble]\ntransport = "{transport}"\nstate_dir = "ble"\nadvertising_interval_ms = 20.0\n'
    )
    return config


def prefill(db: Path, n: int, seed: int) -> None:
    """``n`` epoch-shaped records of random size (1-60 numbers) in a hub store."""
    from edge_runtime.hub.storage import HubStore, NewRecord

    rng = random.Random(seed)
    with HubStore(db) as store:
        for start in range(0, n, 1000):
            batch = range(start, min(n, start + 1000))
            store.append_many(
                [
                    NewRecord("epoch", {"i": i, "angles": [rng.random()] * rng.randint(1, 60)}, "s")
                    for i in batch
                ]
            )


async def wait_for_identity(hub_dir: Path, hub: HubProcess) -> dict[str, Any]:
    identity = hub_dir / "ble" / "identity.json"
    deadline = time.monotonic() + HUB_STARTS_WITHIN_S
    while not identity.exists():
        if time.monotonic() > deadline or (hub.proc is not None and hub.proc.poll() is not None):
            raise RuntimeError(f"the hub did not come up:\n{hub.log_text()[-3000:]}")
        await asyncio.sleep(0.05)
    data: dict[str, Any] = json.loads(identity.read_text())
    return data


async def cut_by_traffic(
    radio: VirtualRadio, rng: random.Random, power_cut_due: Callable[[], bool],
    power_cut: Callable[[], Awaitable[None]],
) -> None:  # fmt: skip
    """Cut each connection after a random number of PDUs (``CONNECTION_LIFE_PACKETS``):
    terminated by either side or lost silently, or, when ``power_cut_due()``, a power cut of
    the hub. Runs until cancelled."""
    while True:
        await radio.after_packets(rng.randint(*CONNECTION_LIFE_PACKETS))
        if power_cut_due():
            await power_cut()
        elif any(True for _ in radio.links()):
            radio.cut()


@dataclass
class RunOutcome:
    lossless: bool
    gave_up: bool
    restarts: int
    cuts: int
    connections: int
    seconds: float
    error: str = ""


async def sync_through_restarts(
    tmp: Path, records: int, restarts: int, seed: int, progress: Callable[[str], None]
) -> RunOutcome:
    """One run (module docstring)."""
    from ble_gateway.hub_client import LinkLostError, RetryPolicy, read_status, sync_hub
    from ble_gateway.radio import bumble_radio
    from ble_gateway.store import ClinicStore
    from edge_runtime.ble.radio import VirtualRadio
    from edge_runtime.hub.storage import HubStore

    rng = random.Random(seed)
    radio = VirtualRadio(seed)
    port = await radio.serve(0)
    hub_dir = tmp / "hub"
    config = fresh_hub_config(hub_dir, f"tcp-client:127.0.0.1:{port}")
    prefill(hub_dir / "hub.db", records, seed)
    hub = HubProcess(config, tmp / "hub.log")
    hub.start()
    identity = await wait_for_identity(hub_dir, hub)
    gateway = bumble_radio(radio.controller(), tmp / "gw", lambda: int(identity["passkey"]))
    await read_status(
        gateway, identity["address"]
    )  # pairs, on a calm link (CONNECTION_LIFE_PACKETS)
    clinic = ClinicStore(tmp / "clinic.db")
    # the kills fall at random points spread over the sync (by records synced)
    kills_at = sorted(round(records * (k + rng.random()) / (restarts + 1)) for k in range(restarts))
    synced = [0]

    one_at_a_time = asyncio.Lock()  # the chaos task and the closing cuts never overlap

    async def power_cut() -> None:
        async with one_at_a_time:
            await asyncio.to_thread(hub.kill)  # the radio goes on answering meanwhile
            progress(f"hub killed ({hub.starts} start(s) so far)")
            await asyncio.sleep(rng.uniform(0.0, 1.5 * CONNECT_TIMEOUT_S))  # booting
            hub.start()

    def power_cut_due() -> bool:
        if kills_at and synced[0] >= kills_at[0]:
            kills_at.pop(0)
            return True
        return False

    policy = RetryPolicy(connect_timeout_s=CONNECT_TIMEOUT_S, response_timeout_s=10.0)
    cutter = asyncio.ensure_future(cut_by_traffic(radio, rng, power_cut_due, power_cut))
    started = time.perf_counter()
    gave_up, error, connections = False, "", 0
    try:
        result = await sync_hub(
            gateway, identity["address"], clinic, policy=policy,
            progress=lambda done, _total: synced.__setitem__(0, done),
        )  # fmt: skip
        connections, device_id = result.attempts, result.device_id
        while kills_at:  # the sync ran faster than the cuts: the rest of the power cuts now
            kills_at.pop(0)
            await power_cut()
            result = await sync_hub(gateway, identity["address"], clinic, policy=policy)
            connections += result.attempts
    except LinkLostError as exc:
        gave_up, error, device_id = True, str(exc), 1
    finally:
        cutter.cancel()
    seconds = time.perf_counter() - started
    await asyncio.to_thread(hub.stop)
    await gateway.backend_kwargs["bumble"].close()
    await radio.close()
    with HubStore(hub_dir / "hub.db") as store:
        expected = store.sync_records_after(0, records + 10_000)
    lossless = not gave_up and clinic.records(device_id) == expected
    clinic.close()
    return RunOutcome(
        lossless, gave_up, hub.starts - 1, sum(radio.cuts.values()), connections, seconds, error
    )


def run_restart_soak(
    runs: int, restarts: int, records: int, seed: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """``runs`` runs; the figures ``cervical bench sync --runs`` prints."""
    outcomes = []
    for r in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            progress(f"run {r + 1}/{runs}")
            outcome = asyncio.run(
                sync_through_restarts(Path(tmp), records, restarts, seed + r, progress)
            )
        outcomes.append(outcome)
        progress(
            f"run {r + 1}/{runs}: {'lossless' if outcome.lossless else 'NOT lossless'}, "
            f"{outcome.restarts} restart(s), {outcome.cuts} cuts, {outcome.seconds:.1f} s"
            + (f", gave up: {outcome.error}" if outcome.gave_up else "")
        )
    return {
        "runs": runs,
        "runs_lossless": sum(o.lossless for o in outcomes),
        "hub_restarts": sum(o.restarts for o in outcomes),
        "cuts": sum(o.cuts for o in outcomes),
        "gave_up": sum(o.gave_up for o in outcomes),
        "records_per_run": records,
        "connections": sum(o.connections for o in outcomes),
        "seconds_per_run_max": round(max((o.seconds for o in outcomes), default=0.0), 1),
        "errors": [o.error for o in outcomes if o.error],
    }
