"""``cervical gateway ...``: sync hubs into the clinic store, push models, set profiles, run
guided tests, and serve the clinician web view."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ble_gateway.errors import USER_ERRORS
from ble_gateway.guided_test import Guidance, abort_guided_test, run_guided_test
from ble_gateway.hub_client import (
    push_model,
    read_status,
    set_profile,
)
from ble_gateway.hub_client import sync_hub as sync_hub_records
from ble_gateway.radio import DEFAULT_STATE_DIR, GatewayRadio, parse_radio
from ble_gateway.store import ClinicStore
from ble_gateway.web import cli as web_cli
from edge_runtime.common.text import report_error
from edge_runtime.contracts import gatt
from edge_runtime.contracts.anthropometrics import read_profile
from edge_runtime.contracts.errors import ContractError

gateway_app = typer.Typer(
    help="The gateway: sync hubs over BLE, push models, set profiles.", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
PASSKEY_ENV = "CERVICAL_HUB_PASSKEY"

RadioOpt = Annotated[
    str,
    typer.Option(
        help="'system' (this computer's Bluetooth) or 'bumble:TRANSPORT' "
        "(e.g. bumble:tcp-client:127.0.0.1:9102 for the virtual radio)."
    ),
]
StateOpt = Annotated[Path, typer.Option(help="The gateway's BLE identity and bonds.")]
PasskeyOpt = Annotated[
    str | None,
    typer.Option(
        help=f"The hub's six-digit passkey (from its label; or ${PASSKEY_ENV}). "
        "Asked for when pairing and not given. With 'system', the OS asks instead."
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option(help="The hub's address (default: the first found).")
]


def _radio(spec: str, state_dir: Path, passkey: str | None) -> GatewayRadio:
    def ask() -> int | None:
        text = (
            passkey or os.environ.get(PASSKEY_ENV) or typer.prompt("hub passkey", hide_input=True)
        )
        if not (text.isdigit() and len(text) == 6):
            err.print("error: the passkey is six digits", style="bold red")
            return None
        return int(text)

    try:
        return parse_radio(spec, state_dir, ask)
    except ValueError as exc:
        raise _fail(exc) from exc


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    report_error(exc)
    return typer.Exit(code)


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    logging.getLogger("bumble").setLevel(logging.ERROR)
    try:
        return asyncio.run(make())
    except USER_ERRORS as exc:
        raise _fail(exc) from exc


async def _address(radio: GatewayRadio, device: str | None, timeout_s: float = 15.0) -> str:
    if device:
        return device
    found = await radio.find(gatt.CERVICAL_SERVICE, None, timeout_s)
    out.print(f"found hub {found.address} ({found.name or 'unnamed'})", markup=False)
    return str(found.address)


def _progress(label: str) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@gateway_app.command("sync")
def sync(
    store: Annotated[
        Path, typer.Option(help="Clinic store: SQLite file or SQLAlchemy URL.")
    ] = Path("clinic.db"),
    device: DeviceOpt = None,
    radio: RadioOpt = "system",
    state_dir: StateOpt = DEFAULT_STATE_DIR,
    passkey: PasskeyOpt = None,
) -> None:
    """Copy every record the clinic store lacks from the hub, acknowledging each batch only
    after the store committed it; resumes after dropped links."""
    gateway = _radio(radio, state_dir, passkey)

    async def main() -> Any:
        clinic = ClinicStore(store)
        try:
            address = await _address(gateway, device)
            with _progress("records") as bar:
                task = bar.add_task("sync", total=None)
                return await sync_hub_records(
                    gateway,
                    address,
                    clinic,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        finally:
            clinic.close()

    result = _run(main)
    out.print(
        f"{result.address}: {result.new_records} new record(s), up to seq {result.last_seq}; "
        f"hub reports {result.hub_unsynced} unsynced ({result.attempts} connection(s))",
        markup=False,
    )


@gateway_app.command("push-model")
def push(
    bundle: Annotated[Path, typer.Argument(help="Signed bundle directory.")],
    device: Annotated[str, typer.Option(help="The hub's address.")],
    radio: RadioOpt = "system",
    state_dir: StateOpt = DEFAULT_STATE_DIR,
    passkey: PasskeyOpt = None,
) -> None:
    """Send a model bundle; the hub verifies signature, hashes and golden vectors and installs
    it (or refuses it and keeps its model)."""
    gateway = _radio(radio, state_dir, passkey)

    async def main() -> str:
        with _progress("model") as bar:
            task = bar.add_task("push", total=None)
            return await push_model(
                gateway,
                device,
                bundle,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

    version = _run(main)
    out.print(f"{device}: installed model version {version}", markup=False)


@gateway_app.command("set-profile")
def set_profile_cmd(
    profile: Annotated[Path, typer.Option(help="The wearer's anthropometrics (TOML).")],
    device: Annotated[str, typer.Option(help="The hub's address.")],
    radio: RadioOpt = "system",
    state_dir: StateOpt = DEFAULT_STATE_DIR,
    passkey: PasskeyOpt = None,
) -> None:
    """Write the wearer's profile to the hub (its envelope and model inputs follow it)."""
    gateway = _radio(radio, state_dir, passkey)
    try:
        wearer = read_profile(profile)
    except ContractError as exc:
        raise _fail(exc) from exc
    held = _run(lambda: set_profile(gateway, device, wearer))
    out.print(f"{device}: profile set: {held.to_dict()}", markup=False)


