"""The int8 accuracy gate on its own: held-out subjects and the held-out motion family."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from quantization.errors import QuantizationError
from quantization.pipeline import R2_FAMILY_TOLERANCE, accuracy_gate, load_run_inputs

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
    y_int8 = gate["y_float"] + rng.normal(0, 0.2, gate["y"].shape) * [1, 1, 0]
    ok = accuracy_gate(gate, y_int8, MUSCLES, 0.005, FMAX, family_tolerance=0.005)
    assert ok["passed"] and ok["heldout_family"]["family"] == "oscillation"
    assert ok["heldout_family"]["n_frames"] == ok["n_frames"] == 400
    # int8 wrong on the family's frames only (as when its inputs leave the calibrated range)
    bad = y_int8.copy()
    bad[gate["part"] == 1, 1] += rng.normal(0, 8.0, 400)
    result = accuracy_gate(gate, bad, MUSCLES, 0.005, FMAX, family_tolerance=0.005)
    assert not result["passed"]
    assert result["failing_muscles"] == []  # the held-out subjects' part is fine
    assert result["heldout_family"]["failing_muscles"] == ["b"]
    assert result["heldout_family"]["largest_r2_drop_muscle"] == "b"
    # its own tolerance (by default R2_FAMILY_TOLERANCE): looser, it passes; the subjects' is kept
    assert accuracy_gate(gate, bad, MUSCLES, 0.005, FMAX, family_tolerance=1.0)["passed"]
    assert accuracy_gate(gate, bad, MUSCLES, 0.005, FMAX)["heldout_family"]["tolerance_r2"] == (
        R2_FAMILY_TOLERANCE
    )


def test_a_muscle_silent_in_the_family_is_not_judged_there() -> None:
    rng = np.random.default_rng(1)
    gate = _gate(rng)
    y_int8 = gate["y_float"].copy()
    y_int8[gate["part"] == 1, 2] += 0.4  # "c" spreads over < 1% of Fmax: its R² says nothing
    result = accuracy_gate(gate, y_int8, MUSCLES, 0.005, FMAX, family_tolerance=0.005)
    assert result["passed"] and result["heldout_family"]["muscles_judged"] == 2
    assert result["heldout_family"]["worst_muscle_int8"] != "c"
    # on the held-out subjects every muscle is judged
    y_int8[gate["part"] == 0, 2] += 0.4
    assert accuracy_gate(gate, y_int8, MUSCLES, 0.005, FMAX, 0.005)["failing_muscles"] == ["c"]


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
