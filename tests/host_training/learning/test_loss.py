"""The training loss: the sqrt-space error, plus the force-space term that R² judges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_runtime.contracts.feature_spec import FeatureSpec, Normalisation
from host_training.errors import TrainingError
from host_training.learning.loss import TrainingLoss


def _spec(transform: str = "sqrt") -> FeatureSpec:
    return FeatureSpec(
        features=("neck_extension_rad", "head_mass_kg"),
        outputs=("a", "b"),
        input_normalisation=Normalisation((0.0, 4.0), (1.0, 1.0), "range"),
        output_normalisation=Normalisation((3.0, 1.0), (2.0, 0.5), "standard"),
        output_transform=transform,
        input_transforms=("identity", "identity"),
        input_range=((-1.0, 1.0), (3.0, 5.0)),
    )


def test_without_the_force_term_it_is_the_mean_squared_error() -> None:
    loss = TrainingLoss.of(_spec(), np.array([10.0, 1.0]), 0.0)
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    assert loss.numpy(p, t) == pytest.approx(np.mean((p - t) ** 2))
    assert float(loss.torch(torch.tensor(p), torch.tensor(t))) == pytest.approx(loss.numpy(p, t))


def test_the_force_term_is_the_force_error_in_standard_deviations() -> None:
    spec = _spec()
    sd = np.array([10.0, 1.0])
    loss = TrainingLoss.of(spec, sd, 2.0)
    # outputs -> sqrt force 3 + 2y (muscle a), 1 + 0.5y (b); negative sqrt force is no force
    p = np.array([[0.5, 0.0], [-2.0, 4.0]])
    t = np.array([[0.0, 0.0], [0.0, 2.0]])
    forces_p = np.array([[16.0, 1.0], [0.0, 9.0]])
    forces_t = np.array([[9.0, 1.0], [9.0, 4.0]])
    np.testing.assert_allclose(spec.forces_from_outputs(p), forces_p)
    expected = np.mean((p - t) ** 2) + 2.0 * np.mean(((forces_p - forces_t) / sd) ** 2)
    assert loss.numpy(p, t) == pytest.approx(expected)
    predicted = torch.tensor(p, requires_grad=True)
    got = loss.torch(predicted, torch.tensor(t))
    assert float(got.detach()) == pytest.approx(expected)
    got.backward()  # differentiable, and no gradient through a clipped (negative) sqrt force
    assert predicted.grad is not None and np.isfinite(predicted.grad.numpy()).all()


def test_the_force_term_pulls_large_forces_harder() -> None:
    """The same sqrt-space error costs more at a large force than at a small one."""
    loss = TrainingLoss.of(_spec(), np.array([1.0, 1.0]), 1.0)
    small, large = np.array([[-1.0, 0.0]]), np.array([[2.0, 0.0]])
    assert loss.numpy(large + 0.1, large) > loss.numpy(small + 0.1, small)


def test_a_force_term_needs_sqrt_outputs() -> None:
    with pytest.raises(TrainingError, match="sqrt output transform"):
        TrainingLoss.of(_spec("identity"), np.array([1.0, 1.0]), 1.0)
    assert TrainingLoss.of(_spec("identity"), np.array([1.0, 1.0]), 0.0).force_weight == 0.0
