"""Envelope simulation on the personalised OpenSim model: limits, holding, anthropometrics."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.anthropometrics import write_profile
from edge_runtime.contracts.envelope import EnvelopeGrid, MotionEnvelope
from host_training.model.personalise import reference_anthropometrics
from host_training.rom.envelope import (
    EnvelopeResolution,
    EnvelopeSimulator,
    simulate_envelope,
)
from tests.conftest import REPO


@pytest.fixture(scope="module")
def reference_envelope() -> MotionEnvelope:
    return simulate_envelope(reference_anthropometrics(), EnvelopeResolution.coarse())


def test_reference_envelope_per_plane(reference_envelope: MotionEnvelope) -> None:
    limits = reference_envelope.plane_limits_deg()
    # flexion/extension and lateral bending end at the joint ranges (Vasavada 1998 via the plane
    # split: 48.4 / 71.8 / 39.0 deg); axial rotation ends where the muscles stop holding it
    assert limits["flexion"] == pytest.approx(48.4, abs=0.5)
    assert limits["extension"] == pytest.approx(71.8, abs=0.5)
    assert limits["left_bend"] == pytest.approx(39.0, abs=0.5) == limits["right_bend"]
    assert 55.0 < limits["left_rotation"] <= 65.0
    assert limits["left_rotation"] == pytest.approx(limits["right_rotation"], abs=0.5)
    totals = reference_envelope.plane_totals_deg()
    assert 77.0 <= totals["lateral_bending"] <= 103.0  # inside the normative range


def test_boundary_is_reachable_and_just_beyond_is_not(reference_envelope: MotionEnvelope) -> None:
    sim = EnvelopeSimulator(reference_anthropometrics())
    limit = math.radians(reference_envelope.plane_limits_deg()["left_rotation"])
    inside = sim.reachable(np.array([[0.0, 0.0, limit - 0.01], [0.0, 0.0, limit + 0.02]]))
    assert inside.tolist() == [True, False]
    # beyond the joint ranges nothing is reachable, however strong the muscles
    assert not sim.reachable(np.radians([[80.0, 0.0, 0.0]]))[0]


def test_heavier_head_and_weaker_muscles_shrink_the_envelope(
    reference_envelope: MotionEnvelope,
) -> None:
    ref = reference_anthropometrics()
    weak = dataclasses.replace(ref, head_mass_kg=6.5, body_mass_kg=45.0)
    env = simulate_envelope(weak, EnvelopeResolution.coarse())
    before, after = reference_envelope.plane_limits_deg(), env.plane_limits_deg()
    assert after["left_rotation"] < before["left_rotation"] - 2.0
    tolerance = math.radians(0.5)
    for part, value in env.arrays().items():
        assert np.all(value <= reference_envelope.arrays()[part] + tolerance), part


def test_grid_interpolation_matches_direct_simulation(envelope_grid_file: Path) -> None:
    grid = EnvelopeGrid.from_dict(json.loads(envelope_grid_file.read_text()))
    subject = dataclasses.replace(reference_anthropometrics(), body_mass_kg=65.0)
    interpolated, clamped = grid.for_subject(subject)
    direct = simulate_envelope(subject, EnvelopeResolution.coarse())
    assert clamped == []
    for name, value in direct.plane_limits_deg().items():
        assert interpolated.plane_limits_deg()[name] == pytest.approx(value, abs=1.5), name


def test_envelope_command(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    write_profile(reference_anthropometrics(), profile)
    cmd = [
        str(Path(sys.executable).parent / "cervical"),
        "envelope",
        "--profile",
        str(profile),
        "--out",
        str(tmp_path / "env.json"),
        "--plot",
        str(tmp_path / "env.png"),
        "--coarse",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "total axial rotation" in r.stdout
    env = MotionEnvelope.from_dict(json.loads((tmp_path / "env.json").read_text()))
    assert env.provenance["subject"]["head_mass_kg"] == reference_anthropometrics().head_mass_kg
    assert (tmp_path / "env.png").read_bytes()[:4] == b"\x89PNG"
    r = subprocess.run(
        [*cmd[:4], "--out", str(tmp_path / "x.json"), "--population", "p.parquet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 2 and "either --profile or --population" in r.stderr
    assert not (tmp_path / "x.json").exists()
