"""Small random MLPs and inputs for the weight-quantisation tests."""

from __future__ import annotations

import numpy as np

from quantization.rounding import DenseLayer


def random_mlp(shapes: list[tuple[int, int, bool]], seed: int = 0) -> list[DenseLayer]:
    """Layers of (outputs, inputs, ReLU after it), He-like weights, small biases."""
    rng = np.random.default_rng(seed)
    return [
        DenseLayer(
            (rng.normal(size=(o, i)) / np.sqrt(i)).astype(np.float32),
            rng.normal(0, 0.1, o).astype(np.float32),
            relu,
        )
        for o, i, relu in shapes
    ]


def uniform_inputs(n: int, seed: int = 1, width: int = 9) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, width)).astype(np.float32)
