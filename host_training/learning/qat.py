"""Quantisation-aware fine-tuning: a few epochs with int8 rounding simulated in the forward pass.

A float network trained to convergence can lose a lot of a quiet muscle's R² under int8: hidden
ReLU activations are heavy-tailed, so the per-tensor int8 grid that covers the rare large ones is
coarse for the typical small ones. Fine-tuning with the converter's arithmetic simulated (straight-
through gradients) teaches the weights to tolerate that grid. The simulation follows the TFLite
full-integer scheme onnx2tf produces: per-tensor affine int8 for the input, every post-ReLU
activation and the output, with ranges the converter would calibrate (min/max of a float pass
over the calibration inputs, widened to include 0); per-output-channel symmetric int8 weights.

The result is still a plain float network (exported unchanged); the converter's own calibration
then lands on (nearly) the ranges the network was tuned for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def _blocks(network: Any) -> list[tuple[Any, bool]]:
    """(Linear layer, followed by ReLU) pairs of a Sequential MLP."""
    import torch

    layers = list(network)
    blocks = []
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.Linear):
            relu = i + 1 < len(layers) and isinstance(layers[i + 1], torch.nn.ReLU)
            blocks.append((layer, relu))
    return blocks


def activation_ranges(
    network: Any, calibration: npt.NDArray[np.float32]
) -> list[tuple[float, float]]:
    """Min/max (widened to include 0) of the input and of every block's output, float pass."""
    import torch

    with torch.inference_mode():
        h = torch.from_numpy(calibration)
        ranges = [(min(0.0, float(h.min())), max(0.0, float(h.max())))]
        for linear, relu in _blocks(network):
            h = linear(h)
            if relu:
                h = torch.relu(h)
            ranges.append((min(0.0, float(h.min())), max(0.0, float(h.max()))))
    return ranges


def _fake_quant_activation(h: Any, lo: float, hi: float) -> Any:
    import torch

    scale = max(hi - lo, 1e-8) / 255.0
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return torch.fake_quantize_per_tensor_affine(h, scale, zero_point, -128, 127)


def _fake_quant_weight(w: Any) -> Any:
    import torch

    scale = (w.detach().abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def int8_forward(network: Any, x: Any, ranges: list[tuple[float, float]]) -> Any:
    """The network's output with the int8 arithmetic simulated (differentiable, STE)."""
    import torch

    h = _fake_quant_activation(x, *ranges[0])
    for k, (linear, relu) in enumerate(_blocks(network), start=1):
        h = torch.nn.functional.linear(h, _fake_quant_weight(linear.weight), linear.bias)
        if relu:
            h = torch.relu(h)
        h = _fake_quant_activation(h, *ranges[k])
    return h
