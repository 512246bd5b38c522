"""Evaluating a network on simulated frames, one shard at a time (memory independent of the
dataset's size): the run's own test subjects while training, and any dataset afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import FeatureSpec
from host_training.errors import DatasetError, TrainingError
from host_training.learning.metrics import ForceMetricsAccumulator
from host_training.learning.network import forces_of_rows
from host_training.learning.run import Run
from host_training.learning.training_data import UniformSample
from host_training.simulation.frames import Frames, dataset_fingerprint, iter_frames
from host_training.simulation.motions import motion_family

if TYPE_CHECKING:
    from host_training.learning.training import Splits, TrainConfig

ProgressFn = Callable[[str, float, float, str], None]  # (stage, done, total, detail)


@dataclass
class TestEvaluation:
    """Everything the run reports about its test subjects, gathered shard by shard."""

    seen: ForceMetricsAccumulator  # seen families, box frames apart
    heldout: ForceMetricsAccumulator  # the held-out family
    per_family: dict[str, ForceMetricsAccumulator]
    gate: tuple[UniformSample, UniformSample]  # (x, y, y_float, subject) of part 0 and part 1
    traces: list[dict[str, Any]]

    def metrics(
        self, muscles: Sequence[str], fmax: Sequence[float], heldout_family: str
    ) -> dict[str, Any]:
        test = self.seen.result(muscles, fmax)
        motion = self.heldout.result(muscles, fmax)
        return {
            "r2_per_muscle": test["r2_per_muscle"],
            "r2_per_muscle_heldout_motion": motion["r2_per_muscle"],
            "heldout_subjects": test,
            "heldout_subjects_per_family": {  # the box frames' figures are here
                f: acc.result(muscles, fmax)["summary"]
                for f, acc in sorted(self.per_family.items())
                if acc.n > 1
            },
            "heldout_motion": {"family": heldout_family, **motion},
        }


def evaluate_test_subjects(
    data_dir: Path,
    network: Any,
    spec: FeatureSpec,
    splits: Splits,
    config: TrainConfig,
    fmax: Sequence[float],
    report: ProgressFn,
) -> TestEvaluation:
    """Predict every test-subject frame, one shard at a time, into the accumulators."""
    n = len(spec.outputs)
    result = TestEvaluation(
        seen=ForceMetricsAccumulator(n, config.seed),
        heldout=ForceMetricsAccumulator(n, config.seed),
        per_family={},
        gate=(
            UniformSample(config.gate_samples, config.seed),
            UniformSample(config.gate_samples, config.seed + 1),
        ),
        traces=[],
    )
    parts = iter_frames(data_dir, spec.features, spec.outputs, splits.test,
                        lambda i, k: report("evaluating", i, k, ""))  # fmt: skip
    for part in parts:
        predicted = forces_of_rows(network, spec, part.x)
        heldout = part.family_mask(config.heldout_family)
        box = part.family_mask("box")
        for accumulator, sample, rows in (
            (result.seen, result.gate[0], ~heldout & ~box),
            (result.heldout, result.gate[1], heldout),
        ):
            accumulator.add(part.y[rows], predicted[rows])
            sample.add(part.x[rows], part.y[rows], predicted[rows], part.subject_id[rows])
        for family in part.families():
            if family != config.heldout_family:
                rows = part.family_mask(family)
                acc = result.per_family.setdefault(family, ForceMetricsAccumulator(n, config.seed))
                acc.add(part.y[rows], predicted[rows])
        if splits.test[0] in part.subject_id and not result.traces:
            result.traces = _example_traces(part, predicted, splits.test[0], config)
    if not result.seen.n or not result.heldout.n:
        raise TrainingError(
            f"{data_dir}: the test subjects {list(splits.test)[:5]} have no frames of the "
            f"seen families or of {config.heldout_family!r}"
        )
    return result


def _example_traces(
    part: Frames, predicted: npt.NDArray[np.float32], subject: int, config: TrainConfig
) -> list[dict[str, Any]]:
    """Predicted vs simulated forces over one held-out subject's trials (one seen-family motion,
    one of the held-out family), for the trace plot."""
    rows = part.subject_id == subject
    traces = []
    for family in ("single_plane", config.heldout_family):
        codes = [i for i, m in enumerate(part.motion_ids) if motion_family(m) == family]
        if not codes:
            continue
        mask = rows & (part.motion_code == codes[min(2, len(codes) - 1)])
        if not mask.any():
            continue
        traces.append(
            {
                "title": f"subject {subject}, {part.motion_ids[codes[min(2, len(codes) - 1)]]}",
                "t_s": part.frame[mask] / 100.0,
                "simulated_n": part.y[mask],
                "predicted_n": predicted[mask],
            }
        )
    return traces


def evaluate(run: Run, data_dir: Path, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The run's metrics on every frame of another dataset, overall and per motion family
    (read one shard at a time: memory independent of the dataset's size)."""
    report = progress or (lambda *_: None)
    muscles = run.spec.outputs
    fmax = list(run.fmax_n)
    n = len(muscles)
    overall = ForceMetricsAccumulator(n)
    per_family: dict[str, ForceMetricsAccumulator] = {}
    out_of_range: dict[str, int] = {}
    parts = iter_frames(data_dir, run.spec.features, muscles,
                        progress=lambda i, k: report("evaluating shards", i, k, ""))  # fmt: skip
    for part in parts:
        predicted = run.forces(part.x)
        overall.add(part.y, predicted)
        for family in part.families():
            rows = part.family_mask(family)
            per_family.setdefault(family, ForceMetricsAccumulator(n)).add(
                part.y[rows], predicted[rows]
            )
        for name, count in run.spec.out_of_range(part.x).items():
            out_of_range[name] = out_of_range.get(name, 0) + count
    if not overall.n:
        raise DatasetError(f"{data_dir}: no frames to evaluate")
    result: dict[str, Any] = {
        "dataset": dataset_fingerprint(data_dir),
        "run": str(run.path),
        "all_frames": overall.result(muscles, fmax),
        "per_family": {
            f: acc.result(muscles, fmax)["summary"]
            for f, acc in sorted(per_family.items())
            if acc.n > 1
        },
        "out_of_training_range": out_of_range,
    }
    result["r2_per_muscle"] = result["all_frames"]["r2_per_muscle"]
    return result
