"""Training runs as users make them: splits, artefacts, ONNX, evaluation and bad input."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.feature_spec import DEFAULT_FEATURES, FeatureSpec
from host_training.errors import DatasetError
from host_training.learning.calibration import calibration_rows
from host_training.learning.evaluation import evaluate
from host_training.learning.metrics import force_metrics
from host_training.learning.run import load_run
from host_training.learning.training import (
    TrainConfig,
    TrainingError,
    planned_epochs,
    split_subjects,
    train,
)
from host_training.simulation.frames import load_frames
from host_training.simulation.motions import motion_family

CERVICAL = str(Path(sys.executable).with_name("cervical"))


def test_subject_splits_are_disjoint_seeded_and_cover_everyone() -> None:
    ids = np.repeat(np.arange(50), 7)
    a = split_subjects(ids, TrainConfig(seed=1))
    b = split_subjects(ids, TrainConfig(seed=1))
    c = split_subjects(ids, TrainConfig(seed=2))
    assert a == b and a != c
    parts = [set(a.train), set(a.val), set(a.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(range(50))
    assert len(a.test) == 5 and len(a.val) == 5
    with pytest.raises(TrainingError, match="at least 3"):
        split_subjects(np.array([0, 0, 1]), TrainConfig())
    # a learning curve's smaller runs: fewer training subjects, the same validation and test
    every = split_subjects(ids, TrainConfig(seed=1), always_train=(49,))
    few = split_subjects(ids, TrainConfig(seed=1, max_train_subjects=7), always_train=(49,))
    assert (few.val, few.test) == (every.val, every.test) and len(few.train) == 7 + 1
    assert set(few.train) < set(every.train) and 49 in few.train
    with pytest.raises(TrainingError, match="max_train_subjects 0"):
        TrainConfig(max_train_subjects=0).check()


def test_metrics_know_perfect_and_mean_predictions() -> None:
    rng = np.random.default_rng(0)
    y = rng.random((200, 2)) * [10.0, 1.0]
    perfect = force_metrics(y, y, ["a", "b"], [100.0, 10.0])
    mean = force_metrics(y, np.broadcast_to(y.mean(0), y.shape), ["a", "b"], [100.0, 10.0])
    assert perfect["r2_per_muscle"] == {"a": 1.0, "b": 1.0}
    assert abs(mean["r2_per_muscle"]["a"]) < 1e-9
    off = force_metrics(y, y + np.array([0.0, 0.5]), ["a", "b"], [100.0, 10.0])
    assert off["mae_n_per_muscle"]["b"] == pytest.approx(0.5)
    assert off["mae_pct_fmax_per_muscle"]["b"] == pytest.approx(5.0)
    assert off["summary"]["worst_muscle"] == "b"
    # the worst varying muscle's error and spread, with R² = 1 - (RMSE / SD)²
    summary = off["summary"]
    assert summary["worst_varying_muscle"] == "b"
    assert summary["worst_varying_muscle_rmse_pct_fmax"] == pytest.approx(5.0)
    assert summary["worst_varying_muscle_sd_pct_fmax"] == pytest.approx(100 * y[:, 1].std() / 10)
    ratio = (
        summary["worst_varying_muscle_rmse_pct_fmax"] / summary["worst_varying_muscle_sd_pct_fmax"]
    )
    assert summary["r2_min_varying"] == pytest.approx(1 - ratio**2)


def test_motion_families() -> None:
    assert motion_family("circumduction_150") == "circumduction"
    assert motion_family("single_flexion_120") == "single_plane"
    assert motion_family("random_smooth_1") == "random_smooth"
    with pytest.raises(DatasetError, match="no known family"):
        motion_family("cartwheel_3")


def test_calibration_rows_cover_subjects_and_extremes(learning_dataset: Path) -> None:
    from host_training.model.anatomy import load_anatomy

    frames = load_frames(learning_dataset, DEFAULT_FEATURES, load_anatomy().muscle_names())
    rows = np.arange(len(frames))
    chosen = calibration_rows(frames, rows, 2000, seed=0)
    assert len(chosen) == len(np.unique(chosen)) == 2000
    assert set(frames.subject_id[chosen]) == set(frames.subject_id)
    for j in range(frames.y.shape[1]):  # every muscle's largest force is calibrated
        assert frames.y[chosen, j].max() == frames.y[:, j].max()
    per_subject = np.bincount(frames.subject_id[chosen])
    assert per_subject.max() < 2 * per_subject.min()  # evenly spread


def test_run_directory(learning_run: Path, learning_dataset: Path) -> None:
    manifest = json.loads((learning_run / "manifest.json").read_text())
    metrics = json.loads((learning_run / "metrics.json").read_text())
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    assert spec.features == DEFAULT_FEATURES
    assert len(metrics["r2_per_muscle"]) == len(metrics["r2_per_muscle_heldout_motion"]) == 72
    assert list(metrics["r2_per_muscle"]) == [m["name"] for m in manifest["muscles"]]
    splits = manifest["splits"]
    assert not set(splits["train"]) & set(splits["test"])
    assert not set(splits["train"]) & set(splits["val"])
    assert manifest["dataset"]["sha256"] and manifest["git_commit"]
    assert manifest["training"]["stopped"] in ("early_stopping", "time_budget", "planned_epochs")
    # throughput and memory are recorded: frames/s > 0, peak RSS at least the frames in memory
    assert manifest["training"]["train_frames_per_s"] > 0
    frames_bytes = 4 * manifest["splits"]["frames"]["train"] * (len(DEFAULT_FEATURES) + 72)
    assert manifest["training"]["peak_rss_mb"] * 2**20 > frames_bytes
    # per family on the held-out subjects, and the held-out family beside them
    assert set(metrics["heldout_subjects_per_family"]) == {
        "single_plane", "diagonal", "hold", "random_smooth"
    }  # fmt: skip
    assert np.load(learning_run / "calibration.npy").shape == (5000, len(DEFAULT_FEATURES))
    for name in ("r2_per_muscle", "traces", "learning_curve"):
        assert (learning_run / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # The network learned something on unseen subjects (a real fit, not a constant).
    assert metrics["heldout_subjects"]["summary"]["r2_median"] > 0.5


def test_heldout_family_never_trained_on(learning_run: Path, learning_dataset: Path) -> None:
    manifest = json.loads((learning_run / "manifest.json").read_text())
    frames = manifest["splits"]["frames"]
    assert frames["heldout_motion"] > 0
    from host_training.model.anatomy import load_anatomy

    all_frames = load_frames(learning_dataset, DEFAULT_FEATURES, load_anatomy().muscle_names())
    circ = all_frames.family_mask("circumduction")
    test = np.isin(all_frames.subject_id, manifest["splits"]["test"])
    assert frames["heldout_motion"] == int((circ & test).sum())
    assert frames["test"] == int((~circ & test).sum())


def test_onnx_matches_pytorch(learning_run: Path) -> None:
    import onnxruntime as ort
    import torch

    run = load_run(learning_run)
    x = np.random.default_rng(0).normal(size=(64, run.spec.n_inputs)).astype(np.float32)
    session = ort.InferenceSession(str(learning_run / "model.onnx"))
    (onnx_out,) = session.run(None, {"x": x})
    with torch.inference_mode():
        torch_out = run.network(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4)
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch for the converter


def test_evaluate_reproduces_training_metrics(learning_run: Path, learning_dataset: Path) -> None:
    run = load_run(learning_run)
    result = evaluate(run, learning_dataset)
    assert len(result["r2_per_muscle"]) == 72
    assert set(result["per_family"]) == {"single_plane", "diagonal", "circumduction", "hold",
                                         "random_smooth"}  # fmt: skip
    # The held-out subjects' figures are a subset: evaluate them alone and compare with training.
    manifest = run.manifest
    metrics = json.loads((learning_run / "metrics.json").read_text())
    from host_training.model.anatomy import load_anatomy

    frames = load_frames(learning_dataset, run.spec.features, load_anatomy().muscle_names(),
                         subjects=manifest.split_subjects("test"))  # fmt: skip
    seen = ~frames.family_mask("circumduction")
    fmax = list(manifest.fmax_n)
    again = force_metrics(frames.y[seen], run.forces(frames.x[seen]), run.spec.outputs, fmax)
    for m, r2 in metrics["r2_per_muscle"].items():
        assert again["r2_per_muscle"][m] == pytest.approx(r2, abs=1e-5)


def test_train_refuses_bad_input(
    learning_run: Path, learning_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainingError, match="already exists"):
        train(learning_dataset, learning_run, TrainConfig())
    with pytest.raises(DatasetError, match="not a dataset"):
        train(tmp_path, tmp_path / "r", TrainConfig())
    with pytest.raises(TrainingError, match="'rolling' is not in"):
        train(learning_dataset, tmp_path / "r2", TrainConfig(heldout_family="rolling"))
    with pytest.raises(TrainingError, match="calibration_samples 100"):
        train(learning_dataset, tmp_path / "r3", TrainConfig(calibration_samples=100))
    assert not (tmp_path / "r2").exists() and not list(tmp_path.glob(".r*"))


def test_cli_train_and_evaluate_errors(learning_run: Path, tmp_path: Path) -> None:
    r = subprocess.run([CERVICAL, "evaluate", "--run", str(tmp_path), "--data", str(tmp_path)],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 2 and "not a training run" in r.stderr
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--hidden", "64,x"]
    r = subprocess.run([CERVICAL, *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "--hidden" in r.stderr
    for twin, message in (("64,x", "--twin-hidden"), ("0,8", "twin_hidden_units (0, 8)")):
        args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--twin-hidden",
                twin]  # fmt: skip
        r = subprocess.run([CERVICAL, *args], capture_output=True, text=True, check=False)
        assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


def test_cli_evaluate_json(learning_run: Path, learning_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    r = subprocess.run([CERVICAL, "evaluate", "--run", str(learning_run), "--data",
                        str(learning_dataset), "--json", "--out", str(out)],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert printed == json.loads(out.read_text())
    assert len(printed["all_frames"]["rmse_n_per_muscle"]) == 72


def test_cosine_learning_rate() -> None:
    from host_training.learning.training import cosine_learning_rate

    rates = [cosine_learning_rate(1e-3, e, 10) for e in range(10)]
    assert rates[0] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_the_epoch_plan_follows_the_typical_epoch_not_the_first() -> None:
    """The cosine schedule's length, planned again after every epoch from the median epoch."""
    config = TrainConfig(time_budget_s=240.0, qat_epochs=3, max_epochs=200)
    slow_start = planned_epochs(config, [15.2])  # a busy first epoch: a short plan at first
    assert slow_start == int((240 - 1.5 * 3 * 15.2) / 15.2)
    settled = planned_epochs(config, [15.2, 7.0, 7.0])
    assert settled >= 2 * slow_start  # one slow epoch no longer shortens the whole schedule
    spent = 15.2 + 7.0 + 7.0 + (settled - 3) * 7.0 + 1.5 * 3 * 7.0
    assert spent <= 240 < spent + 7.0  # the budget, filled
    slowing = planned_epochs(config, [5.0, 5.0, 20.0, 20.0, 20.0])  # a machine that got busy
    assert slowing < planned_epochs(config, [5.0] * 5)
    assert planned_epochs(config, [500.0]) == 2  # at least two epochs
    assert planned_epochs(dataclasses.replace(config, max_epochs=12), [1.0]) == 12
