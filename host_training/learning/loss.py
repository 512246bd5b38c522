"""The training loss: what the network is fitted to, in the space the network works in and in
the space its accuracy is judged in.

The network predicts standardised sqrt(force) (int8 needs it, see ``feature_spec``), and the
mean squared error of those weighs every muscle the same and every frame by its sqrt-force
error. Accuracy is judged in newtons, per muscle (R², RMSE in % of Fmax): a sqrt-space error
``e`` at force ``F`` is a force error of about ``2·sqrt(F)·e``, so the sqrt-space loss alone
under-weighs the large forces that decide a muscle's R². ``force_weight`` adds the mean squared
force error, each muscle scaled by its force's standard deviation over the training rows (so
every muscle still weighs the same, as R² weighs them):

    loss = mean((y_hat - y)²) + force_weight · mean(((F_hat - F) / sd_F)²)

with ``F = max(0, y·scale + offset)²`` (``FeatureSpec.forces_from_outputs``). ``force_weight``
0 is the sqrt-space loss alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import FeatureSpec
from host_training.errors import TrainingError


class TrainingLoss:
    """The loss of one run: built once (``of``), then called on every minibatch (``torch``)
    and on the validation rows (``numpy``)."""

    def __init__(self, spec: FeatureSpec, force_sd_n: npt.NDArray[Any], force_weight: float):
        if spec.output_transform != "sqrt" and force_weight:
            # identity outputs: the sqrt-space term already is the force term
            raise TrainingError("a force-space loss term needs the sqrt output transform")
        self.spec, self.force_weight = spec, force_weight
        self.force_sd_n = np.maximum(np.asarray(force_sd_n, np.float64), 1e-3)
        self._tensors: tuple[Any, Any, Any] | None = None  # offset, scale, sd, made once

    @classmethod
    def of(
        cls, spec: FeatureSpec, force_sd_n: npt.NDArray[Any], force_weight: float
    ) -> TrainingLoss:
        return cls(spec, force_sd_n, force_weight)

    def torch(self, predicted: Any, target: Any) -> Any:
        """The loss of a batch (torch tensors of standardised outputs), differentiable."""
        import torch

        loss = torch.nn.functional.mse_loss(predicted, target)
        if not self.force_weight:
            return loss
        if self._tensors is None or self._tensors[0].dtype != predicted.dtype:
            norm = self.spec.output_normalisation
            self._tensors = tuple(  # type: ignore[assignment]
                torch.as_tensor(np.asarray(v, np.float64), dtype=predicted.dtype)
                for v in (norm.offset, norm.scale, self.force_sd_n)
            )
        offset, scale, sd = self._tensors  # type: ignore[misc]
        forces = [torch.relu(v * scale + offset) ** 2 for v in (predicted, target)]
        return loss + self.force_weight * torch.mean(((forces[0] - forces[1]) / sd) ** 2)

    def numpy(self, predicted: npt.NDArray[Any], target: npt.NDArray[Any]) -> float:
        """The same loss of arrays (validation), in float64."""
        p, t = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
        loss = float(np.mean((p - t) ** 2))
        if not self.force_weight:
            return loss
        forces = [self.spec.forces_from_outputs(v) for v in (p, t)]
        return loss + self.force_weight * float(
            np.mean(((forces[0] - forces[1]) / self.force_sd_n) ** 2)
        )
