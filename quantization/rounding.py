"""Adaptive rounding of the weights onto the converter's int8 grid (AdaRound: Nagel et al. 2020,
"Up or down? Adaptive rounding for post-training quantization", ICML), for the full-integer model
(``--activations calibrated``; the per-frame model's weights are two int8 terms instead,
``quantization.two_term``).

The converter gives each output channel of a layer a symmetric int8 grid (step max|w|/127) and
rounds every weight to its nearest step. Nearest is best for each weight alone, not for what the
layer computes: the errors of 256 weights add up in every output. Once the output grid had
stopped costing R² (``learning.qat.OutputGrid``), the weights' rounding was most of what int8
lost on a motion family the network never saw. Here each weight is rounded up or down, layer by
layer, to minimise the squared error of the layer's output on the calibration inputs (passed
through the already-rounded layers before it, with the int8 activations simulated as the
converter will calibrate them) against the float network's output; a soft rounding variable
per weight is optimised with a regulariser that anneals it to 0 or 1 (the paper's rectified
sigmoid and schedule).

The rounded weights are exact multiples of their channel's step, and each channel keeps its
largest weight, so the step the converter computes is the same and its own nearest rounding
reproduces the chosen integers (tested on the converted model). The float network the run was
trained as stays the reference: the gate compares int8 with it, so it judges the whole cost of
quantisation, the weights' rounding included.

Measured on three networks of the demo's scale (int8 vs float, largest per-muscle R² drop):
held-out subjects 0.0034 -> 0.0021, 0.0026 -> 0.0019 and 0.0092 -> 0.0038 (that one would have
failed the release gate); the held-out family 0.0174 -> 0.0094, 0.0219 -> 0.0112 and
0.0135 -> 0.0148.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import TensorQuantisation
from quantization.errors import QuantizationError

FloatArray = npt.NDArray[np.float32]

INT8_WEIGHT_LIMIT = 127  # per-channel symmetric weights use [-127, 127]
ITERATIONS = 500  # per layer: more did not help the held-out family (2,000: 0.0136 vs 0.0115)
BATCH_ROWS = 4096  # of the calibration inputs per iteration (1,024: noisier choices)
LEARNING_RATE = 1e-2
REGULARISER_WEIGHT = 0.01  # the paper's lambda, with its sum-of-squares reconstruction error
BETA_START, BETA_END = 20.0, 2.0  # the regulariser's annealed exponent
WARM_UP_SHARE = 0.2  # iterations with reconstruction only, before the regulariser starts
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch


@dataclass(frozen=True)
class DenseLayer:
    """One fully connected layer of the network: ``y = x @ weight.T + bias``, then ReLU."""

    weight: FloatArray  # (outputs, inputs)
    bias: FloatArray
    relu: bool

    def __call__(self, x: FloatArray) -> FloatArray:
        y = x @ self.weight.T + self.bias
        return np.maximum(y, 0, dtype=np.float32) if self.relu else y


def forward(layers: list[DenseLayer], x: FloatArray) -> FloatArray:
    """The network's float output."""
    for layer in layers:
        x = layer(x)
    return x


def read_mlp(onnx_path: Path) -> list[DenseLayer]:
    """The network's layers from its ONNX file: a chain of Gemm (transB=1), each optionally
    followed by a Relu: the only graph training exports."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    weights = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.initializer}
    layers: list[DenseLayer] = []
    for node in graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm" and attributes.get("transB") == 1 and len(node.input) == 3:
            layers.append(DenseLayer(weights[node.input[1]], weights[node.input[2]], relu=False))
        elif node.op_type == "Relu" and layers and not layers[-1].relu:
            layers[-1] = replace(layers[-1], relu=True)
        else:
            raise QuantizationError(
                f"{onnx_path}: node {node.name or node.op_type} ({node.op_type}) is not part of "
                "a Gemm/Relu chain: weight rounding handles only the network training exports"
            )
    if not layers:
        raise QuantizationError(f"{onnx_path}: no Gemm layers")
    return layers


def write_mlp(onnx_path: Path, layers: list[DenseLayer], out_path: Path) -> None:
    """A copy of ``onnx_path`` with its Gemm weights replaced by ``layers``' (same graph)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    if len(gemms) != len(layers):
        raise QuantizationError(f"{onnx_path}: {len(gemms)} Gemm layers, {len(layers)} given")
    replaced = {}
    for node, layer in zip(gemms, layers, strict=True):
        replaced[node.input[1]] = layer.weight
    for tensor in model.graph.initializer:
        if tensor.name in replaced:
            tensor.CopyFrom(numpy_helper.from_array(replaced[tensor.name], tensor.name))
    onnx.save(model, str(out_path))


def weight_steps(weight: FloatArray) -> FloatArray:
    """(outputs, 1) step of each output channel's symmetric int8 grid, as the converter sets it."""
    largest = np.abs(weight).max(axis=1, keepdims=True)
    return np.maximum(largest / INT8_WEIGHT_LIMIT, np.float32(1e-12)).astype(np.float32)


def nearest_integers(weight: FloatArray) -> FloatArray:
    """The converter's own rounding: each weight to its channel's nearest step."""
    return np.clip(np.round(weight / weight_steps(weight)), -INT8_WEIGHT_LIMIT, INT8_WEIGHT_LIMIT)


def calibrated_quantisation(values: FloatArray) -> TensorQuantisation:
    """The per-tensor int8 quantisation the converter calibrates for an activation: its range on
    the calibration inputs, widened to include 0."""
    return TensorQuantisation.from_range(float(values.min()), float(values.max()))


