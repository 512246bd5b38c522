"""The personal motion envelope: how far the wearer's head can turn on the trunk, per direction.

Angles are the contract neck angles (``neck_angles.NECK_ANGLE_NAMES``: extension e, right lateral
bending b, left axial rotation r; rad). The envelope has two parts, both sampled on fixed grids so
that envelopes of different people can be interpolated node by node:

- **planar boundary**: in the (e, b) plane, at each axial-rotation level r_k, the radius R of the
  boundary along each direction theta (theta = 0 extension, pi/2 right bend, pi flexion, 3pi/2 left
  bend). Between sampled directions the boundary is the straight segment joining the two sampled
  boundary points (a polygon, so box-like envelopes with corners stay exact at their vertices);
  between axial levels it is linear, and clamped beyond the outermost levels.
- **axial limits**: at each (e, b) offset of a rectangular grid, the largest left and right axial
  rotation (positive magnitudes), bilinear between offsets and clamped outside.

An ``EnvelopeGrid`` holds envelopes on a grid over anthropometrics; ``for_subject`` interpolates
multilinearly (clamped at the grid's edges, which it reports) so a hub gets a personal envelope
without any simulation. Both are JSON-serialisable for the model bundle.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.errors import ContractError

FloatArray = npt.NDArray[np.float64]
ENVELOPE_FORMAT = "cervical-envelope/1"
ENVELOPE_GRID_FORMAT = "cervical-envelope-grid/1"
GRID_FIELDS: tuple[str, ...] = ("neck_length_m", "shoulder_width_m", "head_mass_kg", "body_mass_kg")


class EnvelopeError(ContractError, ValueError):
    """An envelope record that is malformed (names the field)."""


def _array(data: dict[str, Any], key: str, ndim: int) -> FloatArray:
    if key not in data:
        raise EnvelopeError(f"envelope: missing {key!r}")
    try:
        a = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise EnvelopeError(f"envelope: {key!r} is not numeric: {e}") from e
    if a.ndim != ndim:
        raise EnvelopeError(f"envelope: {key!r} must have {ndim} dimensions, has {a.ndim}")
    if not np.all(np.isfinite(a)):
        raise EnvelopeError(f"envelope: {key!r} holds non-finite values")
    return a


def _ascending(name: str, a: FloatArray) -> None:
    if a.size < 1 or np.any(np.diff(a) <= 0):
        raise EnvelopeError(f"envelope: {name!r} must be non-empty and strictly ascending")


def _interp_weights(grid: FloatArray, x: FloatArray) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """Lower index and weight of the upper neighbour for linear interpolation, clamped."""
    if grid.size == 1:
        return np.zeros(np.shape(x), dtype=np.intp), np.zeros(np.shape(x))
    xc = np.clip(x, grid[0], grid[-1])
    i = np.clip(np.searchsorted(grid, xc, side="right") - 1, 0, grid.size - 2)
    w = (xc - grid[i]) / (grid[i + 1] - grid[i])
    return i, w


@dataclass(frozen=True, eq=False)
class MotionEnvelope:
    """One wearer's envelope (rad). Arrays: see the module docstring."""

    planar_directions_rad: FloatArray  # (D,) evenly spaced in [0, 2 pi), first 0
    axial_levels_rad: FloatArray  # (A,) ascending
    planar_radius_rad: FloatArray  # (A, D)
    offset_extension_rad: FloatArray  # (E,) ascending
    offset_bend_rad: FloatArray  # (B,) ascending
    axial_left_rad: FloatArray  # (E, B) magnitude
    axial_right_rad: FloatArray  # (E, B) magnitude
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = self.planar_directions_rad
        expected = np.arange(d.size) * (2 * math.pi / max(d.size, 1))
        if d.size < 4 or not np.allclose(d, expected, atol=1e-9):
            raise EnvelopeError(
                "envelope: planar_directions_rad must be >= 4 evenly spaced directions from 0"
            )
        _ascending("axial_levels_rad", self.axial_levels_rad)
        _ascending("offset_extension_rad", self.offset_extension_rad)
        _ascending("offset_bend_rad", self.offset_bend_rad)
        shapes = {
            "planar_radius_rad": (self.planar_radius_rad, (self.axial_levels_rad.size, d.size)),
            "axial_left_rad": (self.axial_left_rad, self._offset_shape()),
            "axial_right_rad": (self.axial_right_rad, self._offset_shape()),
        }
        for name, (a, shape) in shapes.items():
            if a.shape != shape:
                raise EnvelopeError(f"envelope: {name!r} has shape {a.shape}, expected {shape}")
            if np.any(a < 0) or not np.all(np.isfinite(a)):
                raise EnvelopeError(f"envelope: {name!r} must hold finite radii >= 0")

    def _offset_shape(self) -> tuple[int, int]:
        return (self.offset_extension_rad.size, self.offset_bend_rad.size)

    # --- queries --------------------------------------------------------------------------------
    def planar_limit_rad(self, theta_rad: FloatArray, axial_rad: FloatArray) -> FloatArray:
        """Boundary radius in the (e, b) plane along direction theta at axial rotation r."""
        theta = np.mod(np.asarray(theta_rad, dtype=np.float64), 2 * math.pi)
        axial = np.broadcast_to(np.asarray(axial_rad, dtype=np.float64), theta.shape)
        n_dir = self.planar_directions_rad.size
        step = 2 * math.pi / n_dir
        i0 = np.floor(theta / step).astype(np.intp) % n_dir
        i1 = (i0 + 1) % n_dir
        k, w = _interp_weights(self.axial_levels_rad, axial)
        k1 = np.minimum(k + 1, self.axial_levels_rad.size - 1)

        def radius(level: npt.NDArray[np.intp]) -> FloatArray:
            r0 = self.planar_radius_rad[level, i0]
            r1 = self.planar_radius_rad[level, i1]
            a0, a1 = i0 * step, i1 * step
            p0 = np.stack([r0 * np.cos(a0), r0 * np.sin(a0)], axis=-1)
            p1 = np.stack([r1 * np.cos(a1), r1 * np.sin(a1)], axis=-1)
            u = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
            edge = p1 - p0
            denom = u[..., 0] * edge[..., 1] - u[..., 1] * edge[..., 0]
            num = p0[..., 0] * edge[..., 1] - p0[..., 1] * edge[..., 0]
            safe = np.abs(denom) > 1e-12
            ray = np.where(safe, num / np.where(safe, denom, 1.0), np.minimum(r0, r1))
            return np.asarray(np.clip(ray, 0.0, None))

        return np.asarray((1 - w) * radius(k) + w * radius(k1))

    def axial_limit_rad(
        self, extension_rad: FloatArray, bend_rad: FloatArray, left: bool
    ) -> FloatArray:
        """Largest axial rotation to the left (or right) at a planar offset (e, b), magnitude."""
        table = self.axial_left_rad if left else self.axial_right_rad
        e = np.asarray(extension_rad, dtype=np.float64)
        b = np.broadcast_to(np.asarray(bend_rad, dtype=np.float64), e.shape)
        i, wi = _interp_weights(self.offset_extension_rad, e)
        j, wj = _interp_weights(self.offset_bend_rad, b)
        i1 = np.minimum(i + 1, self.offset_extension_rad.size - 1)
        j1 = np.minimum(j + 1, self.offset_bend_rad.size - 1)
        return np.asarray(
            (1 - wi) * (1 - wj) * table[i, j]
            + wi * (1 - wj) * table[i1, j]
            + (1 - wi) * wj * table[i, j1]
            + wi * wj * table[i1, j1]
        )

    def limits_from_neutral_deg(self, planar: dict[str, float]) -> dict[str, float]:
        """The boundary from neutral (deg) along named planar directions (theta, rad), plus
        ``left_rotation`` and ``right_rotation``."""
        zero = np.zeros(1)
        thetas = np.array(list(planar.values()))
        radii = np.degrees(self.planar_limit_rad(thetas, np.zeros(thetas.size)))
        out = {name: float(r) for name, r in zip(planar, radii, strict=True)}
        out["left_rotation"] = math.degrees(float(self.axial_limit_rad(zero, zero, True)[0]))
        out["right_rotation"] = math.degrees(float(self.axial_limit_rad(zero, zero, False)[0]))
        return out

    def plane_limits_deg(self) -> dict[str, float]:
        """The six single-plane limits from neutral (deg): what a goniometer would read."""
        return self.limits_from_neutral_deg(
            {
                "extension": 0.0,
                "right_bend": math.pi / 2,
                "flexion": math.pi,
                "left_bend": 3 * math.pi / 2,
            }
        )

    def plane_totals_deg(self) -> dict[str, float]:
        """Total range per plane (deg), as normative studies report it."""
        p = self.plane_limits_deg()
        return {
            "flexion_extension": p["flexion"] + p["extension"],
            "lateral_bending": p["left_bend"] + p["right_bend"],
            "axial_rotation": p["left_rotation"] + p["right_rotation"],
        }

    # --- serialisation --------------------------------------------------------------------------
    def arrays(self) -> dict[str, FloatArray]:
        return {
            "planar_radius_rad": self.planar_radius_rad,
            "axial_left_rad": self.axial_left_rad,
            "axial_right_rad": self.axial_right_rad,
        }

    def axes(self) -> dict[str, list[float]]:
        return {
            "planar_directions_rad": self.planar_directions_rad.tolist(),
            "axial_levels_rad": self.axial_levels_rad.tolist(),
            "offset_extension_rad": self.offset_extension_rad.tolist(),
            "offset_bend_rad": self.offset_bend_rad.tolist(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENVELOPE_FORMAT,
            **self.axes(),
            **{k: np.round(v, 6).tolist() for k, v in self.arrays().items()},
            "plane_limits_deg": {k: round(v, 2) for k, v in self.plane_limits_deg().items()},
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MotionEnvelope:
        if data.get("format") != ENVELOPE_FORMAT:
            raise EnvelopeError(
                f"envelope: format is {data.get('format')!r}, expected {ENVELOPE_FORMAT!r}"
            )
        return cls(
            planar_directions_rad=_array(data, "planar_directions_rad", 1),
            axial_levels_rad=_array(data, "axial_levels_rad", 1),
            planar_radius_rad=_array(data, "planar_radius_rad", 2),
            offset_extension_rad=_array(data, "offset_extension_rad", 1),
            offset_bend_rad=_array(data, "offset_bend_rad", 1),
            axial_left_rad=_array(data, "axial_left_rad", 2),
            axial_right_rad=_array(data, "axial_right_rad", 2),
            provenance=dict(data.get("provenance", {})),
        )


def grid_nodes(axes: dict[str, FloatArray]) -> list[dict[str, float]]:
    """Every combination of the grid's node values, C order (the last field varies fastest)."""
    return [
        dict(zip(axes, (float(v) for v in combo), strict=True))
        for combo in itertools.product(*axes.values())
    ]


@dataclass(frozen=True, eq=False)
class EnvelopeGrid:
    """Envelopes at every node of a grid over ``GRID_FIELDS`` anthropometrics (C order)."""

    axes: dict[str, FloatArray]  # field -> ascending node values
    envelopes: tuple[MotionEnvelope, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(self.axes) != GRID_FIELDS:
            raise EnvelopeError(
                f"envelope grid: axes must be {GRID_FIELDS}, got {tuple(self.axes)}"
            )
        for name, values in self.axes.items():
            _ascending(name, values)
        n = math.prod(v.size for v in self.axes.values())
        if len(self.envelopes) != n:
            raise EnvelopeError(f"envelope grid: {len(self.envelopes)} envelopes for {n} nodes")
        first = self.envelopes[0].axes()
        if any(e.axes() != first for e in self.envelopes[1:]):
            raise EnvelopeError("envelope grid: every node must share the same direction grids")

    def nodes(self) -> list[dict[str, float]]:
        """The anthropometric values of every node, in the order of ``envelopes``."""
        return grid_nodes(self.axes)

    def for_subject(self, subject: Anthropometrics) -> tuple[MotionEnvelope, list[str]]:
        """Multilinear interpolation at ``subject``; also the fields clamped to the grid's edge."""
        clamped = []
        per_axis = []
        for name, grid in self.axes.items():
            x = float(getattr(subject, name))
            if not grid[0] - 1e-12 <= x <= grid[-1] + 1e-12:
                clamped.append(name)
            i, w = _interp_weights(grid, np.array(x))
            i1 = min(int(i) + 1, grid.size - 1)
            per_axis.append(((int(i), 1.0 - float(w)), (i1, float(w))))
        shape = tuple(v.size for v in self.axes.values())
        stacked = {k: np.zeros_like(v) for k, v in self.envelopes[0].arrays().items()}
        for corner in itertools.product(*per_axis):
            weight = math.prod(w for _, w in corner)
            if weight == 0.0:
                continue
            node = int(np.ravel_multi_index(tuple(i for i, _ in corner), shape))
            for k, v in self.envelopes[node].arrays().items():
                stacked[k] += weight * v
        e0 = self.envelopes[0]
        envelope = MotionEnvelope(
            planar_directions_rad=e0.planar_directions_rad,
            axial_levels_rad=e0.axial_levels_rad,
            offset_extension_rad=e0.offset_extension_rad,
            offset_bend_rad=e0.offset_bend_rad,
            provenance={"interpolated_from": ENVELOPE_GRID_FORMAT, "clamped_fields": clamped},
            **stacked,
        )
        return envelope, clamped

    def to_dict(self) -> dict[str, Any]:
        shape = [v.size for v in self.axes.values()]
        e0 = self.envelopes[0]
        out: dict[str, Any] = {
            "format": ENVELOPE_GRID_FORMAT,
            "grid_axes": {k: v.tolist() for k, v in self.axes.items()},
            **e0.axes(),
        }
        for key in e0.arrays():
            stacked = np.stack([e.arrays()[key] for e in self.envelopes])
            out[key] = np.round(stacked.reshape(*shape, *stacked.shape[1:]), 6).tolist()
        out["provenance"] = self.provenance
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvelopeGrid:
        if not isinstance(data, dict) or data.get("format") != ENVELOPE_GRID_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise EnvelopeError(
                f"envelope grid: format is {got!r}, expected {ENVELOPE_GRID_FORMAT!r}"
            )
        raw_axes = data.get("grid_axes")
        if not isinstance(raw_axes, dict):
            raise EnvelopeError("envelope grid: missing 'grid_axes'")
        axes = {k: _array(raw_axes, k, 1) for k in GRID_FIELDS}
        n = math.prod(v.size for v in axes.values())
        arrays = {}
        for key in ("planar_radius_rad", "axial_left_rad", "axial_right_rad"):
            a = _array(data, key, len(GRID_FIELDS) + 2)
            arrays[key] = a.reshape(n, *a.shape[len(GRID_FIELDS) :])
        shared: dict[str, Any] = {
            k: data[k]
            for k in (
                "planar_directions_rad",
                "axial_levels_rad",
                "offset_extension_rad",
                "offset_bend_rad",
            )
            if k in data
        }
        envelopes = tuple(
            MotionEnvelope.from_dict(
                {"format": ENVELOPE_FORMAT, **shared, **{k: v[i] for k, v in arrays.items()}}
            )
            for i in range(n)
        )
        return cls(axes=axes, envelopes=envelopes, provenance=dict(data.get("provenance", {})))
