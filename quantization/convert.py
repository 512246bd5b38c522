"""ONNX -> TFLite with onnx2tf (in .venv-quant): an int8 model and a float32 reference.

Either int8 model has per-channel int8 weights (``quantization.pipeline`` says which ships).
The per-frame one is onnx2tf's dynamic-range quantisation: float input and output, each
FULLY_CONNECTED quantising its input row to int8 with that row's own range. The full-integer one
has int8 input, activations and output, with ranges calibrated on the run's standardised
calibration inputs (``-cind x calibration.npy [0] [1]``: the data are already standardised, so
onnx2tf's own normalisation is the identity). onnx2tf is chatty and TensorFlow logs to stderr,
so its output goes to a log file that is shown only when conversion fails.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantization.errors import ConversionError

# onnx2tf names its outputs after the ONNX file: model.onnx -> model_full_integer_quant.tflite
INT8_SUFFIX = "_full_integer_quant.tflite"
PER_FRAME_SUFFIX = "_dynamic_range_quant.tflite"
FLOAT_SUFFIX = "_float32.tflite"


@dataclass(frozen=True)
class Converted:
    int8: bytes  # the int8 model of the activation scheme asked for
    float32: bytes  # the same graph in float32


def convert(
    onnx_path: Path, calibration_npy: Path, work_dir: Path, activations: str = "calibrated"
) -> Converted:
    """The int8 model of ``activations`` (``quantization.pipeline.ACTIVATION_SCHEMES``) and the
    float32 model of ``onnx_path``; only the calibrated one uses the calibration inputs."""
    out = work_dir / "onnx2tf"
    if activations == "per-frame":
        int8, float32 = _onnx2tf(
            onnx_path, out, (PER_FRAME_SUFFIX, FLOAT_SUFFIX),
            output_dynamic_range_quantized_tflite=True, quant_type="per-channel",
        )  # fmt: skip
        return Converted(int8=int8, float32=float32)
    calib = np.load(calibration_npy)
    if calib.ndim != 2 or calib.dtype != np.float32 or not np.isfinite(calib).all():
        raise ConversionError(
            f"{calibration_npy}: expected finite float32 (N, F), got {calib.dtype} {calib.shape}"
        )
    int8, float32 = _onnx2tf(
        onnx_path, out, (INT8_SUFFIX, FLOAT_SUFFIX),
        output_integer_quantized_tflite=True, quant_type="per-channel",
        custom_input_op_name_np_data_path=[["x", str(calibration_npy), [0.0], [1.0]]],
        input_quant_dtype="int8", output_quant_dtype="int8",
    )  # fmt: skip
    return Converted(int8=int8, float32=float32)


def convert_float(onnx_path: Path, work_dir: Path) -> bytes:
    """The float32 TFLite of ``onnx_path`` alone (no quantisation, no calibration)."""
    (float32,) = _onnx2tf(onnx_path, work_dir / "onnx2tf-float", (FLOAT_SUFFIX,))
    return float32


def _onnx2tf(onnx_path: Path, out: Path, suffixes: tuple[str, ...], **options: Any) -> list[bytes]:
    """onnx2tf's files of ``suffixes``, its chatter shown only when it fails."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import onnx2tf

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(out),
                            non_verbose=True, **options)  # fmt: skip
    except Exception as exc:  # onnx2tf raises bare Exceptions and SystemExit-like errors
        raise ConversionError(f"onnx2tf failed: {exc}\n{log.getvalue()[-3000:]}") from exc
    paths = [out / (onnx_path.stem + s) for s in suffixes]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ConversionError(f"onnx2tf wrote no {missing}\n{log.getvalue()[-3000:]}")
    return [p.read_bytes() for p in paths]