def _through_int8(values: FloatArray, quantisation: TensorQuantisation) -> FloatArray:
    return quantisation.dequantise(quantisation.quantise(values))


@dataclass(frozen=True)
class LayerRounding:
    """What adaptive rounding did to one layer, on the calibration inputs."""

    changed_share: float  # of the weights, rounded the other way than nearest
    output_mse_nearest: float  # the layer's output error against float, nearest rounding
    output_mse_chosen: float  # the same with the rounding kept (nearest's, if not lower)

    def to_dict(self) -> dict[str, float]:
        return {
            "changed_share": self.changed_share,
            "output_mse_nearest": self.output_mse_nearest,
            "output_mse_chosen": self.output_mse_chosen,
        }


def round_adaptively(
    layers: list[DenseLayer], calibration: FloatArray, iterations: int = ITERATIONS, seed: int = 0
) -> tuple[list[DenseLayer], list[LayerRounding]]:
    """``layers`` with every weight on its channel's int8 grid, rounded up or down to minimise
    each layer's output error (module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    x_float = np.asarray(calibration, dtype=np.float32)
    x_int8 = _through_int8(x_float, calibrated_quantisation(x_float))
    rounded, report = [], []
    for k, layer in enumerate(layers):
        target = layer(x_float)
        integers, rounding = _round_layer(layer, x_int8, target, iterations, rng)
        done = replace(layer, weight=(integers * weight_steps(layer.weight)).astype(np.float32))
        rounded.append(done)
        report.append(rounding)
        x_float, x_int8 = target, done(x_int8)
        if k + 1 < len(layers):  # the output tensor is not requantised inside the network
            x_int8 = _through_int8(x_int8, calibrated_quantisation(target))
    return rounded, report


def _rectified_sigmoid(v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """h(v) in [0, 1] and dh/dv (0 where clipped)."""
    s = 1.0 / (1.0 + np.exp(-v))
    h = s * (ZETA - GAMMA) + GAMMA
    slope = np.where((h > 0) & (h < 1), (ZETA - GAMMA) * s * (1 - s), 0.0)
    return np.clip(h, 0.0, 1.0).astype(np.float32), slope.astype(np.float32)


def _round_layer(
    layer: DenseLayer, x: FloatArray, target: FloatArray, iterations: int, rng: np.random.Generator
) -> tuple[FloatArray, LayerRounding]:
    """The chosen integers of one layer's weights (Adam on the soft rounding variables)."""
    step = weight_steps(layer.weight)
    scaled = layer.weight / step
    nearest = nearest_integers(layer.weight)
    floor = np.floor(scaled)
    # a channel's largest weight sets its step: it stays exactly on +-127, whatever float error
    # left in scaled, so the converter computes the same step from the rounded weights
    free = np.abs(nearest) < INT8_WEIGHT_LIMIT
    rest = np.clip(scaled - floor, 1e-4, 1 - 1e-4)
    v = np.log((rest - GAMMA) / (ZETA - rest)).astype(np.float32)  # h(v) = rest
    adam_m, adam_v = np.zeros_like(v), np.zeros_like(v)
    for it in range(iterations):
        rows = rng.integers(0, len(x), min(BATCH_ROWS, len(x)))
        h, slope = _rectified_sigmoid(v)
        weight = step * np.where(free, floor + h, nearest)
        batch = x[rows]  # gathered once: the forward pass and the gradient both use it
        out = batch @ weight.T + layer.bias
        d_out = out - target[rows]
        if layer.relu:  # the target is >= 0: below zero the output is 0 and has no gradient
            d_out = np.where(out > 0, d_out, 0.0)
        grad_h = (2.0 / len(rows)) * (d_out.T @ batch) * step
        if it >= WARM_UP_SHARE * iterations:
            beta = BETA_START + (BETA_END - BETA_START) * it / iterations
            centred = 2 * h - 1
            grad_h -= (
                REGULARISER_WEIGHT * 2 * beta * np.abs(centred) ** (beta - 1) * np.sign(centred)
            )
        grad = np.where(free, grad_h * slope, 0.0)
        adam_m = 0.9 * adam_m + 0.1 * grad
        adam_v = 0.999 * adam_v + 0.001 * grad * grad
        corrected_m = adam_m / (1 - 0.9 ** (it + 1))
        corrected_v = adam_v / (1 - 0.999 ** (it + 1))
        v = (v - LEARNING_RATE * corrected_m / (np.sqrt(corrected_v) + 1e-8)).astype(np.float32)
    h, _ = _rectified_sigmoid(v)
    chosen = np.where(free, floor + (h >= 0.5), nearest)
    mse = {
        name: float(np.mean(np.sum((replace(layer, weight=ints * step)(x) - target) ** 2, axis=1)))
        for name, ints in (("nearest", nearest), ("adaptive", chosen))
    }
    if not mse["adaptive"] < mse["nearest"]:  # never worse than the converter's own rounding
        chosen, mse["adaptive"] = nearest, mse["nearest"]
    changed = float(np.mean(chosen != nearest))
    return chosen.astype(np.float32), LayerRounding(changed, mse["nearest"], mse["adaptive"])


def rounding_note(iterations: int, layers: list[LayerRounding]) -> dict[str, Any]:
    """How the weights were rounded, for the bundle manifest."""
    return {
        "method": "adaptive (AdaRound, Nagel et al. 2020)",
        "iterations_per_layer": iterations,
        "layers": [layer.to_dict() for layer in layers],
    }
