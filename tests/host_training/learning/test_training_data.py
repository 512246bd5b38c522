"""Training data in bounded memory: one pass over the shards, epochs streamed or held whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.feature_spec import (
    DEFAULT_FEATURES,
    FeatureSpec,
    Normalisation,
    apply_input_transforms,
    default_input_transforms,
)
from host_training.learning.hub_view import HubInputView
from host_training.learning.metrics import ForceMetricsAccumulator, force_metrics
from host_training.learning.training import TrainConfig, split_subjects, train
from host_training.learning.training_data import (
    ColumnStatistics,
    TrainingSet,
    UniformSample,
    prepare,
)
from host_training.simulation.frames import load_frames


def _muscles() -> list[str]:
    from host_training.model.anatomy import load_anatomy

    return load_anatomy().muscle_names()


def _prepared(data: Path, cache: Path, share: float = 0.5):
    frames = load_frames(data, DEFAULT_FEATURES, _muscles())
    splits = split_subjects(frames.subject_id, TrainConfig())
    transforms = default_input_transforms(DEFAULT_FEATURES)
    prepared = prepare(
        data, DEFAULT_FEATURES, _muscles(), splits.train, splits.val, "circumduction", cache,
        frame_stride=2, input_transforms=transforms, output_transform="sqrt",
        view=HubInputView(share=share), calibration_samples=500, seed=0,
    )  # fmt: skip
    spec = FeatureSpec(
        features=DEFAULT_FEATURES,
        outputs=tuple(_muscles()),
        input_normalisation=prepared.transformed_stats.normalisation("range"),
        output_normalisation=prepared.target_stats.normalisation("standard", min_scale=1e-3),
        output_transform="sqrt",
        input_transforms=transforms,
        input_range=tuple(zip(prepared.input_stats.lo, prepared.input_stats.hi, strict=True)),
    )
    return frames, splits, prepared, spec


def test_prepare_matches_the_whole_dataset_at_once(learning_dataset: Path, tmp_path: Path) -> None:
    frames, splits, prepared, _ = _prepared(learning_dataset, tmp_path / "c", share=0.0)
    seen = ~frames.family_mask("circumduction")
    rows = np.isin(frames.subject_id, splits.train) & seen & (frames.frame % 2 == 0)
    assert prepared.n_train == rows.sum()
    x = frames.x[rows]
    # statistics merged shard by shard = fitted on everything at once
    whole = Normalisation.fit(apply_input_transforms(x, default_input_transforms(DEFAULT_FEATURES)),
                              "range")  # fmt: skip
    np.testing.assert_allclose(prepared.transformed_stats.normalisation("range").offset,
                               whole.offset, rtol=1e-6, atol=1e-7)  # fmt: skip
    y = np.sqrt(np.maximum(frames.y[rows], 0))
    standard = Normalisation.fit(y, "standard", min_scale=1e-3)
    got = prepared.target_stats.normalisation("standard", min_scale=1e-3)
    np.testing.assert_allclose(got.offset, standard.offset, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.scale, standard.scale, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(prepared.force_stats.std, frames.y[rows].std(axis=0), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    val = np.isin(frames.subject_id, splits.val) & seen & (frames.frame % 5 == 0)
    assert len(prepared.val_x) == val.sum()
    assert set(prepared.families) == set(frames.families())
    assert len(prepared.calibration_candidates) >= 500


def test_few_training_subjects_still_offer_enough_calibration_rows(
    learning_dataset: Path, tmp_path: Path
) -> None:
    """Candidates are shared out by training subject, not by shard: one training subject among
    every shard of the dataset (a learning curve's smallest point) still offers twice the sample."""
    frames = load_frames(learning_dataset, DEFAULT_FEATURES, _muscles())
    splits = split_subjects(frames.subject_id, TrainConfig())
    prepared = prepare(
        learning_dataset, DEFAULT_FEATURES, _muscles(), splits.train[:1], splits.val,
        "circumduction", tmp_path / "c", frame_stride=1,
        input_transforms=default_input_transforms(DEFAULT_FEATURES), output_transform="sqrt",
        view=HubInputView(share=0.0), calibration_samples=300, seed=0,
    )  # fmt: skip
    candidates = prepared.calibration_candidates
    assert len(candidates) >= 300
    assert set(np.unique(candidates.subject_id)) == {splits.train[0]}


def test_streamed_epochs_visit_every_row_once(learning_dataset: Path, tmp_path: Path) -> None:
    import torch

    _, _, prepared, spec = _prepared(learning_dataset, tmp_path / "c")
    whole = TrainingSet(prepared, spec, batch_size=512, memory_budget_mb=4096)
    assert whole.in_memory
    streamed = TrainingSet(prepared, spec, batch_size=512, memory_budget_mb=1)
    streamed.buffer_rows = max(prepared.rows_per_file)  # one shard at a time
    assert not streamed.in_memory

    def epoch(ts: TrainingSet, seed: int) -> tuple[np.ndarray, np.ndarray]:
        batches = list(ts.batches(torch.Generator().manual_seed(seed)))
        assert all(len(x) <= 512 for x, _ in batches)
        x = torch.cat([b[0] for b in batches]).numpy()
        y = torch.cat([b[1] for b in batches]).numpy()
        return x, y

    xa, ya = epoch(whole, 0)
    xb, yb = epoch(streamed, 0)
    xc, _ = epoch(streamed, 1)
    assert len(xa) == len(xb) == prepared.n_train
    a, b = np.hstack([xa, ya]), np.hstack([xb, yb])
    np.testing.assert_array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])
    assert not np.array_equal(xb, xc)  # another order in another epoch


