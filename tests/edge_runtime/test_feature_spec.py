"""The feature spec contract: order, units, transforms, normalisation and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.feature_spec import (
    DEFAULT_FEATURES,
    FeatureSpec,
    FeatureSpecError,
    Normalisation,
    TensorQuantisation,
    columns_matrix,
    default_input_transforms,
    feature_matrix,
    unit_of,
)

PROFILE = Anthropometrics(sex="female", stature_m=1.65, body_mass_kg=62.0, neck_length_m=0.11,
                          shoulder_width_m=0.36, head_mass_kg=4.0)  # fmt: skip


def make_spec(n_out: int = 3) -> FeatureSpec:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, len(DEFAULT_FEATURES))) * 3
    y = rng.random((500, n_out)) * 50
    return FeatureSpec(
        features=DEFAULT_FEATURES,
        outputs=tuple(f"m{i}" for i in range(n_out)),
        input_normalisation=Normalisation.fit(x, "range"),
        output_normalisation=Normalisation.fit(np.sqrt(y)),
        input_range=tuple((float(a), float(b)) for a, b in zip(x.min(0), x.max(0), strict=True)),
        input_transforms=default_input_transforms(DEFAULT_FEATURES),
    )


def test_units_and_order() -> None:
    assert DEFAULT_FEATURES[:3] == ("neck_extension_rad", "neck_lateral_bend_right_rad",
                                    "neck_axial_rotation_left_rad")  # fmt: skip
    assert [unit_of(f) for f in DEFAULT_FEATURES] == (
        ["rad"] * 3 + ["rad/s"] * 3 + ["rad/s^2"] * 3 + ["m", "m", "kg", "kg"]
    )
    assert default_input_transforms(DEFAULT_FEATURES).count("signed_sqrt") == 3
    with pytest.raises(FeatureSpecError, match="unit suffix"):
        unit_of("neck_extension_deg")


def test_round_trip_and_malformed() -> None:
    spec = make_spec()
    again = FeatureSpec.from_dict(spec.to_dict())
    assert again == spec
    d = spec.to_dict()
    d["features"] = d["features"][:-1]
    with pytest.raises(FeatureSpecError, match="input normalisation has 13 entries for 12"):
        FeatureSpec.from_dict(d)
    d = spec.to_dict()
    d["output_transform"] = "log"
    with pytest.raises(FeatureSpecError, match="output transform 'log'"):
        FeatureSpec.from_dict(d)
    d = spec.to_dict()
    del d["input_normalisation"]
    with pytest.raises(FeatureSpecError, match="input_normalisation"):
        FeatureSpec.from_dict(d)
    with pytest.raises(FeatureSpecError, match="positive"):
        Normalisation((0.0,), (0.0,))


def test_transforms_invert_and_keep_forces_non_negative() -> None:
    spec = make_spec()
    forces = np.array([[0.0, 1.5, 40.0], [3.0, 0.0, 0.25]])
    np.testing.assert_allclose(spec.forces_from_outputs(spec.targets_from_forces(forces)), forces,
                               atol=1e-4)  # fmt: skip
    # A network output below sqrt(0) still means zero force, never a negative one.
    assert (spec.forces_from_outputs(np.full((1, 3), -50.0)) == 0).all()
    x = np.zeros((1, 13))
    x[0, 6] = 4.0  # an acceleration: signed sqrt before normalisation
    x[0, 7] = -9.0
    expected = (np.array([2.0, -3.0]) - np.array(spec.input_normalisation.offset[6:8])) / np.array(
        spec.input_normalisation.scale[6:8]
    )
    np.testing.assert_allclose(spec.model_inputs(x)[0, 6:8], expected, rtol=1e-6)


def test_range_normalisation_fills_unit_interval() -> None:
    v = np.array([[0.0, -5.0], [10.0, 5.0], [5.0, 0.0]])
    n = Normalisation.fit(v, "range", range_margin=0.0)
    np.testing.assert_allclose(n.apply(v).min(0), [-1, -1])
    np.testing.assert_allclose(n.apply(v).max(0), [1, 1])
    np.testing.assert_allclose(n.invert(n.apply(v)), v, atol=1e-6)


def test_hub_features_equal_dataset_columns() -> None:
    rng = np.random.default_rng(1)
    neck = rng.normal(size=(20, 9))
    x = feature_matrix(neck, PROFILE)
    names = DEFAULT_FEATURES[:9]
    columns = {n: neck[:, j] for j, n in enumerate(names)}
    columns.update({n: np.full(20, getattr(PROFILE, n)) for n in DEFAULT_FEATURES[9:]})
    np.testing.assert_array_equal(x, columns_matrix(columns, DEFAULT_FEATURES))
    assert x[0, DEFAULT_FEATURES.index("head_mass_kg")] == 4.0
    with pytest.raises(FeatureSpecError, match=r"missing input columns: \['body_mass_kg'\]"):
        columns_matrix({k: v for k, v in columns.items() if k != "body_mass_kg"}, DEFAULT_FEATURES)
    columns["neck_length_m"] = np.full(20, np.nan)
    with pytest.raises(FeatureSpecError, match=r"non-finite values in input columns.*neck_length"):
        columns_matrix(columns, DEFAULT_FEATURES)
    with pytest.raises(FeatureSpecError, match=r"\(N, 9\)"):
        feature_matrix(neck[:, :8], PROFILE)


def test_out_of_range_counts() -> None:
    spec = make_spec()
    x = np.array([[r[0] for r in spec.input_range], [r[1] + 1 for r in spec.input_range]])
    counts = spec.out_of_range(x)
    assert counts == {f: 1 for f in DEFAULT_FEATURES}
    assert spec.out_of_range(x[:1]) == {}


def test_tensor_quantisation_saturates_and_round_trips() -> None:
    q = TensorQuantisation(scale=0.1, zero_point=-3)
    values = np.array([-20.0, -0.3, 0.0, 0.26, 100.0])
    codes = q.quantise(values)
    assert codes.dtype == np.int8 and codes[0] == -128 and codes[-1] == 127
    np.testing.assert_allclose(q.dequantise(codes)[1:4], [-0.3, 0.0, 0.3], atol=1e-6)
    with pytest.raises(FeatureSpecError, match="zero_point=300"):
        TensorQuantisation.from_dict({"scale": 0.1, "zero_point": 300})


def test_tensor_quantisation_from_a_calibrated_range() -> None:
    """TFLite's calibration: the range widened to include 0, 256 steps, 0 exactly representable."""
    q = TensorQuantisation.from_range(-1.0, 3.0)
    assert q.scale == pytest.approx(4.0 / 255) and q.zero_point == -64
    assert q.dequantise(q.quantise(np.array([0.0])))[0] == 0.0
    np.testing.assert_allclose(
        q.dequantise(q.quantise(np.array([-1.0, 3.0]))), [-1, 3], atol=q.scale
    )
    positive = TensorQuantisation.from_range(0.5, 2.0)  # a ReLU's range: from 0, not 0.5
    assert positive.scale == pytest.approx(2.0 / 255) and positive.zero_point == -128
