"""The per-frame confidence score of the 72 forces: the one definition training, quantisation
and the hub use.

Two networks of the same data (the force model and its confidence twin) agree where the training
data pinned the force map down and drift apart where they did not. A frame's score is their
largest disagreement over the muscles, as a share of each muscle's Fmax; a frame whose score
exceeds the run's threshold (``confidence.threshold_of_fmax`` in the run and bundle manifests)
is not to be trusted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def disagreement(
    forces_a: npt.NDArray[Any], forces_b: npt.NDArray[Any], fmax_n: Any
) -> npt.NDArray[np.float64]:
    """Per frame: the largest |a - b| over the muscles, as a share of each muscle's Fmax."""
    diff = np.abs(np.asarray(forces_a, np.float64) - np.asarray(forces_b, np.float64))
    return np.asarray((diff / np.asarray(fmax_n, np.float64)).max(axis=1))
