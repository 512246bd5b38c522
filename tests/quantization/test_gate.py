"""The int8 accuracy gate on its own: held-out subjects and the held-out motion family."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from quantization.errors import QuantizationError
from quantization.pipeline import (
    INT8_RMSE_TOLERANCE_PCT_FMAX,
    R2_FAMILY_TOLERANCE,
    accuracy_gate,
    load_run_inputs,
)

MUSCLES = ("a", "b", "c")
FMAX = np.array([100.0, 100.0, 100.0])


def _gate(rng: np.random.Generator, n: int = 400) -> dict[str, np.ndarray]:
    y = np.stack([rng.uniform(0, 50, 2 * n), rng.uniform(0, 30, 2 * n),
                  rng.uniform(0, 0.5, 2 * n)], axis=1)  # fmt: skip  # "c" barely varies
    return {
        "y": y,
        "y_float": y + rng.normal(0, 0.5, y.shape),
        "part": np.repeat(np.arange(2, dtype=np.int8), n),
        "heldout_family": np.array("oscillation"),
    }


def test_a_drop_on_the_held_out_family_alone_fails_the_gate() -> None:
    rng = np.random.default_rng(0)
    gate = _gate(rng)
    # "b" strong (Fmax 2,000 N): an 8 N error is 0.4% of its Fmax, inside the absolute bound, so
    # the R² tolerances alone decide here
    fmax = np.array([100.0, 2000.0, 100.0])
    y_int8 = gate["y_float"] + rng.normal(0, 0.2, gate["y"].shape) * [1, 1, 0]
    ok = accuracy_gate(gate, y_int8, MUSCLES, 0.005, fmax, family_tolerance=0.005)
    assert ok["passed"] and ok["heldout_family"]["family"] == "oscillation"
    assert ok["heldout_family"]["n_frames"] == ok["n_frames"] == 400
    # int8 wrong on the family's frames only (as when its inputs leave the calibrated range)
    bad = y_int8.copy()
    bad[gate["part"] == 1, 1] += rng.normal(0, 8.0, 400)
    result = accuracy_gate(gate, bad, MUSCLES, 0.005, fmax, family_tolerance=0.005)
    assert not result["passed"]
    assert result["failing_muscles"] == []  # the held-out subjects' part is fine
    assert result["heldout_family"]["failing_muscles"] == ["b"]
    assert result["heldout_family"]["largest_r2_drop_muscle"] == "b"
    # its own tolerance (by default the per-frame model's R2_FAMILY_TOLERANCE): looser, it
    # passes; the subjects' is kept
    assert accuracy_gate(gate, bad, MUSCLES, 0.005, fmax, family_tolerance=1.0)["passed"]
    assert (
        accuracy_gate(gate, bad, MUSCLES, 0.005, fmax)["heldout_family"]["tolerance_r2"]
        == (R2_FAMILY_TOLERANCE["per-frame"])
    )


def test_a_silent_muscle_is_judged_by_its_newtons_not_its_r2() -> None:
    """ "c" spreads over < 1% of Fmax: its R² says nothing, so in neither part is it judged by R²,
    and in both it is held to INT8_RMSE_TOLERANCE_PCT_FMAX of int8-vs-float RMS."""
    rng = np.random.default_rng(1)
    gate = _gate(rng)
    y_int8 = gate["y_float"].copy()
    y_int8[:, 2] += rng.normal(0, 0.3, len(y_int8))  # its R² collapses; 0.3% of Fmax RMS
    result = accuracy_gate(gate, y_int8, MUSCLES, 0.005, FMAX, family_tolerance=0.005)
    assert result["passed"]
    for part in (result, result["heldout_family"]):
        assert part["muscles_judged"] == 2 and part["worst_muscle_int8"] != "c"
        assert part["r2_per_muscle"]["c"] - part["r2_per_muscle_int8"]["c"] > 0.1
        assert part["largest_int8_rmse_muscle"] == "c"
        assert 0.2 < part["largest_int8_rmse_pct_fmax"] < INT8_RMSE_TOLERANCE_PCT_FMAX
    # wrong by 1% of Fmax on the held-out subjects: fails there, whatever its R² says
    y_int8[gate["part"] == 0, 2] += 1.0
    result = accuracy_gate(gate, y_int8, MUSCLES, 0.005, FMAX, 0.005)
    assert not result["passed"] and result["failing_muscles"] == ["c"]
    assert result["heldout_family"]["failing_muscles"] == []
    # a varying muscle's R² drop on the held-out subjects still fails the gate
    y_int8 = gate["y_float"].copy()
    y_int8[gate["part"] == 0, 1] += rng.normal(0, 2.0, 400)
    assert accuracy_gate(gate, y_int8, MUSCLES, 0.005, FMAX, 0.005)["failing_muscles"] == ["b"]


def test_a_run_without_held_out_family_frames_is_refused(
    learning_run: Path, tmp_path: Path
) -> None:
    old = shutil.copytree(learning_run, tmp_path / "old-run")
    with np.load(old / "heldout_gate.npz") as z:
        assert (z["part"] == 1).sum() > 0  # a current run gates its held-out family
        subjects_only = {k: z[k] for k in ("x", "y", "y_float", "subject_id")}
    np.savez(old / "heldout_gate.npz", **subjects_only)
    with pytest.raises(QuantizationError, match="no frames of a held-out motion family"):
        load_run_inputs(old)
