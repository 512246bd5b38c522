"""``cervical bench learning-curve``: does accuracy grow with the number of training subjects?

One dataset, one seeded split: every point trains on the first N training subjects of the same
order (``TrainConfig.max_train_subjects``) and is judged on the same held-out subjects and the same
held-out motion family. Every point sees the same number of training frames (``frame_budget``):
a point with fewer subjects takes more epochs over them, so what changes is how many bodies the
network saw, not how much it trained. Each point is a run of its own under ``runs_dir``; a point
whose run is complete is read, not trained again, so the curve can be extended or resumed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_runtime.contracts.training_run import RunLayout, RunManifest
from host_training.errors import TrainingError
from host_training.learning.training import TrainConfig, split_subjects, train
from host_training.simulation.frames import dataset_subject_ids, manifest_config

NO_TIME_LIMIT_S = 7 * 24 * 3600.0  # the frame budget decides a point's length, not the clock


def _frames_per_subject(data_dir: Path) -> float:
    import pyarrow.parquet as pq

    shards = sorted((data_dir / "shards").glob("shard-*.parquet"))
    rows = sum(pq.read_metadata(p).num_rows for p in shards)
    return rows / max(1, len(dataset_subject_ids(data_dir)))


def _point(run: Path, config: TrainConfig) -> dict[str, Any] | None:
    """A finished run's figures (None: no finished run there); a run of other settings there is
    an error, never a point of this curve."""
    layout = RunLayout(run)
    if not layout.metrics.is_file():
        return None
    made = RunManifest.read(layout).train_config
    keys = ("max_train_subjects", "epochs", "seed", "heldout_family", "frame_stride", "qat_epochs")
    for key in keys:
        if made.get(key) != getattr(config, key):
            raise TrainingError(
                f"{run}: a run made with {key} = {made.get(key)!r}, not {getattr(config, key)!r}"
                " (another curve's; choose another --runs-dir)"
            )
    metrics = json.loads(layout.metrics.read_text())
    subjects, family = metrics["heldout_subjects"]["summary"], metrics["heldout_motion"]
    return {
        "heldout_subjects_r2_min": subjects["r2_min"],
        "heldout_subjects_r2_median": subjects["r2_median"],
        "heldout_family": family["family"],
        "heldout_family_r2_min": family["summary"]["r2_min"],
        "heldout_family_r2_median": family["summary"]["r2_median"],
    }


def measure_subject_curve(
    data_dir: Path,
    runs_dir: Path,
    subjects: Sequence[int | None],
    frame_budget: int,
    base: TrainConfig,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or read) one run per number of training subjects (module docstring); None: every
    training subject of the split."""
    anchors = tuple(manifest_config(data_dir).get("anchor_subjects", []))  # errors: not a dataset
    splits = split_subjects(dataset_subject_ids(data_dir), base, anchors)
    available = len(splits.train)
    counts = [available if n is None else n for n in subjects]
    too_many = [n for n in counts if n > available]
    if too_many:
        raise TrainingError(
            f"--subjects {too_many}: the dataset's split has {available} training subjects"
        )
    rows_per_subject = _frames_per_subject(data_dir) / base.frame_stride
    points = []
    for n in sorted(set(counts)):
        epochs = max(2, math.ceil(frame_budget / (n * rows_per_subject)))
        run = runs_dir / f"subjects-{n}"
        config = dataclasses.replace(
            base, max_train_subjects=n, epochs=epochs, max_epochs=max(epochs, base.max_epochs),
            time_budget_s=NO_TIME_LIMIT_S, twin_hidden_units=None,
        )  # fmt: skip
        found = _point(run, config)
        if found is None:
            progress(f"training on {n} subjects, {epochs} epochs -> {run}")
            train(data_dir, run, config)
            found = _point(run, config)
            assert found is not None
        points.append({"train_subjects": n, "epochs": epochs, "run": str(run), **found})
    return {
        "data": str(data_dir),
        "frame_budget": frame_budget,
        "frames_per_subject": rows_per_subject * base.frame_stride,
        "validation_subjects": len(splits.val),
        "test_subjects": len(splits.test),
        "points": points,
    }


def plot_subject_curve(path: Path, curve: dict[str, Any]) -> None:
    """Worst and median muscle R² against training subjects (log scale), subjects and family."""
    from host_training.learning.plots import _pyplot

    plt = _pyplot()
    points = curve["points"]
    n = [p["train_subjects"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    family = points[0]["heldout_family"] if points else "family"
    for key, label, style in (
        ("heldout_subjects_r2_median", "held-out subjects, median muscle", "o-"),
        ("heldout_subjects_r2_min", "held-out subjects, worst muscle", "o--"),
        ("heldout_family_r2_median", f"held-out family ({family}), median", "s-"),
        ("heldout_family_r2_min", f"held-out family ({family}), worst", "s--"),
    ):
        ax.plot(n, [p[key] for p in points], style, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training subjects (same number of training frames for every point)")
    ax.set_ylabel("R²")
    ax.set_title(f"Accuracy against subjects, {curve['frame_budget']:,} training frames each")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
