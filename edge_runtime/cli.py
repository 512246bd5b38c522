"""``cervical keys ...`` and ``cervical bundle ...``: signing keys and bundle verification."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge_runtime.contracts.bundle import (
    BundleError,
    generate_key_pair,
    load_public_key,
    public_key_fingerprint,
    verify_bundle,
)

keys_app = typer.Typer(help="Ed25519 signing keys for model bundles.", no_args_is_help=True)
bundle_app = typer.Typer(help="Signed model bundles: check before install.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


@keys_app.command("generate")
def keys_generate(
    key_path: Annotated[
        Path, typer.Option("--out", help="Private key to write (mode 0600); .pub beside it.")
    ],
) -> None:
    """Write a new signing key pair. Keep the private key off the repository and the hubs."""
    try:
        public = generate_key_pair(key_path)
        fingerprint = public_key_fingerprint(load_public_key(public))
    except BundleError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    out.print(f"wrote {key_path} (private, 0600) and {public} (fingerprint {fingerprint})")


@bundle_app.command("verify")
def bundle_verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    pubkey: Annotated[Path, typer.Option(help="Trusted public key (PEM).")],
) -> None:
    """Check signature, file sizes and SHA-256 of a bundle; exit 2 naming what is wrong."""
    try:
        manifest = verify_bundle(bundle, load_public_key(pubkey))
    except BundleError as exc:
        err.print(f"[bold red]rejected:[/] {exc}")
        raise typer.Exit(2) from exc
    out.print(f"verified {bundle}: version {manifest['bundle_version']}, created "
              f"{manifest['created_utc']}, key {manifest['signing_key_fingerprint']}, "
              f"{len(manifest['files'])} file(s)")  # fmt: skip
