"""Quantisation-aware fine-tuning: a few epochs with int8 rounding simulated in the forward pass.

A float network trained to convergence can lose a lot of a quiet muscle's R² under int8: hidden
ReLU activations are heavy-tailed, so the per-tensor int8 grid that covers the rare large ones is
coarse for the typical small ones. Fine-tuning with the converter's arithmetic simulated (straight-
through gradients) teaches the weights to tolerate that grid. The simulation follows the TFLite
full-integer scheme onnx2tf produces: per-tensor affine int8 for the input, every post-ReLU
activation and the output, with ranges the converter would calibrate (min/max of a float pass
over the calibration inputs, widened to include 0); per-output-channel symmetric int8 weights.

The output tensor's one int8 scale is shared by all 72 muscles, and their standardised sqrt
forces span 8 to 40 standard deviations: the muscle with the widest span set the grid for all,
and on a motion family the network never saw that grid alone cost up to 0.017 of a muscle's R².
So the output gets an ``OutputGrid``: each muscle's output is mapped onto [-1, 1] by the range
the network's outputs take on the calibration inputs, and the map is folded into the last layer
and the feature spec's output normalisation before export (``fold_output_grid``; exact in float).
Every muscle then gets the whole int8 grid. The fine-tuning simulates that grid.

The result is still a plain float network; the converter's own calibration then lands on (nearly)
the ranges the network was tuned for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import FeatureSpec, Normalisation, TensorQuantisation

# a muscle whose output hardly moves on the calibration inputs (a silent muscle) keeps at least
# this half-range (in the network's output units): its grid cannot become a magnifying glass
MIN_OUTPUT_HALF_RANGE = 1e-3
# The converter sets the output tensor's range from the calibration inputs, and an output beyond
# it clips. A muscle driven past everything the calibration inputs gave it (a motion or a wearer
# the network never saw) would clip at once on a grid of its own range, so every muscle's grid is
# this much wider than its own range; the widest muscle's is not (it sets the tensor's range, as
# it did with one scale for all). Measured: on a grid of its exact range, one muscle of a small
# test network clipped on replayed hub frames (int8-vs-float R² 0.91); the demo's network stays
# within 0.89 of its range on held-out subjects of both parts of the gate
OUTPUT_HEADROOM = 0.5


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


@dataclass(frozen=True)
class OutputGrid:
    """Per-output affine map ``(y - offset) / half_range`` of the network's outputs: the range
    they take on the calibration inputs, plus ``OUTPUT_HEADROOM``, onto [-1, 1] (the widest
    output's exactly), so that each muscle gets nearly the whole int8 output grid instead of the
    share the widest muscle leaves it."""

    offset: npt.NDArray[np.float64]
    half_range: npt.NDArray[np.float64]

    @classmethod
    def calibrated(cls, network: Any, calibration: npt.NDArray[np.float32]) -> OutputGrid:
        import torch

        with torch.inference_mode():
            out = network(torch.from_numpy(calibration)).double().numpy()
        lo, hi = out.min(axis=0), out.max(axis=0)
        own = np.maximum((hi - lo) / 2, MIN_OUTPUT_HALF_RANGE)
        half = own * (1 + OUTPUT_HEADROOM)
        widest = int(np.argmax(own))
        half[widest] = own[widest]  # spans [-1, 1]: the tensor's range
        return cls((hi + lo) / 2, half)

    def to_grid(self, h: Any) -> Any:
        import torch

        offset, half = (torch.as_tensor(v, dtype=h.dtype) for v in (self.offset, self.half_range))
        return (h - offset) / half

    def from_grid(self, g: Any) -> Any:
        import torch

        offset, half = (torch.as_tensor(v, dtype=g.dtype) for v in (self.offset, self.half_range))
        return g * half + offset


def fold_output_grid(network: Any, grid: OutputGrid) -> None:
    """Fold the grid into the network's last layer, in place: its outputs become grid values."""
    import torch

    last, _ = _blocks(network)[-1]
    with torch.no_grad():
        half = torch.as_tensor(grid.half_range, dtype=last.weight.dtype)
        offset = torch.as_tensor(grid.offset, dtype=last.weight.dtype)
        last.weight /= half[:, None]
        last.bias.copy_((last.bias - offset) / half)


def spec_after_fold(spec: FeatureSpec, grid: OutputGrid) -> FeatureSpec:
    """The feature spec of a network whose outputs were folded onto ``grid``: the output
    normalisation composed with the grid (forces of the same inputs are unchanged)."""
    norm = spec.output_normalisation
    scale, offset = np.asarray(norm.scale), np.asarray(norm.offset)
    composed = Normalisation(
        offset=tuple(float(v) for v in grid.offset * scale + offset),
        scale=tuple(float(v) for v in grid.half_range * scale),
        method="range",
    )
    return dataclasses.replace(spec, output_normalisation=composed)


def activation_ranges(
    network: Any, calibration: npt.NDArray[np.float32], grid: OutputGrid | None = None
) -> list[tuple[float, float]]:
    """Min/max (widened to include 0) of the input and of every block's output, float pass;
    the last block's on ``grid`` (when given), as the folded network will have them."""
    import torch

    blocks = _blocks(network)
    with torch.inference_mode():
        h = torch.from_numpy(calibration)
        ranges = [(min(0.0, float(h.min())), max(0.0, float(h.max())))]
        for k, (linear, relu) in enumerate(blocks, start=1):
            h = linear(h)
            if relu:
                h = torch.relu(h)
            seen = grid.to_grid(h) if grid is not None and k == len(blocks) else h
            ranges.append((min(0.0, float(seen.min())), max(0.0, float(seen.max()))))
    return ranges


def _fake_quant_activation(h: Any, lo: float, hi: float) -> Any:
    import torch

    q = TensorQuantisation.from_range(lo, hi)
    return torch.fake_quantize_per_tensor_affine(h, q.scale, q.zero_point, -128, 127)


def _fake_quant_weight(w: Any) -> Any:
    import torch

    scale = (w.detach().abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def int8_forward(
    network: Any, x: Any, ranges: list[tuple[float, float]], grid: OutputGrid | None = None
) -> Any:
    """The network's output with the int8 arithmetic simulated (differentiable, STE); with a
    ``grid``, the output is quantised on it (``ranges`` from ``activation_ranges`` with the same
    grid) and returned in the network's own output units."""
    import torch

    blocks = _blocks(network)
    h = _fake_quant_activation(x, *ranges[0])
    for k, (linear, relu) in enumerate(blocks, start=1):
        h = torch.nn.functional.linear(h, _fake_quant_weight(linear.weight), linear.bias)
        if relu:
            h = torch.relu(h)
        if grid is not None and k == len(blocks):
            return grid.from_grid(_fake_quant_activation(grid.to_grid(h), *ranges[k]))
        h = _fake_quant_activation(h, *ranges[k])
    return h
