"""``cervical quantize``: run directory -> signed int8 bundle, from the host environment.

The conversion toolchain (onnx2tf, TensorFlow, numpy 1.26) cannot share a venv with OpenSim, so
the pipeline runs as a subprocess in ``.venv-quant``. When it has written the bundle, this side
checks it again exactly as a hub would (signature, hashes, op set, golden vectors on this
environment's ai-edge-litert); a bundle that fails here is removed, so nothing unverified is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edge_runtime.contracts.bundle import BundleError, load_private_key
from edge_runtime.contracts.force_model import ForceModelError
from edge_runtime.contracts.model_bundle import verify_model_bundle

# importable here: onnx2tf loads lazily
from quantization.pipeline import R2_TOLERANCE, QuantizationError, load_envelope_grid

QUANT_PYTHON_ENV = "CERVICAL_QUANT_PYTHON"

quantize_app = typer.Typer(help="Quantise a training run to a signed int8 bundle.")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def quant_python() -> Path:
    """The conversion venv's interpreter: $CERVICAL_QUANT_PYTHON, else the repository's
    ``.venv-quant``."""
    configured = os.environ.get(QUANT_PYTHON_ENV)
    path = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parent.parent / ".venv-quant" / "bin" / "python"
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"the conversion toolchain is not installed ({path} is missing): run `make venv-quant` "
            f"or point {QUANT_PYTHON_ENV} at a Python with the 'quant' extra"
        )
    return path


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


@quantize_app.callback(invoke_without_command=True)
def quantize(
    run: Annotated[Path, typer.Option(help="Run directory (from `cervical train`).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Bundle directory to create.")],
    key: Annotated[Path, typer.Option(help="Ed25519 private signing key (PEM).")],
    envelope: Annotated[
        Path, typer.Option(help="Envelope grid JSON (from `cervical envelope-grid`).")
    ],
    version: Annotated[
        str | None, typer.Option(help="Bundle version (default: UTC timestamp).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Largest allowed per-muscle R² drop, float -> int8.", min=0)
    ] = R2_TOLERANCE,
) -> None:
    """Full-integer int8 TFLite (int8 I/O, per-channel), op check against the hub runtimes,
    accuracy gate on held-out subjects, golden vectors, signed bundle. Exit 2, writing no
    bundle, when any check fails."""
    if out_dir.exists():
        raise _fail(f"{out_dir} already exists: choose a new bundle directory")
    try:
        public_key = load_private_key(key).public_key()  # a bad key fails before converting
        python = quant_python()
        load_envelope_grid(envelope)  # a bad envelope fails before converting
    except (BundleError, FileNotFoundError, QuantizationError) as exc:
        raise _fail(str(exc)) from exc
    command = [str(python), "-m", "quantization.pipeline", "--run", str(run),
               "--out", str(out_dir), "--key", str(key), "--tolerance", str(tolerance),
               "--envelope", str(envelope)]  # fmt: skip
    if version:
        command += ["--version", version]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    # Our own lines ([quantize], error:) are shown live; TensorFlow's chatter is kept for failures.
    chatter: list[str] = []
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                          env=env, cwd=Path(__file__).resolve().parent.parent) as proc:  # fmt: skip
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith(("[quantize]", "error:")):
                err.print(line.rstrip(), highlight=False, markup=False)
            else:
                chatter.append(line)
    if proc.returncode != 0:
        if proc.returncode != 2:
            sys.stderr.writelines(chatter[-40:])
        raise _fail(f"quantisation failed (exit {proc.returncode}); no bundle written")
    try:
        checked = verify_model_bundle(out_dir, public_key)
    except (BundleError, ForceModelError) as exc:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise _fail(f"the new bundle failed the hub's checks here and was removed: {exc}") from exc
    gate = checked.manifest["metrics"]
    out.print(
        f"bundle {out_dir} (version {checked.manifest['bundle_version']}): int8 R² min "
        f"{gate['r2_min_int8']:.4f} ({gate['worst_muscle_int8']}), "
        f"float {gate['r2_min_float']:.4f}; "
        f"golden vectors reproduced on {checked.runtime}"
    )
