"""``cervical bench sync``: record sync over the virtual BLE link (MTU 247), side by side on a
clean link and on one cut at random moments; payload efficiency; the bytes a day of summaries
needs; and fuzzing of every codec and writable characteristic.

The hub's GATT server and the gateway run their real bumble stacks in this process on one
virtual radio (no airtime model: the figures are host-stack cost, an upper bound for a real
radio, whose LE 1M PHY carries ~90 kB/s of ATT payload at best). ATT bytes are counted on the
L2CAP ATT channel, both directions, every PDU (notifications, indications, writes, responses,
MTU exchange, discovery). Efficiency = application bytes / ATT bytes, where application bytes are
the records as stored on the hub (timestamps, kind, session, payload JSON); above 1 means the
frames' compression saves more than the framing and ATT headers cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edge_runtime.common.text import report_error
from edge_runtime.contracts import gatt

console = Console()
EPOCHS_PER_DAY = 8 * 3600 // 10  # 8 h of wear, one 10 s epoch record each
SESSIONS_PER_DAY = 16  # sessions end after 30 min at most


def _typical_records(n: int, rng: random.Random, template_db: Path | None) -> list[dict[str, Any]]:
    """Record payloads like the hub's: from a hub database when given, else shaped like its
    epoch records (72 muscles' mean and peak forces, three neck angles' ranges, marks)."""
    if template_db is not None:
        from edge_runtime.hub.storage import HubStore

        with HubStore(template_db) as store:
            rows = store.sync_records_after(0, 10**6)
        if rows:
            return [json.loads(rows[i % len(rows)].payload_json) for i in range(n)]
    from ble_gateway.web.synthetic import epoch_payload

    return [epoch_payload(rng, 10.0 * i).to_dict() for i in range(n)]


class _AttCounter:
    """Counts the bytes of every ATT PDU a bumble device sends (L2CAP channel 0x0004)."""

    def __init__(self) -> None:
        self.bytes = 0

    def wrap(self, device: Any) -> None:
        send = device.send_l2cap_pdu

        def counted(handle: int, cid: int, pdu: bytes) -> None:
            if cid == 0x0004:
                self.bytes += len(pdu)
            send(handle, cid, pdu)

        device.send_l2cap_pdu = counted


async def _bench_hub(tmp: Path, store: Any, seed: int) -> tuple[Any, Any, Any]:
    """The hub's GATT server over ``store`` on a fresh virtual radio, advertising (no model:
    installs are refused); returns (radio, identity, device)."""
    from bumble.transport.common import AsyncPipeSink

    from edge_runtime.ble.identity import BleIdentity
    from edge_runtime.ble.radio import VirtualRadio
    from edge_runtime.ble.server import CervicalGattServer, WithoutGuidedTests
    from edge_runtime.ble.service import hub_device
    from edge_runtime.contracts.anthropometrics import Anthropometrics

    radio = VirtualRadio(seed)
    identity = BleIdentity.load_or_create(tmp / "ble")
    controller = radio.controller()
    device = hub_device(identity, tmp / "ble", controller, AsyncPipeSink(controller), "hub")

    class Hub(WithoutGuidedTests):
        def __init__(self) -> None:
            self.store = store

        def model_version(self) -> str:
            return "bench"

        def profile(self) -> Anthropometrics:
            return Anthropometrics("female", 1.64, 61.0, 0.105, 0.36, 4.1)

        async def set_profile(self, profile: Anthropometrics) -> None:
            return None

        async def install_model(self, bundle: Path) -> str:
            raise RuntimeError("not in the benchmark")

    CervicalGattServer(device, Hub(), identity, tmp / "ble", "bench")
    await device.power_on()
    await device.start_advertising(
        auto_restart=True, advertising_interval_min=20.0, advertising_interval_max=20.0
    )
    return radio, identity, device


async def _sync_once(
    n_records: int, cut_every_s: float, template_db: Path | None, seed: int
) -> dict[str, float]:

    from ble_gateway.hub_client import RetryPolicy, sync_hub
    from ble_gateway.radio import bumble_radio
    from ble_gateway.store import ClinicStore
    from edge_runtime.hub.storage import HubStore, NewRecord

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = HubStore(tmp / "hub.db")
        payloads = _typical_records(n_records, rng, template_db)
        store.append_many([NewRecord("epoch", p, "s1") for p in payloads])
        app_bytes = sum(
            len(r.payload_json) + len(r.t_utc) + len(r.kind) + len(r.session_id or "")
            for r in store.sync_records_after(0, n_records + 1)
        )
        radio, identity, device = await _bench_hub(tmp, store, seed)
        counter = _AttCounter()
        counter.wrap(device)
        gateway = bumble_radio(radio.controller(), tmp / "gw", lambda: identity.passkey)
        adapter = gateway.backend_kwargs["bumble"]
        counter.wrap(await adapter.device())
        clinic = ClinicStore(tmp / "clinic.db")

        async def chaos() -> None:
            while cut_every_s > 0:
                await asyncio.sleep(rng.expovariate(1 / cut_every_s))
                if any(True for _ in radio.links()):
                    radio.cut()

        cutter = asyncio.ensure_future(chaos())
        t0 = time.perf_counter()
        policy = RetryPolicy(max_attempts=100)
        result = await sync_hub(gateway, str(identity.address), clinic, policy=policy)
        elapsed = time.perf_counter() - t0
        cutter.cancel()
        exact = clinic.records(result.device_id) == store.sync_records_after(0, n_records + 1)
        frame_bytes = sum(
            len(bytes(gatt.RecordFrame(r, 0))) for r in store.sync_records_after(0, n_records + 1)
        )
        await adapter.close()
        clinic.close()
        store.close()
        return {
            "records": n_records,
            "seconds": elapsed,
            "records_per_s": n_records / elapsed,
            "cuts": sum(radio.cuts.values()),
            "connections": result.attempts,
            "app_bytes": app_bytes,
            "frame_bytes": frame_bytes,
            "att_bytes": counter.bytes,
            "efficiency": app_bytes / counter.bytes,
            "att_bytes_per_record": counter.bytes / n_records,
            "lossless": float(exact and result.hub_unsynced == 0),
        }


def _fuzz_codecs(cases: int) -> dict[str, int]:
    """``cases`` hypothesis examples per decoder: anything but a ProtocolError is a crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    decoders: dict[str, Callable[[bytes], object]] = {
        "RacpRequest": gatt.RacpRequest.from_bytes,
        "RacpResponse": gatt.RacpResponse.from_bytes,
        "ProfilePayload": gatt.ProfilePayload.from_bytes,
        "ModelRequest": gatt.ModelRequest.from_bytes,
        "ModelResponse": gatt.ModelResponse.from_bytes,
        "ModelChunk": gatt.ModelChunk.from_bytes,
        "StatusPayload": gatt.StatusPayload.from_bytes,
        "RecordFrame": gatt.RecordFrame.decode_body,
    }
    crashes: dict[str, int] = {}

    def fuzz(name: str, decode: Callable[[bytes], object]) -> None:
        crashes[name] = 0

        @settings(
            max_examples=cases,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.binary(max_size=300))
        def run(data: bytes) -> None:
            try:
                decode(data)
            except gatt.ProtocolError:
                pass
            except Exception:
                crashes[name] += 1

        run()

    for name, decode in decoders.items():
        fuzz(name, decode)
    return crashes


