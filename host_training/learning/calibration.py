"""Which training rows calibrate the int8 model's ranges."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from host_training.simulation.frames import Frames


def calibration_rows(
    frames: Frames, rows: npt.NDArray[np.int64], n: int, seed: int
) -> npt.NDArray[np.int64]:
    """``n`` training rows for int8 calibration, stratified across subjects and postures.

    Postures are binned by the octant of the three neck angles and the tercile of their norm; rows
    are drawn evenly over (subject, posture bin) cells. The rows with each muscle's largest force
    and each input's extremes are always included, so the calibrated ranges cover rare large
    outputs (too few or unrepresentative samples clip them)."""
    rng = np.random.default_rng([seed, 0xCA11B])
    angles = frames.x[rows, :3]
    norm = np.linalg.norm(angles, axis=1)
    terciles = np.quantile(norm, [1 / 3, 2 / 3])
    posture = (angles > 0).astype(np.int64) @ np.array([1, 2, 4]) * 3 + np.searchsorted(
        terciles, norm
    )
    cell = frames.subject_id[rows] * 24 + posture
    must = np.unique(
        np.concatenate(
            [
                rows[np.argmax(frames.y[rows], axis=0)],
                rows[np.argmax(frames.x[rows], axis=0)],
                rows[np.argmin(frames.x[rows], axis=0)],
            ]
        )
    )
    # Round-robin over shuffled cells: each round takes one unused row from every cell.
    order = rng.permutation(len(rows))
    cell_sorted = order[np.argsort(cell[order], kind="stable")]
    cells = cell[cell_sorted]
    rank_in_cell = np.arange(len(cells)) - np.searchsorted(cells, cells, side="left")
    by_round = cell_sorted[np.lexsort((rng.random(len(cells)), rank_in_cell))]
    chosen = rows[by_round]
    extra = chosen[~np.isin(chosen, must)][: max(0, n - len(must))]
    return np.concatenate([must, extra])
