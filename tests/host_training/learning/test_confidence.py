"""Per-frame confidence from the disagreement of two networks, measured on a run's own test
subjects (``cervical bench confidence``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.confidence import disagreement
from host_training.errors import TrainingError
from host_training.learning.confidence import DEFAULT_FLAG_RATE, measure_confidence
from host_training.learning.run import load_run
from host_training.learning.training import TrainConfig, train

CERVICAL = str(Path(sys.executable).with_name("cervical"))


@pytest.fixture(scope="module")
def twin_run(learning_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second network of the same data and split (same seed), another input view."""
    run = tmp_path_factory.mktemp("twin") / "twin"
    config = TrainConfig(hidden_units=(64, 64), time_budget_s=10, max_epochs=15,
                         calibration_samples=5000, gate_samples=3000, batch_size=256,
                         hub_view_share=0.0)  # fmt: skip
    train(learning_dataset, run, config)
    return run


def test_disagreement_is_the_largest_share_of_fmax() -> None:
    a = np.array([[10.0, 50.0], [0.0, 0.0]])
    b = np.array([[30.0, 40.0], [0.0, 100.0]])
    np.testing.assert_allclose(disagreement(a, b, np.array([100.0, 1000.0])), [0.2, 0.1])


def test_two_networks_flag_where_the_forces_are_wrong(learning_run: Path, twin_run: Path) -> None:
    # errors above 3% of Fmax: a short test run has plenty of those whatever the machine's speed
    r = measure_confidence(
        load_run(learning_run), load_run(twin_run), flag_rate=0.1, large_error_of_fmax=0.03
    )
    seen = r["seen"]
    assert seen["frames"] > 1000 and r["heldout"]["frames"] > 100
    assert 0.0 < r["flagged_in_distribution"] < 0.3  # the threshold came from validation frames
    # flags concentrate on the frames with large errors: far more of those are flagged than of
    # all frames (where the networks are right, they agree)
    everything = (seen["large_error_frames"] + r["heldout"]["large_error_frames"]) or 1
    assert seen["large_error_frames"] + r["heldout"]["large_error_frames"] > 0
    recalled = sum(
        (g["recall_large_errors"] or 0.0) * g["large_error_frames"] for g in (seen, r["heldout"])
    )
    assert recalled / everything > 2 * r["flagged_in_distribution"]
    assert set(r["per_family"]) >= {r["heldout_family"]}


def test_a_run_judged_by_itself_flags_nothing(learning_run: Path) -> None:
    run = load_run(learning_run)
    r = measure_confidence(run, run)
    assert r["threshold_of_fmax"] == 0.0 and r["flagged_in_distribution"] == 0.0
    assert r["r2_min_heldout_all"] == r["r2_min_heldout_unflagged"]


def test_a_twin_of_another_split_is_refused_with_exit_2(learning_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(learning_run, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["splits"]["test"] = manifest["splits"]["test"][1:]
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainingError, match="another split"):
        measure_confidence(load_run(learning_run), load_run(other))
    done = subprocess.run(
        [CERVICAL, "bench", "confidence", "--run", str(learning_run), "--twin", str(other)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "another split" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_run_carries_its_twin_and_the_bench_judges_with_it(learning_run: Path) -> None:
    run = load_run(learning_run)
    section = run.manifest.confidence
    assert run.twin is not None and section is not None
    assert section["threshold_of_fmax"] > 0 and section["flag_rate"] == DEFAULT_FLAG_RATE
    assert section["twin"]["hidden_units"] == [128, 128]
    # the twin is another network: it disagrees with the run somewhere in the input box
    corners = np.array(run.spec.input_range).T  # (2, n_inputs): lowest and highest inputs
    assert disagreement(run.forces(corners), run.twin_run().forces(corners), run.fmax_n).max() > 0
    done = subprocess.run(
        [CERVICAL, "bench", "confidence", "--run", str(learning_run), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert {"recall_large_errors", "flagged_in_distribution", "r2_min_heldout_unflagged"} <= set(
        figures
    )
    assert figures["threshold_of_fmax"] > 0.0 and 0.0 <= figures["flagged_in_distribution"] <= 1
    assert figures["flag_rate_validation"] == section["flag_rate"]  # the run's own, by default


def test_a_run_whose_twin_is_missing_is_refused(learning_run: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(learning_run, broken)
    (broken / "twin_weights.pt").unlink()
    with pytest.raises(TrainingError, match=r"twin_weights\.pt"):
        load_run(broken)