async def _fuzz_server(cases: int, seed: int) -> dict[str, int]:
    """``cases`` random writes per writable characteristic over a bonded link: each answered
    (accepted or an ATT error), and the server still answers afterwards."""
    from bleak.exc import BleakGATTProtocolError

    from ble_gateway.radio import bumble_radio
    from edge_runtime.hub.storage import HubStore

    rng = random.Random(seed)
    answered: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = HubStore(tmp / "hub.db")
        radio, identity, _ = await _bench_hub(tmp, store, seed)
        gateway = bumble_radio(radio.controller(), tmp / "gw", lambda: identity.passkey)
        async with gateway.client(str(identity.address), timeout=10.0, pair=True) as client:
            for uuid, name in (
                (gatt.RECORD_CONTROL, "record control"),
                (gatt.MODEL_CONTROL, "model control"),
                (gatt.MODEL_DATA, "model data"),
                (gatt.PROFILE, "profile"),
            ):
                answered[name] = 0
                for _ in range(cases):
                    data = rng.randbytes(rng.choice((0, 1, 4, 13, 22, 37, rng.randint(0, 240))))
                    with contextlib.suppress(BleakGATTProtocolError):
                        await client.write_gatt_char(uuid, data, response=True)
                    answered[name] += 1
            gatt.StatusPayload.from_bytes(bytes(await client.read_gatt_char(gatt.STATUS)))
        await gateway.backend_kwargs["bumble"].close()
        store.close()
    return answered


