"""``cervical bench generalisation``: leave one motion family out, train, evaluate on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cervical_demo.generalisation import worst_muscle_label
from host_training.population.sampling import write_population
from tests.conftest import LEARNING_SUBJECTS, QUANT_PYTHON

CERVICAL = str(Path(sys.executable).parent / "cervical")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CERVICAL, "bench", "generalisation", *args], capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip


def test_bad_families_are_named_and_nothing_is_trained(
    learning_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    cases = {
        "walking": "unknown motion family ['walking']",
        "box": "motion family ['box'] is not in the dataset",  # the tiny set has no box frames
    }
    for family, message in cases.items():
        r = bench("--data", str(learning_dataset), "--family", family, "--runs-dir", str(runs))
        assert r.returncode == 2, r.stderr
        assert message in " ".join(r.stderr.split()), r.stderr
        assert not runs.exists() or not any(runs.iterdir())
    r = bench("--data", str(tmp_path / "nowhere"), "--runs-dir", str(runs))
    assert r.returncode == 2 and "is not a dataset" in r.stderr


def test_leave_one_family_out_trains_without_it_and_reports_it(
    learning_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    r = bench("--data", str(learning_dataset), "--family", "hold", "--budget-s", "10",
              "--no-int8", "--runs-dir", str(runs), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    (row,) = result["families"]
    manifest = json.loads((runs / "without-hold" / "manifest.json").read_text())
    assert manifest["splits"]["heldout_family"] == "hold"
    metrics = json.loads((runs / "without-hold" / "metrics.json").read_text())
    summary = metrics["heldout_motion"]["summary"]
    assert row["family"] == "hold" and result["worst_family"] == "hold"
    assert row["r2_min"] == summary["r2_min_varying"] == result["worst_family_r2_min"]
    assert row["worst_muscle"] == summary["worst_varying_muscle"]
    assert row["r2_min"] <= row["r2_median"] and row["r2_min_all_muscles"] <= row["r2_min"]
    assert 0 < row["muscles_judged"] <= 72 and row["rmse_pct_fmax_max"] > 0
    rmse, sd = row["worst_muscle_rmse_pct_fmax"], row["worst_muscle_sd_pct_fmax"]
    assert 0 < rmse <= row["rmse_pct_fmax_max"] and sd > 0
    assert row["r2_min"] == pytest.approx(1 - (rmse / sd) ** 2)
    assert "int8" not in row and result["worst_family_r2_min_int8"] is None


def test_the_table_names_the_worst_muscles_error_and_spread_where_recorded() -> None:
    row = {"worst_muscle": "trap_cl", "worst_muscle_rmse_pct_fmax": 0.213,
           "worst_muscle_sd_pct_fmax": 0.72}  # fmt: skip
    assert worst_muscle_label(row) == "trap_cl (0.21 / 0.72)"
    # a run whose metrics predate the two figures: the muscle alone
    assert worst_muscle_label({**row, "worst_muscle_sd_pct_fmax": None}) == "trap_cl"


def test_an_existing_run_is_evaluated_float_int8_and_end_to_end(
    learning_run: Path, tmp_path: Path
) -> None:
    if not QUANT_PYTHON.is_file():
        pytest.skip(f"{QUANT_PYTHON} absent: run `make venv-quant` (make test builds it)")
    data = json.loads((learning_run / "manifest.json").read_text())["dataset"]["path"]
    # every subject of the dataset's population was simulated: none is left for the hub figure
    r = bench("--data", data, "--run", str(learning_run), "--no-int8")
    assert r.returncode == 2 and "holds no subject the dataset did not simulate" in r.stderr
    # a larger population of the same seed starts with the same people: its last two are unseen
    larger = write_population(tmp_path / "p.parquet", LEARNING_SUBJECTS + 2, seed=11)
    r = bench("--data", data, "--run", str(learning_run), "--json", "--hub-subjects", "2",
              "--hub-population", str(larger))  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    (row,) = result["families"]
    hub = result["hub"]
    assert hub["subjects"] == [LEARNING_SUBJECTS, LEARNING_SUBJECTS + 1] and hub["frames"] > 3000
    # the gate above converted the run: int8 is measured too; and the network on the exact
    # kinematics of the same frames, which the hub's input error does not reach
    for kind in ("float", "int8", "float_exact_inputs"):
        assert hub[kind]["hub_r2_min"] <= hub[kind]["hub_r2_median"] <= 1.0
        assert len(hub[kind]["rmse_pct_fmax_per_muscle"]) == 72
    assert (
        hub["float_exact_inputs"]["rmse_pct_fmax_per_muscle"]
        != hub["float"]["rmse_pct_fmax_per_muscle"]
    )
    assert result["hub_r2_min"] == hub["float"]["hub_r2_min"]
    metrics = json.loads((learning_run / "metrics.json").read_text())
    assert row["family"] == metrics["heldout_motion"]["family"]
    q = row["int8"]
    with np.load(learning_run / "heldout_gate.npz") as gate:
        assert q["frames"] == (gate["part"] == 1).sum() > 0  # the run's held-out family frames
    assert q["r2_min"] <= q["r2_median"] and isinstance(q["gate_passed"], bool)
    r = bench("--data", data, "--run", str(learning_run), "--family", "box")
    assert r.returncode == 2 and "was trained without" in r.stderr


def test_the_exact_inputs_are_the_sessions_own_motion_frames(tmp_path: Path) -> None:
    """The exact kinematics beside the hub's: the angles of the very session frames that are
    judged (a misaligned row would compare the network with another instant)."""
    from cervical_demo.hub_e2e import subject_session
    from edge_runtime.contracts.neck_angles import neck_angles_from_rotation

    population = write_population(tmp_path / "p.parquet", 3, seed=11)
    _, session = subject_session(2, population, seed=5)
    n = len(session.motion_rows)
    assert session.exact_inputs.shape == (n, 9) and session.true_forces_n.shape == (n, 72)
    angles = neck_angles_from_rotation(session.neck_rotation[session.motion_rows])
    np.testing.assert_allclose(session.exact_inputs[:, :3], angles, atol=1e-9)
    # the velocities are the angles' time derivatives (central differences of 100 Hz frames,
    # where the neighbours are frames of the same motion)
    rows = session.motion_rows
    inner = np.flatnonzero((np.diff(rows, prepend=-9) == 1) & (np.diff(rows, append=-9) == 1))
    dt = session.t_s[1] - session.t_s[0]
    numeric = (angles[inner + 1] - angles[inner - 1]) / (2 * dt)
    assert len(inner) > 0.9 * n
    error = np.abs(session.exact_inputs[inner, 3:6] - numeric)  # rad/s; O(dt²) at fast strokes
    assert np.median(error) < 1e-3 and error.max() < 0.15
