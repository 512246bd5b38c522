"""The int8 simulation's output grid: each muscle's output mapped onto the whole int8 grid, folded
into the network and the feature spec without changing a single force."""

from __future__ import annotations

import numpy as np
import torch

from edge_runtime.contracts.feature_spec import FeatureSpec, Normalisation
from host_training.learning.network import NetworkConfig
from host_training.learning.qat import (
    MIN_OUTPUT_HALF_RANGE,
    OUTPUT_HEADROOM,
    OutputGrid,
    activation_ranges,
    fold_output_grid,
    int8_forward,
    spec_after_fold,
)

N_OUT = 3


def _spec() -> FeatureSpec:
    return FeatureSpec(
        features=("neck_extension_rad", "head_mass_kg"),
        outputs=("wide", "narrow", "silent"),
        input_normalisation=Normalisation((0.0, 4.0), (1.0, 1.0), "range"),
        output_normalisation=Normalisation((3.0, 1.0, 0.5), (2.0, 0.5, 0.1), "standard"),
        output_transform="sqrt",
        input_transforms=("identity", "identity"),
        input_range=((-1.0, 1.0), (3.0, 5.0)),
    )


def _network() -> torch.nn.Sequential:
    """Outputs of very different spans, as the muscles' standardised sqrt forces have: the first
    spans 40 times the second, the third never moves."""
    torch.manual_seed(0)
    net = NetworkConfig((16, 16)).build(2, N_OUT)
    with torch.no_grad():
        last = net[-1]
        last.weight[0] *= 40.0
        last.weight[2] = 0.0
        last.bias[2] = -0.3
    return net


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 2)).astype(np.float32)


def test_folding_changes_no_force_and_fills_the_grid() -> None:
    net, spec = _network(), _spec()
    calib, x = _inputs(2000, 1), _inputs(500, 2)
    with torch.inference_mode():
        before = spec.forces_from_outputs(net(torch.from_numpy(x)).numpy())
    grid = OutputGrid.calibrated(net, calib)
    fold_output_grid(net, grid)
    folded = spec_after_fold(spec, grid)
    with torch.inference_mode():
        after = folded.forces_from_outputs(net(torch.from_numpy(x)).numpy())
        on_calib = net(torch.from_numpy(calib)).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-6)
    # on the calibration inputs the widest output spans exactly [-1, 1] (the tensor's range), the
    # narrow one the same less its headroom; the silent one sits at 0
    np.testing.assert_allclose([on_calib[:, 0].min(), on_calib[:, 0].max()], [-1, 1], atol=1e-5)
    narrow = 1 / (1 + OUTPUT_HEADROOM)
    np.testing.assert_allclose([on_calib[:, 1].min(), on_calib[:, 1].max()], [-narrow, narrow],
                               atol=1e-5)  # fmt: skip
    assert grid.half_range[2] == MIN_OUTPUT_HALF_RANGE * (1 + OUTPUT_HEADROOM)
    assert np.abs(on_calib[:, 2]).max() < 1e-3
    assert folded.output_normalisation.method == "range"
    assert FeatureSpec.from_dict(folded.to_dict()) == folded


def test_the_simulated_grid_is_the_folded_models_grid() -> None:
    """int8 simulated on the grid, before folding, is the folded network's plain int8 simulation
    mapped back: what fine-tuning sees is what the converter will make."""
    net, calib, x = _network(), _inputs(2000, 1), torch.from_numpy(_inputs(500, 2))
    grid = OutputGrid.calibrated(net, calib)
    with torch.inference_mode():
        on_grid = int8_forward(net, x, activation_ranges(net, calib, grid), grid).numpy()
        fold_output_grid(net, grid)
        folded = int8_forward(net, x, activation_ranges(net, calib)).numpy()
    np.testing.assert_allclose(on_grid, folded * grid.half_range + grid.offset, atol=1e-4)


def test_a_narrow_output_keeps_its_resolution() -> None:
    """One shared output scale leaves the narrow output 1/40 of the steps; its own grid, all."""
    net, calib, x = _network(), _inputs(2000, 1), torch.from_numpy(_inputs(4000, 2))
    grid = OutputGrid.calibrated(net, calib)
    with torch.inference_mode():
        exact = net(x).numpy()
        shared = int8_forward(net, x, activation_ranges(net, calib)).numpy()
        own = int8_forward(net, x, activation_ranges(net, calib, grid), grid).numpy()
    narrow_shared = np.sqrt(np.mean((shared[:, 1] - exact[:, 1]) ** 2))
    narrow_own = np.sqrt(np.mean((own[:, 1] - exact[:, 1]) ** 2))
    assert narrow_own < narrow_shared / 3
    # the wide output set the shared grid, so on its own grid it loses nothing
    wide = [np.sqrt(np.mean((y[:, 0] - exact[:, 0]) ** 2)) for y in (shared, own)]
    assert wide[1] < 1.5 * wide[0]
