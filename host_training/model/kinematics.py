"""Muscle lengths and moment arms over the six independent neck coordinates, from OpenSim.

Postures are given in the six independent coordinates (rad, order ``INDEPENDENT_COORDINATES``);
each model's own linear couplers set the dependent levels. Moment arms are central differences of
OpenSim's musculotendon lengths, r = -dL/dq, which includes the motion of every coupled level;
``Muscle.computeMomentArm`` gives the same numbers about 100x slower (tested against it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from host_training.model.anatomy import INDEPENDENT_COORDINATES
from host_training.model.opensim_env import opensim

FloatArray = npt.NDArray[np.float64]
MOMENT_ARM_STEP_RAD = 1e-4


class CoupledPoser:
    """Sets a model's state from the six independent coordinates (dependents via its couplers)."""

    def __init__(self, model: Any, state: Any) -> None:
        osim = opensim()
        self.model, self.state = model, state
        coords = model.getCoordinateSet()
        self._independent = [coords.get(n) for n in INDEPENDENT_COORDINATES]
        self._dependent: list[tuple[Any, int, Any]] = []
        constraints = model.getConstraintSet()
        for i in range(constraints.getSize()):
            c = osim.CoordinateCouplerConstraint.safeDownCast(constraints.get(i))
            if c is None:
                continue
            independent = c.getIndependentCoordinateNames().get(0)
            self._dependent.append(
                (
                    coords.get(c.getDependentCoordinateName()),
                    INDEPENDENT_COORDINATES.index(independent),
                    c.getFunction(),
                )
            )
        self._arg = osim.Vector(1, 0.0)
        self._muscles = model.getMuscles()
        self.muscle_names = tuple(
            self._muscles.get(i).getName() for i in range(self._muscles.getSize())
        )

    def set_posture(self, q_rad: FloatArray) -> None:
        for coord, value in zip(self._independent, q_rad, strict=True):
            coord.setValue(self.state, float(value), False)
        for coord, k, fn in self._dependent:
            self._arg.set(0, float(q_rad[k]))
            coord.setValue(self.state, fn.calcValue(self._arg), False)
        self.model.realizePosition(self.state)

    def lengths_m(self, q_rad: FloatArray) -> FloatArray:
        """Musculotendon length of every muscle (model order) at posture ``q_rad``, (n_muscles,)."""
        self.set_posture(q_rad)
        return np.array(
            [self._muscles.get(i).getLength(self.state) for i in range(len(self.muscle_names))]
        )

    def moment_arms_m(self, q_rad: FloatArray, step_rad: float = MOMENT_ARM_STEP_RAD) -> FloatArray:
        """Moment arms (m) about the six independent coordinates, (n_muscles, 6)."""
        q = np.asarray(q_rad, dtype=np.float64)
        arms = np.empty((len(self.muscle_names), len(INDEPENDENT_COORDINATES)))
        for k in range(len(INDEPENDENT_COORDINATES)):
            dq = np.zeros_like(q)
            dq[k] = step_rad
            arms[:, k] = -(self.lengths_m(q + dq) - self.lengths_m(q - dq)) / (2.0 * step_rad)
        return arms


def independent_ranges_rad(model: Any) -> FloatArray:
    """(6, 2) array of [min, max] of each independent coordinate of ``model``."""
    coords = model.getCoordinateSet()
    return np.array(
        [
            [coords.get(n).getRangeMin(), coords.get(n).getRangeMax()]
            for n in INDEPENDENT_COORDINATES
        ]
    )
