"""The per-frame int8 model's weights: each weight as two int8 terms, its nearest step on the
channel's grid plus the remainder on a grid of its own.

With activations quantised per frame (``quantization.pipeline``), what int8 still lost on a
motion family the network never saw was nearly all the weights' rounding: on three networks the
largest per-muscle R² drop was 0.006-0.011 with one int8 term per weight, adaptively rounded
(0.003-0.009 with nearest rounding, simulated), against 0.0013-0.0025 for the activations alone.
A second int8 term holds what the first could not: ``w = s1·q1 + s2·q2``, with ``q1`` the nearest
step of the channel's grid (``s1 = max|w| / 127``) and ``q2`` the remainder on the remainder's
own per-channel grid (``s2 <= s1 / 254``), about 15 bits in all. Each layer becomes two
FULLY_CONNECTED of the same per-frame int8 input, added: int8 weights, int8 activations and
int32 sums throughout, at twice the products of one term (README, "Quantisation", for what that
costs in time). Measured on the same three networks: at most 0.0008.

The converter leaves a weight tensor under ``MIN_PER_FRAME_WEIGHTS`` values float; such a layer
stays one float term.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from quantization.rounding import DenseLayer, nearest_integers, read_mlp, weight_steps

FloatArray = npt.NDArray[np.float32]

# TFLite's dynamic-range quantisation leaves a weight tensor this small in float (its converter's
# default): such a layer of the per-frame model takes float input and float weights
MIN_PER_FRAME_WEIGHTS = 1024


@dataclass(frozen=True)
class TwoTermLayer:
    """One layer of the per-frame model: ``y = x @ (main + rest).T + bias``, then ReLU; ``rest``
    is None for a layer the converter keeps float."""

    main: FloatArray  # (outputs, inputs): on the channel's int8 grid
    rest: FloatArray | None  # the remainder, which the converter puts on its own int8 grid
    bias: FloatArray
    relu: bool

    @property
    def int8(self) -> bool:
        return self.rest is not None


def split(layers: list[DenseLayer]) -> list[TwoTermLayer]:
    """Every large enough layer's weights as the nearest int8 step plus the remainder."""
    split_layers = []
    for layer in layers:
        if layer.weight.size < MIN_PER_FRAME_WEIGHTS:
            split_layers.append(TwoTermLayer(layer.weight, None, layer.bias, layer.relu))
            continue
        main = (nearest_integers(layer.weight) * weight_steps(layer.weight)).astype(np.float32)
        rest = (layer.weight - main).astype(np.float32)
        split_layers.append(TwoTermLayer(main, rest, layer.bias, layer.relu))
    return split_layers


def per_frame_int8(values: FloatArray) -> FloatArray:
    """Each row through its own affine int8 grid, as LiteRT's dynamic-range FULLY_CONNECTED
    quantises its float input before the int8 product: the row's range widened to include 0,
    256 steps over it. (Against LiteRT on a 512-wide network: an RMS 5% of what int8 costs in
    all, the rest ties rounded the other way.)"""
    lo = np.minimum(values.min(axis=1, keepdims=True), 0.0)
    hi = np.maximum(values.max(axis=1, keepdims=True), 0.0)
    scale = np.maximum(hi - lo, 1e-12) / 255.0
    zero_point = np.round(-128.0 - lo / scale)
    q = np.clip(np.round(values / scale + zero_point), -128, 127)
    return ((q - zero_point) * scale).astype(np.float32)


def simulate(layers: list[TwoTermLayer], x: FloatArray) -> FloatArray:
    """The per-frame model's output as the converter and LiteRT will compute it: each int8
    layer's input row on its own grid, both weight terms on their channels' grids."""
    h = np.asarray(x, dtype=np.float32)
    for layer in layers:
        if layer.rest is None:
            weight = layer.main
        else:
            h = per_frame_int8(h)
            rest = nearest_integers(layer.rest) * weight_steps(layer.rest)
            weight = layer.main + rest.astype(np.float32)
        h = h @ weight.T + layer.bias
        if layer.relu:
            h = np.maximum(h, 0, dtype=np.float32)
    return h


def write_two_term_onnx(onnx_path: Path, out_path: Path) -> list[TwoTermLayer]:
    """The network of ``onnx_path`` (a Gemm/Relu chain) as two-term layers, written to
    ``out_path``: per layer ``Add(Gemm(h, main, bias), Gemm(h, rest))`` then Relu, with the
    same input and output as the original. Returns the layers written."""
    import onnx
    from onnx import helper, numpy_helper

    layers = split(read_mlp(onnx_path))
    source = onnx.load(str(onnx_path))
    nodes: list[Any] = []
    weights: list[Any] = []
    h, output = source.graph.input[0].name, source.graph.output[0].name
    for k, layer in enumerate(layers):
        weights += [numpy_helper.from_array(layer.main, f"main_{k}"),
                    numpy_helper.from_array(layer.bias, f"bias_{k}")]  # fmt: skip
        last = k + 1 == len(layers)
        summed = output if last and not layer.relu else f"sum_{k}"
        if layer.rest is None:
            nodes.append(helper.make_node("Gemm", [h, f"main_{k}", f"bias_{k}"], [summed],
                                          transB=1))  # fmt: skip
        else:
            weights.append(numpy_helper.from_array(layer.rest, f"rest_{k}"))
            nodes += [
                helper.make_node("Gemm", [h, f"main_{k}", f"bias_{k}"], [f"main_out_{k}"],
                                 transB=1),
                helper.make_node("Gemm", [h, f"rest_{k}"], [f"rest_out_{k}"], transB=1),
                helper.make_node("Add", [f"main_out_{k}", f"rest_out_{k}"], [summed]),
            ]  # fmt: skip
        if layer.relu:
            h = output if last else f"relu_{k}"
            nodes.append(helper.make_node("Relu", [summed], [h]))
        else:
            h = summed
    graph = helper.make_graph(nodes, source.graph.name, list(source.graph.input),
                              list(source.graph.output), weights)  # fmt: skip
    model = helper.make_model(graph, opset_imports=list(source.opset_import))
    model.ir_version = source.ir_version
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return layers