@gateway_app.command("status")
def status(
    device: DeviceOpt = None,
    radio: RadioOpt = "system",
    state_dir: StateOpt = DEFAULT_STATE_DIR,
    passkey: PasskeyOpt = None,
) -> None:
    """The hub's model, record counts, storage and last sync."""
    gateway = _radio(radio, state_dir, passkey)

    async def main() -> Any:
        address = await _address(gateway, device)
        return address, *(await read_status(gateway, address))

    address, st, profile = _run(main)
    out.print(
        f"{address}: model {st.model_version or 'none installed'}; records: last {st.last_seq}, "
        f"synced up to {st.acked_seq}, {st.unsynced} unsynced, {st.stored} stored; database "
        f"{st.database_bytes / 1e6:.1f} MB, {st.free_bytes / 1e9:.1f} GB free; last sync "
        f"{'never' if not st.last_sync_unix_s else st.last_sync_unix_s}; profile "
        f"{profile.to_dict()}",
        markup=False,
    )


@gateway_app.command("test")
def guided_test(
    device: DeviceOpt = None,
    radio: RadioOpt = "system",
    state_dir: StateOpt = DEFAULT_STATE_DIR,
    passkey: PasskeyOpt = None,
    abort: Annotated[
        bool, typer.Option("--abort", help="Stop the test the hub is running instead.")
    ] = False,
) -> None:
    """Run a guided range-of-motion test: the hub follows the wearer, this terminal says each
    step. Exit 0: complete; 1: incomplete or abandoned (what is missing is printed); 2: refused
    or the link lost."""
    gateway = _radio(radio, state_dir, passkey)

    def say(g: Guidance) -> None:
        style = {"prompt": "bold", "done": "green", "missed": "yellow"}.get(g.kind, "")
        out.print(g.text if g.kind != "prompt" else f"> {g.text}", style=style, markup=False)

    async def main() -> Any:
        address = await _address(gateway, device)
        if abort:
            return await abort_guided_test(gateway, address)
        return await run_guided_test(gateway, address, say)

    result = _run(main)
    if abort:
        out.print("the test was stopped" if result else "no test was running", markup=False)
    elif result.outcome != "complete":
        raise typer.Exit(1)


# The clinician web view and its accounts (ble_gateway.web.cli imports the web stack lazily).
gateway_app.command("serve")(web_cli.serve)
gateway_app.command("add-user")(web_cli.add_user)
gateway_app.command("remove-user")(web_cli.remove_user)
gateway_app.command("assign")(web_cli.assign)
gateway_app.command("audit")(web_cli.audit)
