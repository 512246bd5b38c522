"""The muscle-force network's inputs and outputs: one definition for training, quantisation and
the hub.

Inputs are the three neck angles with their first and second time derivatives (from the
head-on-trunk rotation of two fused IMUs) and the four anthropometrics that personalisation
turns into physics: neck length (geometry), shoulder width (girdle attachments), head mass (the
load) and body mass (muscle strength). Sex and stature are deliberately absent: they do not
enter the personalised model, so as inputs they could only let the network fit noise.

Static optimisation is memoryless (forces depend on the current angles, velocities and
accelerations only), so the model needs no history window: ``history_frames`` is 1.

Normalisation sits outside the network (int8 accuracy collapses when it is folded in):
``x_std = (x - mean) / std`` before the model and ``y = y_std * std + mean`` after it, in float.
The int8 model's input and output tensors carry their own affine quantisation (scale, zero point).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.neck_angles import (
    NECK_ACCELERATION_NAMES,
    NECK_ANGLE_NAMES,
    NECK_VELOCITY_NAMES,
)

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
Int8Array = npt.NDArray[np.int8]

FEATURE_SPEC_VERSION = 1
ANTHROPOMETRIC_FEATURES: tuple[str, ...] = (
    "neck_length_m",
    "shoulder_width_m",
    "head_mass_kg",
    "body_mass_kg",
)
_UNITS = {"_rad_s2": "rad/s^2", "_rad_s": "rad/s", "_rad": "rad", "_m": "m", "_kg": "kg"}


class FeatureSpecError(ContractError):
    """A feature spec, normalisation or feature matrix that does not fit the contract."""


def unit_of(name: str) -> str:
    """The unit a feature's name carries (names end in their unit)."""
    for suffix, unit in _UNITS.items():
        if name.endswith(suffix):
            return unit
    raise FeatureSpecError(f"feature {name!r} does not end in a known unit suffix {sorted(_UNITS)}")


NORMALISATION_METHODS = ("standard", "range")


