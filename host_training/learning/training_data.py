"""A run's training data in bounded memory: one pass over the shards, epochs read back from disk.

``prepare`` reads the dataset one shard at a time (``frames.iter_frames``; the test subjects are
not read here, evaluation streams them later) and, per shard:

- shows a share of the training subjects' trajectories as the hub measures them
  (``hub_view``; deterministic, so it is done once, not per epoch);
- writes the training rows (every ``frame_stride``-th frame of the seen families' trajectories,
  every box frame) to a cache
  of .npy files beside the run, and gathers the statistics the normalisation needs (min, max,
  mean and variance per column, merged shard by shard);
- keeps the validation rows (every 5th frame), a uniform sample of at most ``MAX_VAL_ROWS`` of
  them once there are more, and calibration candidates: each shard's own stratified choice
  (``calibration.calibration_rows``, with its extremes), from which the final rows are drawn.

``TrainingSet`` then yields shuffled minibatches epoch after epoch. When the cached rows fit in
``memory_budget_mb`` / 2 they are loaded once and shuffled whole (the fast path, what small runs
get); otherwise every epoch visits the cache files in a new random order, a buffer of files at a
time, shuffled within the buffer. Both visit every training row exactly once per epoch (tested);
only the shuffle differs. Peak memory is then the buffer, the validation rows and the model,
whatever the dataset's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import (
    FeatureSpec,
    Normalisation,
    apply_input_transforms,
)
from host_training.errors import DatasetError
from host_training.learning.hub_view import HubInputView, apply_hub_view
from host_training.simulation.frames import Frames, concat_frames, iter_frames

MAX_VAL_ROWS = 250_000  # validation rows kept in memory (a uniform sample beyond)
VAL_FRAME_STRIDE = 5  # neighbouring frames are nearly identical; every 5th is validation enough


class ColumnStatistics:
    """Count, min, max, mean and variance per column, merged chunk by chunk (Chan et al.)."""

    def __init__(self, n_columns: int) -> None:
        self.n = 0
        self.lo = np.full(n_columns, np.inf)
        self.hi = np.full(n_columns, -np.inf)
        self.mean = np.zeros(n_columns)
        self.m2 = np.zeros(n_columns)

    def add(self, values: npt.NDArray[Any]) -> None:
        v = np.asarray(values, dtype=np.float64)
        if not len(v):
            return
        n_b, mean_b = len(v), v.mean(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.m2 = self.m2 + ((v - mean_b) ** 2).sum(axis=0) + delta**2 * self.n * n_b / n
        self.mean = self.mean + delta * n_b / n
        self.n = n
        self.lo = np.minimum(self.lo, v.min(axis=0))
        self.hi = np.maximum(self.hi, v.max(axis=0))

    @property
    def std(self) -> npt.NDArray[np.float64]:
        return np.sqrt(self.m2 / max(self.n, 1))

    def normalisation(self, method: str, min_scale: float = 1e-6) -> Normalisation:
        return Normalisation.from_statistics(
            method, self.mean, self.std, self.lo, self.hi, min_scale=min_scale
        )


class UniformSample:
    """At most ``capacity`` rows of a stream, uniformly: the rows with the smallest seeded
    random keys (every row while there are fewer)."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self._rng = np.random.default_rng([seed, 0x5A11])
        self._keys = np.empty(0)
        self._parts: list[tuple[npt.NDArray[Any], ...]] = []

    def add(self, *columns: npt.NDArray[Any]) -> None:
        if not len(columns[0]):
            return
        self._keys = np.concatenate([self._keys, self._rng.random(len(columns[0]))])
        self._parts.append(columns)
        if len(self._keys) > 2 * self.capacity:
            self._shrink()

    def _merged(self) -> tuple[npt.NDArray[Any], ...]:
        return tuple(np.concatenate(c) for c in zip(*self._parts, strict=True))

    def _shrink(self) -> None:
        merged = self._merged()
        keep = np.sort(np.argpartition(self._keys, self.capacity)[: self.capacity])
        self._keys = self._keys[keep]
        self._parts = [tuple(c[keep] for c in merged)]

    def columns(self) -> tuple[npt.NDArray[Any], ...]:
        if len(self._keys) > self.capacity:
            self._shrink()
        return self._merged()

    def __len__(self) -> int:
        return min(len(self._keys), self.capacity)


@dataclass
class PreparedData:
    """What ``prepare`` gathered: the cache files and everything the run needs from the pass."""

    cache_files: list[tuple[Path, Path]]  # (inputs, forces) .npy per shard with training rows
    rows_per_file: list[int]
    input_stats: ColumnStatistics  # of the raw training inputs (the spec's input range)
    transformed_stats: ColumnStatistics  # after the input transforms (the normalisation)
    target_stats: ColumnStatistics  # of sqrt(force) or force, per the output transform
    force_stats: ColumnStatistics  # of the forces (N) themselves: the force-space loss's scale
    val_x: npt.NDArray[np.float32]
    val_y: npt.NDArray[np.float32]
    calibration_candidates: Frames
    families: list[str]
    viewed: dict[str, int] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return sum(self.rows_per_file)