def test_accumulated_metrics_equal_the_metrics_at_once() -> None:
    rng = np.random.default_rng(3)
    y = np.abs(rng.normal(10, 5, (5000, 4)))
    y[:, 3] = 0.01 * rng.random(5000)  # a nearly silent muscle
    p = y + rng.normal(0, 1, y.shape)
    names, fmax = ["a", "b", "c", "d"], [100.0, 50.0, 80.0, 100.0]
    whole = force_metrics(y, p, names, fmax)
    acc = ForceMetricsAccumulator(4)
    for chunk in np.array_split(np.arange(5000), 7):
        acc.add(y[chunk], p[chunk])
    chunked = acc.result(names, fmax)
    for key in ("r2_per_muscle", "rmse_n_per_muscle", "mae_n_per_muscle"):
        for m in names:
            assert chunked[key][m] == pytest.approx(whole[key][m], abs=2e-6)
    assert chunked["summary"]["muscles_varying"] == whole["summary"]["muscles_varying"] == 3
    # beyond the percentile sample the varying test uses a uniform sample of the truth
    small = ForceMetricsAccumulator(4, sample_rows=1000)
    for chunk in np.array_split(np.arange(5000), 7):
        small.add(y[chunk], p[chunk])
    assert small.result(names, fmax)["summary"]["muscles_varying"] == 3
    with pytest.raises(ValueError, match="no rows"):
        ForceMetricsAccumulator(4).result(names, fmax)


def test_column_statistics_and_uniform_sample() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(3, 2, (10_000, 3)) * [1, 1e3, 1e-3]
    stats = ColumnStatistics(3)
    for chunk in np.array_split(v, 13):
        stats.add(chunk)
    np.testing.assert_allclose(stats.mean, v.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, v.std(0), rtol=1e-10)
    np.testing.assert_array_equal(stats.lo, v.min(0))
    sample = UniformSample(1000, seed=1)
    ids = np.arange(100_000)
    for chunk in np.array_split(ids, 50):
        sample.add(chunk, chunk * 2)
    (a, b) = sample.columns()
    assert len(a) == len(sample) == 1000 and len(np.unique(a)) == 1000
    np.testing.assert_array_equal(b, a * 2)  # rows stay whole
    assert 40_000 < a.mean() < 60_000  # not the first rows only
    again = UniformSample(1000, seed=1)
    for chunk in np.array_split(ids, 50):
        again.add(chunk, chunk * 2)
    np.testing.assert_array_equal(again.columns()[0], a)


def test_a_run_trained_streaming(learning_dataset: Path, tmp_path: Path) -> None:
    """A memory budget below the training rows: the run streams its epochs and still learns."""
    config = TrainConfig(hidden_units=(64, 64), time_budget_s=15, max_epochs=20,
                         calibration_samples=5000, gate_samples=2000, batch_size=256,
                         memory_budget_mb=1, qat_epochs=1)  # fmt: skip
    run = tmp_path / "streamed"
    metrics = train(learning_dataset, run, config)
    manifest = json.loads((run / "manifest.json").read_text())
    rows = manifest["splits"]["frames"]["train"]
    assert rows * 4 * 85 > 2**20 / 2 and manifest["training"]["in_memory"] is False
    assert manifest["input_view"]["changed"]["trajectories"] > 0
    assert metrics["heldout_subjects"]["summary"]["r2_median"] > 0.5
    assert not list(tmp_path.glob(".streamed*"))  # the cache is gone with the run written


def test_box_frames_are_never_thinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame stride thins trajectories (neighbouring frames are alike); box frames are
    independent points and all of them are trained on. The held-out family never is."""
    import host_training.learning.training_data as td
    from host_training.simulation.frames import Frames

    n, muscles = 100, _muscles()
    rng = np.random.default_rng(0)
    ids = ["oscillation_0", "box_0", "circumduction_0"]
    code = np.repeat(np.arange(3, dtype=np.int32), n)
    part = Frames(
        x=rng.normal(0, 0.3, (3 * n, len(DEFAULT_FEATURES))).astype(np.float32),
        y=rng.uniform(0, 50, (3 * n, len(muscles))).astype(np.float32),
        subject_id=np.zeros(3 * n, np.int64),
        motion_code=code,
        frame=np.tile(np.arange(n, dtype=np.int32), 3),
        motion_ids=ids,
        features=DEFAULT_FEATURES,
        muscles=tuple(muscles),
    )
    monkeypatch.setattr(td, "iter_frames", lambda *a, **k: iter([part]))
    prepared = td.prepare(
        tmp_path, DEFAULT_FEATURES, muscles, [0], [1], "circumduction", tmp_path / "c",
        frame_stride=4, input_transforms=default_input_transforms(DEFAULT_FEATURES),
        output_transform="sqrt", view=HubInputView(share=0.0), calibration_samples=10,
        seed=0,
    )  # fmt: skip
    assert prepared.n_train == n // 4 + n  # a quarter of the trajectory, every box frame
    cached = np.load(prepared.cache_files[0][0])
    np.testing.assert_array_equal(cached[n // 4 :], part.x[n : 2 * n])
