"""Run directory -> signed int8 bundle. Runs in .venv-quant (``python -m quantization.pipeline``).

Steps, each of which can stop the pipeline before anything is written:
1. load the run (feature spec, calibration inputs, held-out gate frames) and the signing key;
2. convert ONNX -> int8 TFLite (onnx2tf, per-channel, int8 I/O) and a float32 TFLite;
3. op check: every op and version must exist in every hub runtime (from the flatbuffer);
4. accuracy gate on the held-out subjects: per-muscle R² of int8 within ``tolerance`` of float;
5. golden vectors (inputs and the int8 model's forces) and the bundle manifest;
6. write and sign the bundle (atomic; an existing directory is never touched).

The converted models are also kept in ``RUN/tflite/`` for ``cervical bench model-runtime``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.common.atomic import write_atomic
from edge_runtime.contracts.accuracy import r2_per_column
from edge_runtime.contracts.bundle import (
    load_private_key,
    parse_bundle_version,
    write_bundle,
)
from edge_runtime.contracts.envelope import EnvelopeError, EnvelopeGrid
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.feature_spec import FeatureSpec
from edge_runtime.contracts.force_model import ForceModel, golden_vectors
from edge_runtime.contracts.tflite_ops import HUB_RUNTIMES, check_hub_compatible
from quantization.convert import convert
from quantization.errors import QuantizationError

R2_TOLERANCE = 0.005
GOLDEN_VECTORS = 32
TFLITE_DIR = "tflite"  # inside the run directory
INT8_FILE = "model_int8.tflite"
FLOAT_FILE = "model_float32.tflite"


def _log(message: str) -> None:
    print(f"[quantize] {message}", file=sys.stderr, flush=True)


def load_run_inputs(run: Path) -> tuple[dict[str, Any], FeatureSpec, Path, dict[str, Any]]:
    required = ["manifest.json", "model.onnx", "calibration.npy", "heldout_gate.npz"]
    missing = [n for n in required if not (run / n).is_file()]
    if missing:
        raise QuantizationError(f"{run} is not a complete training run: missing {missing}")
    manifest = json.loads((run / "manifest.json").read_text())
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    calib = np.load(run / "calibration.npy", mmap_mode="r")
    if calib.shape[1:] != (spec.n_inputs,) or len(calib) < 5000:
        raise QuantizationError(
            f"{run}/calibration.npy: shape {calib.shape}, need >= 5000 rows "
            f"of {spec.n_inputs} standardised inputs"
        )
    with np.load(run / "heldout_gate.npz") as z:
        gate = {k: z[k] for k in z.files}
    return manifest, spec, run / "calibration.npy", gate


def accuracy_gate(
    gate: dict[str, Any], y_int8: np.ndarray, muscles: tuple[str, ...], tolerance: float
) -> dict[str, Any]:
    r2_float = r2_per_column(gate["y"], gate["y_float"])
    r2_int8 = r2_per_column(gate["y"], y_int8)
    drop = r2_float - r2_int8
    failing = [m for m, d in zip(muscles, drop, strict=True) if d > tolerance]
    err_sim = np.abs(y_int8 - gate["y"])
    err_float = np.abs(y_int8 - gate["y_float"])
    worst = int(np.argmax(drop))
    return {
        "passed": not failing,
        "tolerance_r2": tolerance,
        "n_frames": len(gate["y"]),
        "failing_muscles": failing,
        "largest_r2_drop": float(drop[worst]),
        "largest_r2_drop_muscle": muscles[worst],
        "r2_min_float": float(r2_float.min()),
        "r2_min_int8": float(r2_int8.min()),
        "worst_muscle_int8": muscles[int(np.argmin(r2_int8))],
        "max_abs_error_int8_vs_simulated_n": float(err_sim.max()),
        "max_abs_error_int8_vs_float_n": float(err_float.max()),
        "mean_abs_error_int8_vs_float_n": float(err_float.mean()),
        "r2_per_muscle": dict(zip(muscles, map(float, r2_float), strict=True)),
        "r2_per_muscle_int8": dict(zip(muscles, map(float, r2_int8), strict=True)),
    }


def golden_rows(gate: dict[str, Any], n: int, seed: int = 0) -> np.ndarray:
    """Rows that exercise the model: each of the largest-force frames, then random ones."""
    extremes = np.unique(np.argmax(gate["y"], axis=0))[: n // 2]
    rest = np.setdiff1d(np.arange(len(gate["y"])), extremes)
    rng = np.random.default_rng(seed)
    return np.concatenate([extremes, rng.choice(rest, n - len(extremes), replace=False)])


def load_envelope_grid(path: Path) -> EnvelopeGrid:
    """The envelope grid file (from `cervical envelope-grid`), validated by its contract."""
    try:
        return EnvelopeGrid.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise QuantizationError(f"{path}: cannot read the envelope grid: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise QuantizationError(f"{path}: the envelope grid is not JSON: {exc}") from exc
    except EnvelopeError as exc:
        raise QuantizationError(f"{path}: {exc}") from exc


def quantize(
    run: Path, out: Path, key_path: Path, bundle_version: str | None, tolerance: float,
    envelope_path: Path,
) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    if out.exists():
        raise QuantizationError(f"{out} already exists: choose a new bundle directory")
    if bundle_version is not None:
        try:
            parse_bundle_version(bundle_version)
        except ValueError as exc:
            raise QuantizationError(f"--version: {exc}") from exc
    key = load_private_key(key_path)
    envelope = load_envelope_grid(envelope_path)
    manifest, spec, calib_path, gate = load_run_inputs(run)
    n_calibration = len(np.load(calib_path, mmap_mode="r"))
    _log(
        f"run {run}: {spec.n_inputs} inputs -> {len(spec.outputs)} muscles, "
        f"{n_calibration:,} calibration rows, "
        f"{len(gate['y']):,} held-out gate frames"
    )
    with tempfile.TemporaryDirectory(prefix="cervical-quantize-") as work:
        _log("converting ONNX -> int8 TFLite (onnx2tf, per-channel, int8 I/O)")
        converted = convert(run / "model.onnx", calib_path, Path(work))
    ops = check_hub_compatible(converted.int8)
    _log(f"ops: {', '.join(ops)} (supported by {', '.join(HUB_RUNTIMES)})")
    int8 = ForceModel(converted.int8, spec)
    if int8.input_quantisation is None or int8.output_quantisation is None:
        raise QuantizationError("the converted model does not have int8 input and output tensors")
    float_model = ForceModel(converted.float32, spec)
    float_diff = float(np.abs(float_model.forces(gate["x"]) - gate["y_float"]).max())
    _log(f"float32 TFLite vs PyTorch: max difference {float_diff:.3g} N")
    y_int8 = int8.forces(gate["x"])
    result = accuracy_gate(gate, y_int8, spec.outputs, tolerance)
    _log(
        f"gate: worst R² float {result['r2_min_float']:.4f}, int8 {result['r2_min_int8']:.4f} "
        f"({result['worst_muscle_int8']}); largest drop {result['largest_r2_drop']:.4f} "
        f"({result['largest_r2_drop_muscle']}); max |int8 - simulated| "
        f"{result['max_abs_error_int8_vs_simulated_n']:.2f} N"
    )
    _save_converted(run, converted.int8, converted.float32)
    if not result["passed"]:
        raise QuantizationError(
            f"accuracy gate failed: int8 R² is more than {tolerance} below float for "
            f"{len(result['failing_muscles'])} muscle(s): {result['failing_muscles'][:10]} "
            f"(largest drop {result['largest_r2_drop']:.4f} on "
            f"{result['largest_r2_drop_muscle']}); "
            "no bundle written"
        )
    golden = golden_vectors(int8, gate["x"][golden_rows(gate, GOLDEN_VECTORS)])
    version = bundle_version or datetime.now(UTC).strftime("%Y.%m.%d.%H%M%S")
    body = {
        "feature_spec": spec.to_dict(),
        "muscles": manifest["muscles"],
        "io_quantisation": {
            "input": int8.input_quantisation.to_dict(),
            "output": int8.output_quantisation.to_dict(),
            "dtype": "int8",
        },
        "ops": ops,
        "hub_runtimes": list(HUB_RUNTIMES),
        "golden": golden,
        "envelope": envelope.to_dict(),
        "metrics": {
            "evaluated_on": "held-out subjects (seen motion families), the run's gate sample",
            **result,
            "float32_tflite_vs_pytorch_max_n": float_diff,
        },
        "training": {k: v for k, v in manifest.items() if k not in ("feature_spec", "muscles")},
        "quantisation": {
            "tool": "onnx2tf 1.29.24",
            "quant_type": "per-channel",
            "calibration_rows": n_calibration,
        },
    }
    write_bundle(out, {"model.tflite": converted.int8}, body, key, version)
    _log(f"wrote bundle {out} (version {version}) in {time.perf_counter() - started:.0f} s")
    return result


def _save_converted(run: Path, int8: bytes, float32: bytes) -> None:
    target = run / TFLITE_DIR
    target.mkdir(exist_ok=True)
    for name, data in ((INT8_FILE, int8), (FLOAT_FILE, float32)):
        write_atomic(target / name, data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantization.pipeline")
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--version", default=None)
    parser.add_argument("--tolerance", type=float, default=R2_TOLERANCE)
    parser.add_argument("--envelope", type=Path, required=True, help="envelope grid JSON")
    parser.add_argument("--summary", type=Path, default=None, help="write the gate result as JSON")
    args = parser.parse_args(argv)
    try:
        result = quantize(args.run, args.out, args.key, args.version, args.tolerance, args.envelope)
    except (QuantizationError, ContractError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.summary:
        args.summary.write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
