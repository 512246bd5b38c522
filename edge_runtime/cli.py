"""``cervical keys ...`` and ``cervical bundle ...``: signing keys and bundle verification."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge_runtime.common.text import report_error
from edge_runtime.contracts.bundle import (
    generate_key_pair,
    load_public_key,
    public_key_fingerprint,
)
from edge_runtime.contracts.model_bundle import verify_model_bundle
from edge_runtime.errors import USER_ERRORS

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
    except USER_ERRORS as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    out.print(f"wrote {key_path} (private, 0600) and {public} (fingerprint {fingerprint})")


@bundle_app.command("verify")
def bundle_verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    pubkey: Annotated[Path, typer.Option(help="Trusted public key (PEM).")],
    golden: Annotated[
        bool, typer.Option(help="Run the model on its golden vectors (needs a TFLite runtime).")
    ] = True,
) -> None:
    """Every check a hub makes before installing: signature, file sizes and SHA-256, feature
    spec, op set against the hub runtimes, golden vectors. Exit 2 naming what is wrong."""
    try:
        checked = verify_model_bundle(bundle, load_public_key(pubkey), run_golden=golden)
    except USER_ERRORS as exc:
        report_error(exc, prefix="rejected")
        raise typer.Exit(2) from exc
    m = checked.manifest.document  # signed: its provenance fields are shown as written
    out.print(f"verified {bundle}: version {checked.version}, created {m.get('created_utc')}, "
              f"key {m.get('signing_key_fingerprint')}, {len(m.get('files', {}))} file(s)",
              markup=False)  # fmt: skip
    out.print(f"  inputs: {checked.spec.n_inputs} features; outputs: {len(checked.spec.outputs)} "
              f"muscle forces (N); ops: {', '.join(checked.ops)}")  # fmt: skip
    if checked.golden_max_diff_n is not None:
        out.print(f"  golden vectors reproduced on {checked.runtime} "
                  f"(largest difference {checked.golden_max_diff_n:.3g} N)")  # fmt: skip
