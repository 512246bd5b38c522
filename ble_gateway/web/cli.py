"""``cervical gateway serve | add-user | remove-user | assign | audit``: the clinician web view and
its accounts. The web stack is imported inside each command, so ``cervical`` starts fast."""

from __future__ import annotations

import gc
import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_runtime.common.text import printable, report_error

if TYPE_CHECKING:  # the web stack is imported inside the commands
    from ble_gateway.web.accounts import Accounts

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
DbOpt = Annotated[str, typer.Option("--db", help="Clinic store: SQLite file or SQLAlchemy URL.")]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    db: DbOpt = "clinic.db",
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    trusted_proxy: Annotated[
        str | None,
        typer.Option(
            help="Address of a reverse proxy whose X-Forwarded-For is believed (default: "
            "none; the throttle and audit log use the connecting address)."
        ),
    ] = None,
) -> None:
    """Serve the clinician web view. Beyond this computer (a non-loopback --host) only over
    HTTPS: patient data never crosses a network in clear text."""
    if (tls_cert is None) != (tls_key is None):
        err.print("--tls-cert and --tls-key go together", markup=False)
        raise typer.Exit(2)
    if not _is_loopback(host) and tls_cert is None:
        err.print(
            f"--host {host}: serving beyond this computer needs HTTPS; pass --tls-cert and "
            "--tls-key (or keep the default 127.0.0.1 behind a TLS reverse proxy)",
            markup=False,
        )
        raise typer.Exit(2)
    import uvicorn

    from ble_gateway.store import ClinicStore
    from ble_gateway.web.accounts import Accounts
    from ble_gateway.web.app import create_app

    store = ClinicStore(db)
    if not Accounts(store.engine).usernames():
        err.print(
            "warning: no clinician accounts yet; add one with `cervical gateway add-user NAME`",
            markup=False,
        )
    app = create_app(store, secure_cookies=tls_cert is not None)
    app.state.web.plot_workers.warm_up()  # the first page should not start them
    # everything loaded so far lives as long as the server: keep it out of the collector's
    # full passes, which otherwise walk it during every plot-heavy page (~25% of its time)
    gc.collect()
    gc.freeze()
    scheme = "https" if tls_cert else "http"
    out.print(f"clinician view on {scheme}://{host}:{port}/ (Ctrl-C stops)", markup=False)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        # uvicorn believes X-Forwarded-For from loopback by default: any local client could
        # then name its own address and escape the per-client sign-in limit
        proxy_headers=trusted_proxy is not None,
        forwarded_allow_ips=trusted_proxy or "",
    )
    store.close()


def _change_accounts(
    db: str, action: str, username: str, change: Callable[[Accounts], None]
) -> None:
    """Apply one account change and audit it; a refused change exits with status 2."""
    from ble_gateway.errors import GatewayError
    from ble_gateway.store import ClinicStore
    from ble_gateway.web.accounts import Accounts

    try:
        store = ClinicStore(db)
    except GatewayError as exc:
        report_error(exc)
        raise typer.Exit(2) from None
    try:
        accounts = Accounts(store.engine)
        change(accounts)
        accounts.audit("cli", "local", action, f"user {username}")
    except GatewayError as exc:
        report_error(exc)
        raise typer.Exit(2) from None
    finally:
        store.close()


def add_user(
    username: Annotated[str, typer.Argument(help="Lower-case user name.")],
    db: DbOpt = "clinic.db",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input (for scripts).")
    ] = False,
) -> None:
    """Create a clinician account (the password is asked for twice, at least 12 characters)."""
    if password_stdin:
        try:  # a line as a script pipes it, CRLF included
            password = sys.stdin.readline().rstrip("\r\n")
        except UnicodeDecodeError:
            report_error("the password on standard input is not UTF-8 text")
            raise typer.Exit(2) from None
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    _change_accounts(db, "add_user", username, lambda a: a.add_user(username, password))
    out.print(f"user {username} added", markup=False)


def remove_user(
    username: Annotated[str, typer.Argument(help="User name.")], db: DbOpt = "clinic.db"
) -> None:
    """Delete a clinician account and end its sessions (its audit entries stay)."""
    _change_accounts(db, "remove_user", username, lambda a: a.remove_user(username))
    out.print(f"user {username} removed", markup=False)


def assign(
    address: Annotated[str, typer.Argument(help="The hub's BLE address (as synced).")],
    patient: Annotated[str, typer.Option(help="The clinic's pseudonymous patient code.")],
    db: DbOpt = "clinic.db",
    reassign: Annotated[
        bool,
        typer.Option(help="Move a hub that belongs to another patient (with its whole history)."),
    ] = False,
) -> None:
    """Link a synced hub (all its record stores) to a patient code; the web view can do this too
    for hubs no patient has yet. Audited."""
    from sqlalchemy import select

    from ble_gateway.store import ClinicStore, ClinicStoreError, devices

    store = ClinicStore(db)
    try:
        with store.engine.connect() as conn:
            ids = list(
                conn.execute(select(devices.c.id).where(devices.c.address == address)).scalars()
            )
        if not ids:
            raise ClinicStoreError(f"hub {address}: never synced into this clinic store")
        from ble_gateway.web.accounts import Accounts

        for device_id in ids:
            previous = store.assign_device(device_id, patient, reassign)
            before = {None: "unassigned before", patient: "already this patient's"}
            detail = f"device {device_id}, " + before.get(
                previous, f"moved from patient {previous}"
            )
            Accounts(store.engine).audit("cli", "local", "assign", detail, patient)
    except ClinicStoreError as exc:
        report_error(exc)
        raise typer.Exit(2) from None
    finally:
        store.close()
    out.print(f"hub {address} -> patient {patient}", markup=False)


def audit(
    db: DbOpt = "clinic.db",
    limit: Annotated[int, typer.Option(help="The latest N entries.")] = 50,
) -> None:
    """Who viewed or exported what, signed in or failed to (newest first)."""
    from ble_gateway.store import ClinicStore
    from ble_gateway.web.accounts import Accounts

    store = ClinicStore(db)
    entries = Accounts(store.engine).audit_entries(limit)
    store.close()
    table = Table("time (UTC)", "user", "client", "action", "patient", "detail")
    for e in entries:  # stored values are data: never markup, control characters escaped
        table.add_row(
            *(
                Text(printable(str(e[k] or "")))
                for k in ("t_utc", "username", "client", "action", "patient_code", "detail")
            )
        )
    out.print(table)