def prepare(
    data_dir: Path,
    features: Sequence[str],
    muscles: Sequence[str],
    train_subjects: Sequence[int],
    val_subjects: Sequence[int],
    heldout_family: str,
    cache_dir: Path,
    *,
    frame_stride: int,
    input_transforms: Sequence[str],
    output_transform: str,
    view: HubInputView,
    calibration_samples: int,
    seed: int,
    progress: Any = None,
) -> PreparedData:
    """One pass over the training and validation subjects' shards (module docstring)."""
    from host_training.learning.calibration import calibration_rows

    train_ids, val_ids = np.asarray(train_subjects), np.asarray(val_subjects)
    n_in, n_out = len(features), len(muscles)
    input_stats, transformed_stats = ColumnStatistics(n_in), ColumnStatistics(n_in)
    target_stats, force_stats = ColumnStatistics(n_out), ColumnStatistics(n_out)
    val = UniformSample(MAX_VAL_ROWS, seed)
    files: list[tuple[Path, Path]] = []
    rows_per_file: list[int] = []
    candidates: list[Frames] = []
    families: set[str] = set()
    viewed = {"trajectories": 0, "frames": 0}
    # each shard offers calibration candidates in proportion to its training subjects, so a
    # few training subjects among many shards (a learning curve's small point) still offer enough
    candidates_per_subject = 2 * calibration_samples / max(len(train_ids), 1)
    cache_dir.mkdir(parents=True, exist_ok=True)
    subjects = [*train_subjects, *val_subjects]
    for k, part in enumerate(iter_frames(data_dir, features, muscles, subjects, progress)):
        families.update(part.families())
        seen = ~part.family_mask(heldout_family)
        is_train = np.isin(part.subject_id, train_ids) & seen
        counts = apply_hub_view(part.x, part.features, part.subject_id, part.motion_code,
                                part.frame, part.motion_ids, is_train, view, seed)  # fmt: skip
        for key in viewed:
            viewed[key] += counts[key]
        # box frames are independent points, not a time series: the stride never thins them
        strided = (part.frame % frame_stride == 0) | part.family_mask("box")
        rows = np.flatnonzero(is_train & strided)
        if len(rows):
            x, y = part.x[rows], part.y[rows]
            input_stats.add(x)
            transformed_stats.add(apply_input_transforms(x, input_transforms))
            target_stats.add(np.sqrt(np.maximum(y, 0.0)) if output_transform == "sqrt" else y)
            force_stats.add(y)
            pair = (cache_dir / f"x-{k:06d}.npy", cache_dir / f"y-{k:06d}.npy")
            np.save(pair[0], x)
            np.save(pair[1], y)
            files.append(pair)
            rows_per_file.append(len(rows))
        val_rows = np.isin(part.subject_id, val_ids) & seen & (part.frame % VAL_FRAME_STRIDE == 0)
        val.add(part.x[val_rows], part.y[val_rows])
        pool = np.flatnonzero(is_train)
        if len(pool):
            n_subjects = len(np.unique(part.subject_id[pool]))
            quota = math.ceil(candidates_per_subject * n_subjects)
            chosen = calibration_rows(part, pool, quota, seed + k)
            candidates.append(part.subset(chosen))
    if not files:
        raise DatasetError(
            f"{data_dir}: no training frames (every training subject's motion is held out)"
        )
    val_x, val_y = val.columns() if len(val) else (np.empty((0, n_in)), np.empty((0, n_out)))
    return PreparedData(
        cache_files=files,
        rows_per_file=rows_per_file,
        input_stats=input_stats,
        transformed_stats=transformed_stats,
        target_stats=target_stats,
        force_stats=force_stats,
        val_x=val_x.astype(np.float32),
        val_y=val_y.astype(np.float32),
        calibration_candidates=concat_frames(candidates),
        families=sorted(families),
        viewed=viewed,
    )


class TrainingSet:
    """Shuffled minibatches of the cached training rows, epoch after epoch (module docstring)."""

    def __init__(
        self, prepared: PreparedData, spec: FeatureSpec, batch_size: int, memory_budget_mb: float
    ) -> None:
        self.prepared = prepared
        self.spec = spec
        self.batch_size = batch_size
        row_bytes = 4 * (len(spec.features) + len(spec.outputs))
        self.buffer_rows = max(batch_size, int(memory_budget_mb * 2**20 / 2 / row_bytes))
        self.in_memory = prepared.n_train <= self.buffer_rows
        self._whole: tuple[Any, Any] | None = None

    def __len__(self) -> int:
        return self.prepared.n_train

    def _load(self, indices: Sequence[int]) -> tuple[Any, Any]:
        """The files' rows as model inputs and targets, converted file by file into one
        preallocated buffer (no full-size temporary copies)."""
        import torch

        rows = sum(self.prepared.rows_per_file[i] for i in indices)
        x = np.empty((rows, len(self.spec.features)), dtype=np.float32)
        y = np.empty((rows, len(self.spec.outputs)), dtype=np.float32)
        at = 0
        for i in indices:
            x_path, y_path = self.prepared.cache_files[i]
            n = self.prepared.rows_per_file[i]
            x[at : at + n] = self.spec.model_inputs(np.load(x_path))
            y[at : at + n] = self.spec.targets_from_forces(np.load(y_path))
            at += n
        return torch.from_numpy(x), torch.from_numpy(y)

    def _buffers(self, generator: Any) -> Iterator[tuple[Any, Any]]:
        import torch

        if self.in_memory:
            if self._whole is None:
                self._whole = self._load(range(len(self.prepared.cache_files)))
            yield self._whole
            return
        order = torch.randperm(len(self.prepared.cache_files), generator=generator).tolist()
        group: list[int] = []
        rows = 0
        for i in order:
            if group and rows + self.prepared.rows_per_file[i] > self.buffer_rows:
                yield self._load(group)
                group, rows = [], 0
            group.append(i)
            rows += self.prepared.rows_per_file[i]
        if group:
            yield self._load(group)

    def batches(self, generator: Any) -> Iterator[tuple[Any, Any]]:
        """One epoch: every training row once, in minibatches, shuffled."""
        import torch

        for x, y in self._buffers(generator):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(order), self.batch_size):
                idx = order[i : i + self.batch_size]
                yield x[idx], y[idx]
