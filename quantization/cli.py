"""``cervical quantize``: run directory -> signed int8 bundle, from the host environment.

The conversion toolchain (onnx2tf, TensorFlow, numpy 1.26) cannot share a venv with OpenSim, so
the pipeline runs as a subprocess in ``.venv-quant``. When it has written the bundle, this side
checks it again exactly as a hub would (signature, hashes, op set, golden vectors on this
environment's ai-edge-litert); a bundle that fails here is removed, so nothing unverified is left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from edge_runtime.common.text import report_error
from edge_runtime.contracts.bundle import load_private_key
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.model_bundle import VerifiedBundle, verify_model_bundle
from edge_runtime.contracts.training_run import MOTION_FAMILIES, RunError, RunLayout, RunManifest

# importable here: onnx2tf loads lazily
from quantization.errors import QuantizationError
from quantization.pipeline import (
    ACTIVATION_SCHEMES,
    DEFAULT_ACTIVATIONS,
    R2_TOLERANCE,
    load_envelope_grid,
)

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


def _run_pipeline(
    python: Path, args: list[str], on_line: Callable[[str], None], outcome: str
) -> None:
    """``python -m quantization.pipeline ARGS`` in the toolchain venv; QuantizationError with
    its own error lines (or TensorFlow's chatter) when it fails."""
    command = [str(python), "-m", "quantization.pipeline", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    # Our own lines ([quantize], error:) are passed on; TensorFlow's chatter is kept for failures.
    chatter: list[str] = []
    errors: list[str] = []
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                          env=env, cwd=Path(__file__).resolve().parent.parent) as proc:  # fmt: skip
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("[quantize]"):
                on_line(line.rstrip())
            elif line.startswith("error:"):
                errors.append(line.removeprefix("error:").strip())
            else:
                chatter.append(line)
    if proc.returncode != 0:
        reason = "; ".join(errors) or "".join(chatter[-40:]).strip()
        raise QuantizationError(
            f"quantisation failed (exit {proc.returncode}); {outcome}: {reason}"
        )


def gate_run(
    run: Path, tolerance: float = R2_TOLERANCE, on_line: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Convert a run to int8 and run the accuracy gate, writing no bundle (the converted models
    are kept in ``RUN/tflite/``, as ``cervical quantize`` keeps them); the gate's result
    (``accuracy_gate``), whether or not it passed."""
    try:
        python = quant_python()
    except (ContractError, OSError) as exc:
        raise QuantizationError(str(exc)) from exc
    with tempfile.TemporaryDirectory(prefix="cervical-gate-") as tmp:
        summary = Path(tmp) / "gate.json"
        args = ["--run", str(run.resolve()), "--gate-only", "--tolerance", str(tolerance),
                "--summary", str(summary)]  # fmt: skip
        _run_pipeline(python, args, on_line, "nothing written")
        result: dict[str, Any] = json.loads(summary.read_text())
    return result


def quantize_run(
    run: Path,
    out_dir: Path,
    key: Path,
    envelope: Path,
    version: str | None = None,
    tolerance: float = R2_TOLERANCE,
    on_line: Callable[[str], None] = lambda line: None,
    family_tolerance: float | None = None,
    gate_family: str | None = None,
    rmse_tolerance: float | None = None,
    activations: str = DEFAULT_ACTIVATIONS,
) -> VerifiedBundle:
    """Run the conversion pipeline in the toolchain venv and check its bundle as a hub would.
    ``on_line`` gets the pipeline's own progress lines (``[quantize] ...``). Raises
    QuantizationError naming the failed check; no bundle is left behind then. ``gate_family``:
    the motion family the int8 gate must judge (the run must have held it out); ``activations``:
    which int8 model to ship (``quantization.pipeline``)."""
    if out_dir.exists():
        raise QuantizationError(f"{out_dir} already exists: choose a new bundle directory")
    if activations not in ACTIVATION_SCHEMES:
        raise QuantizationError(f"--activations {activations!r}: one of {list(ACTIVATION_SCHEMES)}")
    if gate_family is not None:
        check_gate_family(run, gate_family)
    try:
        public_key = load_private_key(key).public_key()  # a bad key fails before converting
        python = quant_python()
        load_envelope_grid(envelope)  # a bad envelope fails before converting
    except (ContractError, OSError) as exc:
        raise QuantizationError(str(exc)) from exc
    # the pipeline runs from the repository root: paths must not be relative to here
    command = ["--run", str(run.resolve()), "--out", str(out_dir.resolve()),
               "--key", str(key.resolve()), "--tolerance", str(tolerance),
               "--envelope", str(envelope.resolve()),
               "--activations", activations]  # fmt: skip
    if version:
        command += ["--version", version]
    if family_tolerance is not None:
        command += ["--family-tolerance", str(family_tolerance)]
    if rmse_tolerance is not None:
        command += ["--rmse-tolerance", str(rmse_tolerance)]
    _run_pipeline(python, command, on_line, "no bundle written")
    try:
        return verify_model_bundle(out_dir, public_key)
    except ContractError as exc:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise QuantizationError(
            f"the new bundle failed the hub's checks here and was removed: {exc}"
        ) from exc


def check_gate_family(run: Path, family: str) -> None:
    """The gate can judge int8 on ``family`` only if the run never trained on it."""
    if family not in MOTION_FAMILIES:
        raise QuantizationError(
            f"motion family {family!r} does not exist; known families: {list(MOTION_FAMILIES)}"
        )
    try:
        heldout = RunManifest.read(RunLayout(run)).heldout_family
    except RunError as exc:
        raise QuantizationError(str(exc)) from None
    if heldout != family:
        raise QuantizationError(
            f"{run} was trained on {family!r} (its held-out family is {heldout!r}): the gate "
            f"cannot judge int8 on motion the network has seen; train a run with "
            f"--heldout-family {family}"
        )


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
    family_tolerance: Annotated[
        float | None,
        typer.Option(
            help="The same on the held-out motion family (default 0.005 per frame, 0.05 "
            "calibrated).",
            min=0,
        ),
    ] = None,
    gate_family: Annotated[
        str | None,
        typer.Option(help="Motion family the gate must judge (the run must have held it out)."),
    ] = None,
    rmse_tolerance: Annotated[
        float | None,
        typer.Option(
            help="Largest int8-vs-float RMS force of any muscle, in % of its Fmax (default 0.5).",
            min=0,
        ),
    ] = None,
    activations: Annotated[
        str,
        typer.Option(
            help="per-frame: int8 weights, each frame's activations quantised over their own "
            "range (float I/O, needs ai-edge-litert); calibrated: full integer, int8 I/O, "
            "ranges calibrated once (runs on tflite-runtime 2.14 too)."
        ),
    ] = DEFAULT_ACTIVATIONS,
) -> None:
    """int8 TFLite (per-channel weights), op check against the hub runtimes, accuracy gate on
    held-out subjects and on the run's held-out motion family, golden vectors, signed bundle.
    Exit 2, writing no bundle, when any check fails."""
    try:
        checked = quantize_run(
            run, out_dir, key, envelope, version, tolerance,
            on_line=lambda line: err.print(line, highlight=False, markup=False),
            family_tolerance=family_tolerance, gate_family=gate_family,
            rmse_tolerance=rmse_tolerance, activations=activations,
        )  # fmt: skip
    except QuantizationError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    gate = checked.manifest.gate
    out.print(
        f"bundle {out_dir} (version {checked.version}): int8 R² min "
        f"{gate['r2_min_int8']:.4f} ({gate['worst_muscle_int8']}), "
        f"float {gate['r2_min_float']:.4f}; "
        f"golden vectors reproduced on {checked.runtime}"
    )
