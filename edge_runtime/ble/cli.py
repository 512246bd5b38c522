"""``cervical radio serve`` (the virtual radio) and ``cervical edge ble-identity``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge_runtime.ble.identity import BleIdentity
from edge_runtime.common.text import report_error
from edge_runtime.errors import USER_ERRORS

radio_app = typer.Typer(help="A virtual BLE radio for tests and the demo.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@radio_app.command("serve")
def serve(
    port: Annotated[
        list[int],
        typer.Option(help="TCP port a host attaches to (repeat: one per host; 0: any free one)."),
    ],
    cut_every_s: Annotated[
        float,
        typer.Option(help="Cut the link at random moments, this often on average (0: never)."),
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the random cuts.")] = 0,
) -> None:
    """Virtual controllers on one link: hosts attach with ``tcp-client:127.0.0.1:PORT``.
    Runs until interrupted."""
    from edge_runtime.ble.radio import VirtualRadio

    logging.getLogger("bumble").setLevel(logging.ERROR)

    async def main() -> None:
        radio = VirtualRadio(seed)
        ports = [await radio.serve(p) for p in port]  # 0: any free port, printed here
        out.print(
            f"virtual radio on tcp-client:127.0.0.1:{{{','.join(map(str, ports))}}}", markup=False
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        rng = random.Random(seed)
        while not stop.is_set():
            wait = rng.expovariate(1 / cut_every_s) if cut_every_s > 0 else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if not stop.is_set() and cut_every_s > 0 and any(True for _ in radio.links()):
                radio.cut()
        await radio.close()
        out.print(f"cuts: {radio.cuts}")

    asyncio.run(main())


def show_identity(state_dir: Path) -> None:
    try:
        identity = BleIdentity.load_or_create(state_dir)
    except USER_ERRORS as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    address = str(identity.address).removesuffix("/P")
    out.print(f"address: {address} (static random)\npasskey: {identity.passkey_text}")
    out.print(f"label text: CERVICAL-HUB;ADDR={address};PK={identity.passkey_text}", markup=False)
