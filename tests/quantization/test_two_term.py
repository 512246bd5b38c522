"""The per-frame model's two-term int8 weights (quantization.two_term): the split is exact in
float, each term sits on an int8 grid, the ONNX graph computes the network, and per-frame int8
activations with two terms stay far closer to float than one term does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quantization.rounding import DenseLayer, forward, nearest_integers, weight_steps
from quantization.two_term import (
    MIN_PER_FRAME_WEIGHTS,
    TwoTermLayer,
    per_frame_int8,
    simulate,
    split,
    write_two_term_onnx,
)
from tests.quantization.networks import random_mlp, uniform_inputs


def _network(seed: int = 0) -> list[DenseLayer]:
    # the first layer's 576 weights are too few for the converter to quantise
    return random_mlp([(64, 9, True), (64, 64, True), (24, 64, False)], seed)


def _inputs(n: int = 2000, seed: int = 1) -> np.ndarray:
    return uniform_inputs(n, seed)


def test_each_weight_is_its_nearest_step_plus_the_remainder() -> None:
    layers = _network()
    two_term = split(layers)
    assert [t.int8 for t in two_term] == [False, True, True]
    assert two_term[0].main is layers[0].weight  # left float, untouched
    for layer, t in zip(layers[1:], two_term[1:], strict=True):
        assert t.rest is not None and layer.weight.size >= MIN_PER_FRAME_WEIGHTS
        step = weight_steps(layer.weight)
        np.testing.assert_allclose(t.main / step, nearest_integers(layer.weight), atol=1e-4)
        np.testing.assert_allclose(t.main + t.rest, layer.weight, atol=1e-7)
        assert (np.abs(t.rest) <= step / 2 + 1e-7).all()
        # the remainder's own grid is at least 254 times finer than the weight's
        assert (weight_steps(t.rest) <= step / 254 + 1e-9).all()


def test_per_frame_activations_get_each_rows_own_grid() -> None:
    rows = np.array([[0.0, 0.01, 0.02], [0.0, 10.0, 20.0], [-3.0, 0.5, 1.0]], dtype=np.float32)
    q = per_frame_int8(rows)
    assert (q[:2, 0] == 0).all()  # 0 is exact
    step = (np.maximum(rows.max(1), 0) - np.minimum(rows.min(1), 0)) / 255
    assert (np.abs(q - rows) <= step[:, None] / 2 + 1e-7).all()  # a small row keeps its steps
    assert step[0] < 1e-4 < step[1]


def test_two_terms_lose_far_less_than_one() -> None:
    layers = _network()
    x = _inputs()
    reference = forward(layers, x)
    one_term = [
        TwoTermLayer(nearest_integers(t.main) * weight_steps(t.main), None, t.bias, t.relu)
        if t.rest is not None
        else t
        for t in split(layers)
    ]
    # one term: the nearest step alone, with the same per-frame activations
    error_one = _per_frame_error(one_term, split(layers), x, reference)
    error_two = np.sqrt(np.mean((simulate(split(layers), x) - reference) ** 2))
    assert error_two < 0.5 * error_one


def _per_frame_error(
    one_term: list[TwoTermLayer], shape: list[TwoTermLayer], x: np.ndarray, ref: np.ndarray
) -> float:
    """RMS error of one-term weights with the per-frame activations of ``shape``'s int8 layers."""
    h = x
    for single, layer in zip(one_term, shape, strict=True):
        h = (per_frame_int8(h) if layer.int8 else h) @ single.main.T + single.bias
        h = np.maximum(h, 0) if single.relu else h
    return float(np.sqrt(np.mean((h - ref) ** 2)))


def test_the_two_term_graph_computes_the_network(tmp_path: Path) -> None:
    import onnx
    from onnx.reference import ReferenceEvaluator

    from host_training.learning.network import NetworkConfig, export_onnx
    from quantization.rounding import read_mlp

    network = NetworkConfig((64, 64)).build(9, 24)
    export_onnx(network, 9, tmp_path / "model.onnx")
    written = write_two_term_onnx(tmp_path / "model.onnx", tmp_path / "two.onnx")
    graph = onnx.load(str(tmp_path / "two.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Add") == 2 and ops.count("Gemm") == 5 and ops.count("Relu") == 2
    assert [i.name for i in graph.input] == ["x"] and [o.name for o in graph.output] == ["y"]
    x = _inputs(50)
    (y,) = ReferenceEvaluator(str(tmp_path / "two.onnx")).run(None, {"x": x})
    np.testing.assert_allclose(y, forward(read_mlp(tmp_path / "model.onnx"), x), atol=1e-5)
    assert [t.int8 for t in written] == [False, True, True]