def bench_sync(
    records: Annotated[int, typer.Option(help="Records to sync in each run.")] = 5000,
    runs: Annotated[
        int,
        typer.Option(
            help="Instead: this many syncs of a hub daemon through link cuts and hub restarts."
        ),
    ] = 0,
    hub_restarts: Annotated[
        int, typer.Option(help="Hub power cuts (SIGKILL, restart) in each of those runs.")
    ] = 2,
    cut_every_s: Annotated[float, typer.Option(help="Mean time between cuts (cut run).")] = 0.5,
    fuzz_cases: Annotated[
        int, typer.Option(help="Fuzz cases per codec and characteristic.")
    ] = 10000,
    hub_db: Annotated[
        Path | None, typer.Option(help="Take record payloads from this hub database.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the records and the cuts.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Sync throughput (clean link vs. a link cut at random), efficiency, a day's bytes, fuzz;
    with --runs, syncs through link cuts and hub restarts instead."""
    import logging

    logging.getLogger("bumble").setLevel(logging.CRITICAL)
    logging.getLogger("ble_gateway.derived").setLevel(logging.ERROR)  # bench records: no forces
    if runs > 0:
        _bench_restarts(runs, hub_restarts, records, seed, as_json)
        return
    logging.getLogger("ble_gateway").setLevel(logging.WARNING)
    logging.getLogger("edge_runtime.ble").setLevel(logging.ERROR)  # fuzzing: one line per refusal
    with console.status("syncing over a clean link"):
        clean = asyncio.run(_sync_once(records, 0.0, hub_db, seed))
    with console.status(f"syncing over a link cut every {cut_every_s} s on average"):
        cut = asyncio.run(_sync_once(records, cut_every_s, hub_db, seed))
    with console.status(f"fuzzing the codecs ({fuzz_cases} cases each)"):
        codec_crashes = _fuzz_codecs(fuzz_cases)
    with console.status(f"fuzzing the server ({fuzz_cases} writes per characteristic)"):
        server = asyncio.run(_fuzz_server(fuzz_cases, seed))
    day_records = EPOCHS_PER_DAY + SESSIONS_PER_DAY
    day_bytes = round(day_records * clean["att_bytes_per_record"])
    figures: dict[str, Any] = {
        "clean": clean,
        "cut": cut,
        "cut_vs_clean_throughput": cut["records_per_s"] / clean["records_per_s"],
        "day_att_bytes": round((EPOCHS_PER_DAY + SESSIONS_PER_DAY) * clean["att_bytes_per_record"]),
        "day_records": day_records,
        "fuzz_codec_cases": fuzz_cases,
        "fuzz_codec_crashes": codec_crashes,
        "fuzz_server_writes_answered": server,
    }
    if as_json:
        print(json.dumps(figures))
        return
    table = Table(title=f"BLE record sync, virtual link, MTU 247, {records} records")
    for col in ("link", "records/s", "cuts", "connections", "ATT B/record", "efficiency", "exact"):
        table.add_column(col, justify="right")
    for name, f in (("clean", clean), (f"cut ~every {cut_every_s} s", cut)):
        table.add_row(
            name,
            f"{f['records_per_s']:.0f}",
            f"{f['cuts']:.0f}",
            f"{f['connections']:.0f}",
            f"{f['att_bytes_per_record']:.0f}",
            f"{f['efficiency']:.2f}",
            "yes" if f["lossless"] else "NO",
        )
    console.print(table)
    console.print(
        f"cut link / clean link throughput: {figures['cut_vs_clean_throughput']:.2f}\n"
        f"application bytes {clean['app_bytes']:.0f}, as frames {clean['frame_bytes']:.0f} "
        f"(zlib), on ATT {clean['att_bytes']:.0f}\n"
        f"a typical day ({day_records} summaries: 8 h of 10 s epochs + {SESSIONS_PER_DAY} "
        f"sessions): {day_bytes / 1e6:.2f} MB of ATT traffic\n"
        f"codec fuzz, {fuzz_cases} cases each: crashes {sum(codec_crashes.values())}; "
        f"server fuzz: {sum(server.values())} writes, every one answered, server up",
        markup=False,
    )


def _bench_restarts(runs: int, restarts: int, records: int, seed: int, as_json: bool) -> None:
    from ble_gateway.bench_restarts import run_restart_soak

    if restarts < 0 or records < 1:
        raise typer.BadParameter("--hub-restarts must be >= 0 and --records >= 1")
    err = Console(stderr=True)
    with err.status("syncing through hub restarts") as status:
        figures = run_restart_soak(runs, restarts, records, seed, status.update)
    if as_json:
        print(json.dumps(figures))
        return
    table = Table(title=f"sync through link cuts and hub power cuts, {records} records per run")
    for col in ("runs", "lossless", "gave up", "hub restarts", "link cuts", "connections"):
        table.add_column(col, justify="right")
    table.add_row(
        *(str(figures[k]) for k in ("runs", "runs_lossless", "gave_up", "hub_restarts", "cuts")),
        str(figures["connections"]),
    )
    console.print(table)
    for error in figures["errors"]:
        report_error(error, prefix="gave up")
    if figures["runs_lossless"] < runs:
        raise typer.Exit(1)