@dataclass(frozen=True)
class Normalisation:
    """Per-column affine map ``x_norm = (x - offset) / scale``, fitted on the training split.

    ``standard``: offset = mean, scale = standard deviation. ``range``: offset = mid-range,
    scale = half-range (plus a margin), so every column fills about [-1, 1]. A trained run's
    outputs end in the range form: an int8 output tensor has one scale for all 72 muscles, and
    forces are spiky (a muscle's maximum can be 30 standard deviations above its mean), so
    standardised outputs would give the quieter muscles only a few quantisation steps (training
    fits standardised outputs, then folds each muscle's range into the network:
    ``host_training.learning.qat.OutputGrid``)."""

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    method: str = "standard"

    def __post_init__(self) -> None:
        if len(self.offset) != len(self.scale):
            raise FeatureSpecError(f"{len(self.offset)} offsets but {len(self.scale)} scales")
        if not all(np.isfinite(self.offset)) or not all(
            s > 0 and np.isfinite(s) for s in self.scale
        ):
            raise FeatureSpecError("normalisation needs finite offsets and positive finite scales")
        if self.method not in NORMALISATION_METHODS:
            raise FeatureSpecError(
                f"normalisation method {self.method!r}, known: {NORMALISATION_METHODS}"
            )

    @classmethod
    def fit(
        cls,
        values: npt.NDArray[Any],
        method: str = "standard",
        min_scale: float = 1e-6,
        range_margin: float = 0.02,
    ) -> Normalisation:
        return cls.from_statistics(
            method,
            mean=values.mean(axis=0, dtype=np.float64),
            std=values.std(axis=0, dtype=np.float64),
            lo=values.min(axis=0).astype(np.float64),
            hi=values.max(axis=0).astype(np.float64),
            min_scale=min_scale,
            range_margin=range_margin,
        )

    @classmethod
    def from_statistics(
        cls,
        method: str,
        mean: npt.NDArray[Any],
        std: npt.NDArray[Any],
        lo: npt.NDArray[Any],
        hi: npt.NDArray[Any],
        min_scale: float = 1e-6,
        range_margin: float = 0.02,
    ) -> Normalisation:
        """From per-column statistics gathered elsewhere (a dataset read shard by shard)."""
        if method == "standard":
            offset, scale = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        elif method == "range":
            lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
            offset, scale = (hi + lo) / 2, (hi - lo) / 2 * (1 + range_margin)
        else:
            raise FeatureSpecError(
                f"normalisation method {method!r}, known: {NORMALISATION_METHODS}"
            )
        scale = np.maximum(scale, min_scale)
        return cls(tuple(float(v) for v in offset), tuple(float(v) for v in scale), method)

    def apply(self, values: npt.NDArray[Any]) -> Float32Array:
        return ((values - np.asarray(self.offset)) / np.asarray(self.scale)).astype(np.float32)

    def invert(self, normalised: npt.NDArray[Any]) -> FloatArray:
        return np.asarray(normalised, dtype=np.float64) * np.asarray(self.scale) + np.asarray(
            self.offset
        )

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "offset": list(self.offset), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalisation:
        try:
            return cls(
                tuple(float(v) for v in d["offset"]),
                tuple(float(v) for v in d["scale"]),
                str(d["method"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureSpecError(f"normalisation is malformed: {exc!r}") from exc


@dataclass(frozen=True)
class TensorQuantisation:
    """Affine int8 quantisation of one model tensor: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int

    def quantise(self, real: npt.NDArray[Any]) -> Int8Array:
        q = np.round(np.asarray(real, dtype=np.float64) / self.scale + self.zero_point)
        return np.clip(q, -128, 127).astype(np.int8)

    def dequantise(self, q: npt.NDArray[Any]) -> Float32Array:
        return ((q.astype(np.float32) - self.zero_point) * np.float32(self.scale)).astype(
            np.float32
        )

    def to_dict(self) -> dict[str, float | int]:
        return {"scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_range(cls, lo: float, hi: float) -> TensorQuantisation:
        """The quantisation TFLite calibrates for values seen in [lo, hi]: the range widened to
        include 0 (so that 0 is exact), 256 steps over it."""
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max(hi - lo, 1e-8) / 255.0
        return cls(scale, int(np.clip(round(-128 - lo / scale), -128, 127)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorQuantisation:
        try:
            scale, zero_point = float(d["scale"]), int(d["zero_point"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureSpecError(f"tensor quantisation is malformed: {exc}") from exc
        if not (scale > 0 and np.isfinite(scale)) or not -128 <= zero_point <= 127:
            raise FeatureSpecError(f"tensor quantisation scale={scale}, zero_point={zero_point}")
        return cls(scale, zero_point)


# Output transforms, applied to forces before normalisation. "sqrt": the network predicts
# sqrt(force / 1 N). Muscle forces are >= 0 and spiky (near zero most of the time, occasionally
# large); in sqrt space the int8 output grid is fine near zero and the quantisation noise of the
# rare peaks is a small fraction of their size, so int8 loses far less R² than on raw forces.
OUTPUT_TRANSFORMS = ("identity", "sqrt")
# Input transforms, applied per feature before normalisation. "signed_sqrt" (sign(a) sqrt|a|) is
# for the angular accelerations: heavy-tailed (fast strokes), so on a linear int8 grid the
# everyday small accelerations would get only a few steps; forces depend smoothly on a = s|s|.
INPUT_TRANSFORMS = ("identity", "signed_sqrt")


def apply_input_transforms(x: npt.NDArray[Any], transforms: Sequence[str]) -> FloatArray:
    """Raw inputs (N, F) -> per-feature transformed values (what the normalisation is fit on)."""
    t = np.array(x, dtype=np.float64)
    for j, kind in enumerate(transforms):
        if kind == "signed_sqrt":
            t[:, j] = np.sign(t[:, j]) * np.sqrt(np.abs(t[:, j]))
    return t


def default_input_transforms(features: Sequence[str]) -> tuple[str, ...]:
    return tuple("signed_sqrt" if f.endswith("_rad_s2") else "identity" for f in features)


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered, named, unit-carrying model inputs and outputs, with their standardisation and the
    training range of every input (the hub warns when a wearer's input leaves it)."""

    features: tuple[str, ...]
    outputs: tuple[str, ...]  # muscle names; outputs are forces in N
    input_normalisation: Normalisation
    output_normalisation: Normalisation
    input_range: tuple[tuple[float, float], ...]  # (min, max) per feature on the training split
    output_transform: str = "sqrt"
    input_transforms: tuple[str, ...] = ()  # per feature; () means identity for all
    history_frames: int = 1
    version: int = FEATURE_SPEC_VERSION

    def __post_init__(self) -> None:
        n_in, n_out = len(self.features), len(self.outputs)
        for what, size, expected in (
            ("input normalisation", len(self.input_normalisation.offset), n_in),
            ("output normalisation", len(self.output_normalisation.offset), n_out),
            ("input range", len(self.input_range), n_in),
        ):
            if size != expected:
                raise FeatureSpecError(f"{what} has {size} entries for {expected} columns")
        for name in self.features:
            unit_of(name)
        if self.input_transforms and len(self.input_transforms) != n_in:
            raise FeatureSpecError(
                f"{len(self.input_transforms)} input transforms for {n_in} features"
            )
        unknown = sorted(set(self.input_transforms) - set(INPUT_TRANSFORMS))
        if unknown:
            raise FeatureSpecError(f"input transforms {unknown}, known: {INPUT_TRANSFORMS}")
        if self.output_transform not in OUTPUT_TRANSFORMS:
            raise FeatureSpecError(
                f"output transform {self.output_transform!r}, known: {OUTPUT_TRANSFORMS}"
            )
        if self.history_frames != 1:
            raise FeatureSpecError(f"history_frames {self.history_frames}: only 1 is supported")
        if self.version != FEATURE_SPEC_VERSION:
            raise FeatureSpecError(
                f"feature spec version {self.version}; this software reads {FEATURE_SPEC_VERSION}"
            )

    @property
    def n_inputs(self) -> int:
        return len(self.features)

    def model_inputs(self, x: npt.NDArray[Any]) -> Float32Array:
        """Raw inputs (N, F) in spec order and units -> the network's float32 inputs."""
        return self.input_normalisation.apply(apply_input_transforms(x, self.input_transforms))

    def targets_from_forces(self, forces_n: npt.NDArray[Any]) -> Float32Array:
        """Forces (N) -> the network's normalised targets (training side)."""
        f = np.asarray(forces_n, dtype=np.float64)
        t = np.sqrt(np.maximum(f, 0.0)) if self.output_transform == "sqrt" else f
        return self.output_normalisation.apply(t)

    def forces_from_outputs(self, outputs: npt.NDArray[Any]) -> FloatArray:
        """The network's normalised outputs -> forces (N), >= 0 for the sqrt transform."""
        t = self.output_normalisation.invert(outputs)
        return np.square(np.maximum(t, 0.0)) if self.output_transform == "sqrt" else t

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "output_transform": self.output_transform,
            "input_transforms": list(self.input_transforms),
            "history_frames": self.history_frames,
            "features": [{"name": n, "unit": unit_of(n)} for n in self.features],
            "outputs": [{"name": m, "unit": "N"} for m in self.outputs],
            "input_normalisation": self.input_normalisation.to_dict(),
            "output_normalisation": self.output_normalisation.to_dict(),
            "input_range": [list(r) for r in self.input_range],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        try:
            return cls(
                features=tuple(str(f["name"]) for f in d["features"]),
                outputs=tuple(str(o["name"]) for o in d["outputs"]),
                input_normalisation=Normalisation.from_dict(d["input_normalisation"]),
                output_normalisation=Normalisation.from_dict(d["output_normalisation"]),
                input_range=tuple((float(lo), float(hi)) for lo, hi in d["input_range"]),
                output_transform=str(d["output_transform"]),
                input_transforms=tuple(str(t) for t in d["input_transforms"]),
                history_frames=int(d["history_frames"]),
                version=int(d["version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureSpecError(f"feature spec is malformed: {exc!r}") from exc

    def out_of_range(self, features: npt.NDArray[Any]) -> dict[str, int]:
        """How many rows leave the training range, per feature (only features with any)."""
        lo = np.array([r[0] for r in self.input_range])
        hi = np.array([r[1] for r in self.input_range])
        outside = (features < lo) | (features > hi)
        counts = outside.sum(axis=0)
        return {n: int(c) for n, c in zip(self.features, counts, strict=True) if c}


DEFAULT_FEATURES: tuple[str, ...] = (
    *NECK_ANGLE_NAMES,
    *NECK_VELOCITY_NAMES,
    *NECK_ACCELERATION_NAMES,
    *ANTHROPOMETRIC_FEATURES,
)


def feature_matrix(
    neck: npt.NDArray[Any], profile: Anthropometrics, features: Sequence[str] = DEFAULT_FEATURES
) -> FloatArray:
    """(N, 9) neck angles, velocities, accelerations (NECK_* order) + the wearer's profile ->
    (N, F) model inputs in ``features`` order. The hub's path; training reads the same named
    columns from the dataset (``columns_matrix``)."""
    neck = np.asarray(neck, dtype=np.float64)
    if neck.ndim != 2 or neck.shape[1] != 9:
        raise FeatureSpecError(f"neck kinematics must be (N, 9), got {neck.shape}")
    columns: dict[str, FloatArray] = {
        name: neck[:, j]
        for j, name in enumerate(
            (*NECK_ANGLE_NAMES, *NECK_VELOCITY_NAMES, *NECK_ACCELERATION_NAMES)
        )
    }
    for name in ANTHROPOMETRIC_FEATURES:
        columns[name] = np.full(len(neck), float(getattr(profile, name)))
    return columns_matrix(columns, features)


def columns_matrix(columns: Mapping[str, Any], features: Sequence[str]) -> FloatArray:
    """Named columns -> (N, F) float64 in ``features`` order; a missing or non-finite column is
    named in the error."""
    missing = [f for f in features if f not in columns]
    if missing:
        raise FeatureSpecError(f"missing input columns: {missing}")
    x = np.stack([np.asarray(columns[f], dtype=np.float64) for f in features], axis=1)
    bad = [f for j, f in enumerate(features) if not np.isfinite(x[:, j]).all()]
    if bad:
        raise FeatureSpecError(f"non-finite values in input columns: {bad}")
    return x
