"""The muscle-force network: its architecture, weights file and ONNX export, in one place.

A plain ReLU MLP: standardised inputs -> hidden layers -> standardised sqrt(force) per muscle.
Linear + ReLU is what int8 full-integer TFLite runs exactly (the hub's op set) and what
``learning.qat`` simulates; normalisation lives outside the network, in the feature spec.

    x (n_inputs) -> [Linear(width) -> ReLU] x len(hidden_units) -> Linear(n_outputs) -> y

Everything that describes the network is in ``NetworkConfig``: training builds from it, the run
manifest records it (``architecture``), the weights file carries it, and loading rebuilds from it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import FeatureSpec
from host_training.errors import HostTrainingError

ONNX_OPSET = 17  # what onnx2tf converts cleanly with the TorchScript exporter


class NetworkError(HostTrainingError, ValueError):
    """A network's weights file cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class NetworkConfig:
    hidden_units: tuple[int, ...] = (256, 256, 256)
    activation: str = "relu"  # the only one the int8 path (qat, converter, hub op set) supports
    kind: str = "mlp"

    def __post_init__(self) -> None:
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise NetworkError(f"hidden_units {self.hidden_units}: at least one layer of >= 1")
        if (self.kind, self.activation) != ("mlp", "relu"):
            raise NetworkError(f"unsupported network {self.kind}/{self.activation} (mlp/relu)")

    def to_dict(self) -> dict[str, Any]:
        """The run manifest's ``architecture``."""
        return {"kind": self.kind, "hidden_units": list(self.hidden_units),
                "activation": self.activation, "onnx_opset": ONNX_OPSET}  # fmt: skip

    def build(self, n_inputs: int, n_outputs: int) -> Any:
        """A freshly initialised ``torch.nn.Sequential`` (torch's default initialisation)."""
        import torch

        layers: list[Any] = []
        width = n_inputs
        for units in self.hidden_units:
            layers += [torch.nn.Linear(width, units), torch.nn.ReLU()]
            width = units
        layers.append(torch.nn.Linear(width, n_outputs))
        return torch.nn.Sequential(*layers)


def predict(network: Any, x_std: npt.NDArray[np.float32], batch: int = 65536) -> npt.NDArray[Any]:
    """Standardised outputs of the network for standardised inputs, in batches."""
    import torch

    network.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x_std), batch):
            outs.append(network(torch.from_numpy(x_std[i : i + batch])).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def forces_of_rows(network: Any, spec: FeatureSpec, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Forces (N) from raw inputs: standardise, run, de-standardise."""
    outputs = predict(network, spec.model_inputs(x))
    return spec.forces_from_outputs(outputs).astype(np.float32)


def save_weights(network: Any, config: NetworkConfig, spec: FeatureSpec, path: Path) -> None:
    """The weights with what rebuilds them: the architecture and the input columns' order."""
    import torch

    torch.save(
        {
            "state_dict": network.state_dict(),
            "hidden_units": list(config.hidden_units),
            "n_inputs": spec.n_inputs,
            "n_outputs": len(spec.outputs),
            "features": list(spec.features),  # the column order the weights expect
        },
        path,
    )


def load_weights(path: Path, spec: FeatureSpec) -> Any:
    """The network saved by ``save_weights``, checked against ``spec`` (shape, column order,
    finite weights and forces); a damaged or mismatched file is a ``NetworkError``."""
    import torch

    try:  # torch raises many types for a damaged file (UnpicklingError, zip errors, ...)
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict):
            raise TypeError(f"a {type(saved).__name__}, not the saved network")
        config = NetworkConfig(tuple(saved["hidden_units"]))
        network = config.build(saved["n_inputs"], saved["n_outputs"])
        network.load_state_dict(saved["state_dict"])
    except Exception as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise NetworkError(f"{path}: the weights cannot be loaded ({first})") from None
    if not all(torch.isfinite(v).all() for v in network.state_dict().values()):
        raise NetworkError(f"{path}: the weights hold non-finite values")
    trained_on = saved.get("features")
    if trained_on is not None and tuple(trained_on) != spec.features:
        raise NetworkError(
            f"{path}: the feature spec lists the inputs in another order than the weights were "
            "trained on (the manifest was edited?)"
        )
    if (saved["n_inputs"], saved["n_outputs"]) != (spec.n_inputs, len(spec.outputs)):
        raise NetworkError(f"{path}: the weights' shape does not match the feature spec")
    middle = np.array([[(lo + hi) / 2 for lo, hi in spec.input_range]], dtype=np.float32)
    if not np.isfinite(forces_of_rows(network, spec, middle)).all():
        raise NetworkError(f"{path}: the network gives non-finite forces")
    return network


def export_onnx(network: Any, n_inputs: int, path: Path) -> None:
    """ONNX (opset ``ONNX_OPSET``, dynamic batch; the legacy TorchScript exporter, which onnx2tf
    reads)."""
    import torch

    network.eval()
    dummy = torch.zeros(1, n_inputs)
    with warnings.catch_warnings():
        # Deliberate: the TorchScript exporter's graphs are what onnx2tf 1.29 converts cleanly;
        # it announces its own deprecation (and that of helpers it calls) on every export.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
