"""Running a bundle's network: raw inputs -> forces (N), and the golden-vector check.

One definition of the on-device arithmetic, used by the quantiser (to gate and to record golden
vectors) and by the hub (to infer and to refuse a bundle whose outputs differ from what was
signed): standardise in float; for a full-integer model quantise with the input tensor's (scale,
zero point), invoke and dequantise with the output tensor's (a model that quantises its
activations per frame takes and gives float); de-standardise in float.

The interpreter is ai-edge-litert's (the hub runtime); tflite-runtime 2.14 is the fallback for
hubs that cannot install it. Neither is imported until a model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.util import find_spec
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import FeatureSpec, FeatureSpecError, TensorQuantisation
from edge_runtime.contracts.tflite_ops import LITERT, TFLITE_RUNTIME

GOLDEN_TOLERANCE_STEPS = 2  # output quantisation steps two runtimes' int8 kernels may differ by
# A model with float output and int8 weights quantises each activation row per frame: a change of
# an input in its 7th digit (another CPU's float rounding) can tip a row's rounding and move an
# output by up to 0.0024 (measured on a 512-wide network; 0.006 at the 5th digit). Its steps are
# counted on an int8 grid over [-1, 1], the range the output grid (learning.qat.OutputGrid) maps
# the widest muscle onto: the step a full-integer model's output has there.
PER_FRAME_OUTPUT_STEP = 2.0 / 255
FLOAT_OUTPUT_STEP = 1e-4  # a float32 model: its own round-off only


class ForceModelError(FeatureSpecError):
    """A model that does not fit its feature spec, or outputs that differ from golden vectors."""


def interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise ForceModelError(
                "no TFLite runtime: install ai-edge-litert (the 'edge' extra) or tflite-runtime"
            ) from exc
    return Interpreter


def installed_runtime() -> str:
    """The entry of ``tflite_ops.HUB_RUNTIMES`` this machine's interpreter is (the one
    ``interpreter_class`` loads first)."""
    return LITERT if find_spec("ai_edge_litert") is not None else TFLITE_RUNTIME


def runtime_name() -> str:
    try:
        from importlib.metadata import version

        return f"ai-edge-litert {version('ai-edge-litert')}"
    except Exception:
        return "tflite-runtime"


class ForceModel:
    """A loaded .tflite network with its feature spec: full-integer int8 (int8 I/O), int8
    weights with activations quantised per frame (float I/O), or float32."""

    def __init__(self, model: bytes, spec: FeatureSpec, num_threads: int = 1) -> None:
        self.spec = spec
        try:
            self._interp = interpreter_class()(model_content=model, num_threads=num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # LiteRT: RuntimeError when a delegate refuses
            raise ForceModelError(f"the TFLite runtime cannot load the model ({exc})") from exc
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ForceModelError(f"{len(inputs)} inputs and {len(outputs)} outputs, not 1 and 1")
        inp, out = inputs[0], outputs[0]
        self._in, self._out = inp["index"], out["index"]
        self.dtype = np.dtype(inp["dtype"])
        if inp["shape"][-1] != spec.n_inputs or out["shape"][-1] != len(spec.outputs):
            raise ForceModelError(
                f"model I/O widths {inp['shape'][-1]} -> {out['shape'][-1]} do not match the "
                f"feature spec ({spec.n_inputs} features -> {len(spec.outputs)} muscles)"
            )
        self.input_quantisation: TensorQuantisation | None = None
        self.output_quantisation: TensorQuantisation | None = None
        if self.dtype == np.int8:
            self.input_quantisation = TensorQuantisation(
                float(inp["quantization"][0]), int(inp["quantization"][1])
            )
            self.output_quantisation = TensorQuantisation(
                float(out["quantization"][0]), int(out["quantization"][1])
            )
        elif self.dtype != np.float32:
            raise ForceModelError(f"model input type {self.dtype}: expected int8 or float32")
        # int8 weights behind float I/O: activations quantised per frame (dynamic range)
        self.per_frame_int8 = self.dtype == np.float32 and any(
            d["dtype"] == np.int8 for d in self._interp.get_tensor_details()
        )
        self._batch = 1

    def invoke_standardised(self, model_input: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run the network on already standardised (and, for int8, quantised) inputs."""
        n = len(model_input)
        try:
            if n != self._batch:
                self._interp.resize_tensor_input(self._in, [n, self.spec.n_inputs])
                self._interp.allocate_tensors()
                self._batch = n
            self._interp.set_tensor(self._in, model_input)
            self._interp.invoke()
        except RuntimeError as exc:  # a model the runtime cannot run at this batch size
            raise ForceModelError(f"the TFLite runtime cannot run the model ({exc})") from exc
        return self._interp.get_tensor(self._out)

    def forces(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """(N, F) raw inputs in the spec's order and units -> (N, M) forces in N."""
        x_std = self.spec.model_inputs(np.atleast_2d(x))
        if self.input_quantisation is not None and self.output_quantisation is not None:
            y = self.output_quantisation.dequantise(
                self.invoke_standardised(self.input_quantisation.quantise(x_std))
            )
        else:
            y = self.invoke_standardised(x_std)
        return self.spec.forces_from_outputs(y)

    def golden_tolerance_n(self, forces_n: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Per-value tolerance (N) of the golden check: a few output quantisation steps, taken
        through the output transform at each golden force."""
        if self.output_quantisation is not None:
            step = self.output_quantisation.scale
        else:
            step = PER_FRAME_OUTPUT_STEP if self.per_frame_int8 else FLOAT_OUTPUT_STEP
        normalised = self.spec.targets_from_forces(forces_n).astype(np.float64)
        delta = GOLDEN_TOLERANCE_STEPS * step
        hi = self.spec.forces_from_outputs(normalised + delta)
        lo = self.spec.forces_from_outputs(normalised - delta)
        return np.maximum(hi - forces_n, forces_n - lo) + 1e-6


def golden_vectors(model: ForceModel, x: npt.NDArray[Any]) -> dict[str, Any]:
    """Inputs, the model's outputs and per-muscle tolerances, for the bundle manifest."""
    forces = model.forces(x)
    return {
        "inputs": np.asarray(x, dtype=np.float64).tolist(),
        "forces_n": forces.tolist(),
        "tolerance_n": model.golden_tolerance_n(forces).tolist(),
        "runtime": runtime_name(),
    }


def check_golden_vectors(model: ForceModel, golden: Mapping[str, Any]) -> float:
    """Raise ForceModelError if the outputs differ from the golden ones by more than the
    tolerance; return the largest difference (N)."""
    try:
        x = np.asarray(golden["inputs"], dtype=np.float64)
        expected = np.asarray(golden["forces_n"], dtype=np.float64)
        tolerance = np.asarray(golden["tolerance_n"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ForceModelError(f"golden vectors are malformed ({exc})") from exc
    shape = (len(x), len(model.spec.outputs))
    if x.ndim != 2 or len(x) == 0 or expected.shape != shape or tolerance.shape != shape:
        raise ForceModelError(
            f"golden vectors have shapes {x.shape} -> {expected.shape}, tolerance {tolerance.shape}"
        )
    diff = np.abs(model.forces(x) - expected)
    worst = np.unravel_index(np.argmax(diff - tolerance), diff.shape)
    if (diff > tolerance).any():
        muscle = model.spec.outputs[int(worst[1])]
        raise ForceModelError(
            f"golden vector {int(worst[0])}: {muscle} is {diff[worst]:.4g} N off "
            f"(tolerance {tolerance[worst]:.3g} N) on {runtime_name()}; "
            f"{int((diff > tolerance).any(axis=1).sum())} of {len(x)} vectors differ"
        )
    return float(diff.max())
