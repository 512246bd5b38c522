"""The network module: one description of the architecture, round-tripped through the weights
file, and refused when the file and the feature spec disagree."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.training_run import RunLayout, RunManifest
from host_training.learning.network import (
    NetworkConfig,
    NetworkError,
    forces_of_rows,
    load_weights,
    save_weights,
)


def test_the_architecture_is_the_config_and_the_manifest_records_it() -> None:
    config = NetworkConfig((32, 16))
    network = config.build(n_inputs=7, n_outputs=3)
    linear = [layer for layer in network if hasattr(layer, "in_features")]
    widths = [(layer.in_features, layer.out_features) for layer in linear]
    assert widths == [(7, 32), (32, 16), (16, 3)]
    assert config.to_dict() == {"kind": "mlp", "hidden_units": [32, 16], "activation": "relu",
                                "onnx_opset": 17}  # fmt: skip


@pytest.mark.parametrize("bad", [{"hidden_units": ()}, {"hidden_units": (8, 0)},
                                 {"activation": "tanh"}])  # fmt: skip
def test_an_architecture_the_int8_path_cannot_run_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(NetworkError):
        NetworkConfig(**bad)  # type: ignore[arg-type]


def test_weights_round_trip_and_a_reordered_spec_is_refused(
    learning_run: Path, tmp_path: Path
) -> None:
    spec = RunManifest.read(RunLayout(learning_run)).spec
    config = NetworkConfig((8,))
    network = config.build(spec.n_inputs, len(spec.outputs))
    path = tmp_path / "weights.pt"
    save_weights(network, config, spec, path)
    loaded = load_weights(path, spec)
    x = np.array([[(lo + hi) / 2 for lo, hi in spec.input_range]] * 4, dtype=np.float32)
    np.testing.assert_array_equal(forces_of_rows(loaded, spec, x), forces_of_rows(network, spec, x))

    swapped = list(spec.features)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    reordered = dataclasses.replace(spec, features=tuple(swapped))
    with pytest.raises(NetworkError, match="another order"):
        load_weights(path, reordered)
