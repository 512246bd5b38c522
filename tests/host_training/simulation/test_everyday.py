"""Everyday motion families and the input-box sampler (host_training.simulation.everyday)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from host_training.errors import DatasetError
from host_training.model.anatomy import INDEPENDENT_COORDINATES, load_anatomy
from host_training.simulation.dataset import make_config
from host_training.simulation.everyday import (
    BOX_ACCELERATION_DEG_S2,
    BOX_VELOCITY_DEG_S,
    FAMILY_DEFINITIONS,
    OSCILLATION_HZ,
)
from host_training.simulation.frames import dataset_fingerprint
from host_training.simulation.motions import (
    MOTION_FAMILIES,
    PlaneSplit,
    everyday_motions,
    motion_family,
    motion_set_digest,
    trajectory,
)

NEW_FAMILIES = ("point_to_point", "oscillation", "sway_hold", "multi_axis", "box")


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from host_training.population.sampling import write_population

    return write_population(tmp_path_factory.mktemp("pop") / "p.parquet", 4, seed=3)


@pytest.fixture(scope="module")
def split() -> PlaneSplit:
    return PlaneSplit.of(load_anatomy())


def _planes(values: np.ndarray) -> np.ndarray:
    """(N, 6) coordinates -> (N, 3) anatomical angles (upper + lower level per plane)."""
    index = {name: i for i, name in enumerate(INDEPENDENT_COORDINATES)}
    pairs = (("pitch1", "pitch2"), ("roll1", "roll2"), ("yaw1", "yaw2"))
    return np.stack([values[:, index[a]] + values[:, index[b]] for a, b in pairs], axis=1)


def _ranges() -> np.ndarray:
    c = {x.name: x for x in load_anatomy().coordinates}
    return np.radians([[c[n].range_min_deg, c[n].range_max_deg] for n in INDEPENDENT_COORDINATES])


def test_everyday_set_adds_every_family_deterministically_and_per_subject() -> None:
    specs = everyday_motions(7, 3)
    assert {s.family for s in specs} == set(MOTION_FAMILIES)
    assert len({s.motion_id for s in specs}) == len(specs)
    for s in specs:
        assert motion_family(s.motion_id) == s.family
    assert everyday_motions(7, 3) == specs  # a pure function of (seed, subject)
    assert everyday_motions(7, 4) != specs and everyday_motions(8, 3) != specs


def test_everyday_trajectories_stay_inside_the_ranges_and_the_measured_limits(
    split: PlaneSplit,
) -> None:
    ranges = _ranges()
    speed_limit = math.radians(max(BOX_VELOCITY_DEG_S, 450.0)) * 1.001
    for subject in (0, 11):
        for spec in everyday_motions(7, subject):
            if spec.family not in NEW_FAMILIES:
                continue
            traj = trajectory(spec, split)
            assert np.isfinite(traj.q_rad).all() and np.isfinite(traj.qdd_rad_s2).all()
            assert (traj.q_rad >= ranges[:, 0] - 1e-12).all(), spec.motion_id
            assert (traj.q_rad <= ranges[:, 1] + 1e-12).all(), spec.motion_id
            speed = np.linalg.norm(_planes(traj.qd_rad_s), axis=1).max()
            assert speed <= speed_limit, (spec.motion_id, math.degrees(speed))
            if spec.family == "oscillation":
                # per plane: within the speed and acceleration limits of the family
                assert np.abs(_planes(traj.qd_rad_s)).max() <= math.radians(400.0) * 1.02
                assert (
                    np.abs(_planes(traj.qdd_rad_s2)).max()
                    <= math.radians(BOX_ACCELERATION_DEG_S2) * 1.1 + 1.0
                )  # the easing adds a little


def test_oscillations_are_stratified_over_the_frequency_band() -> None:
    hz = sorted(
        s.extra["frequency_hz"] for s in everyday_motions(7, 0) if s.family == "oscillation"
    )
    low, high = OSCILLATION_HZ
    width = (high - low) / len(hz)
    for k, f in enumerate(hz):  # one per stratum: the band is covered, whatever the subject
        assert low + k * width <= f <= low + (k + 1) * width
    assert hz[-1] >= 3.0  # oscillations up to at least 3 Hz


def test_box_frames_cover_the_input_box_evenly(split: PlaneSplit) -> None:
    boxes = [s for s in everyday_motions(7, 0) if s.family == "box"]
    trajs = [trajectory(s, split) for s in boxes]
    angles = np.concatenate([_planes(t.q_rad) for t in trajs])
    velocity = np.concatenate([_planes(t.qd_rad_s) for t in trajs])
    acceleration = np.concatenate([_planes(t.qdd_rad_s2) for t in trajs])
    assert len(angles) == 3 * 1024
    limits = np.array(split.limits_rad)
    # every plane's range is reached on both sides (95% of it, by design)
    for p in range(3):
        assert angles[:, p].min() < 0.8 * limits[p, 0] and angles[:, p].max() > 0.8 * limits[p, 1]
    # postures sit in the anatomical ball: ranges do not combine at their corners
    unit = np.where(angles >= 0, angles / limits[:, 1], angles / limits[:, 0])
    assert np.linalg.norm(unit, axis=1).max() <= 0.95 + 1e-9
    # derivative vectors point everywhere and reach their limits, dense near zero
    for values, limit in ((velocity, BOX_VELOCITY_DEG_S), (acceleration, BOX_ACCELERATION_DEG_S2)):
        magnitude = np.degrees(np.linalg.norm(values, axis=1))
        assert magnitude.max() <= limit * (1 + 1e-9)
        assert magnitude.max() > 0.9 * limit
        assert np.median(magnitude) < 0.25 * limit
        assert (np.sign(values) > 0).mean(axis=0) == pytest.approx([0.5] * 3, abs=0.05)
    # quasi-random, not a grid: the 3,072 frames are all distinct
    assert len(np.unique(np.round(angles, 9), axis=0)) == len(angles)


def test_digest_covers_the_samplers_and_leaves_the_library_alone() -> None:
    assert motion_set_digest("everyday", 7) != motion_set_digest("default", 7)
    assert set(FAMILY_DEFINITIONS) == set(NEW_FAMILIES)


def test_the_opensim_reference_cannot_take_box_frames(population: Path) -> None:
    with pytest.raises(DatasetError, match="box frames"):
        make_config(population, 2, "everyday", 7, "opensim", 1)


def test_manifest_records_the_families_and_a_foreign_shard_is_refused(
    population: Path, tmp_path: Path
) -> None:
    from host_training.simulation.dataset import prepare_output, simulate_shard

    datasets = {}
    for motions in ("everyday", "tiny"):
        config = make_config(population, 1, motions, 7, "fast", 1)
        out = tmp_path / motions
        for shard in prepare_output(out, config):
            simulate_shard(config, shard, str(out))
        datasets[motions] = out
    manifest = json.loads((datasets["everyday"] / "manifest.json").read_text())
    assert set(manifest["motion_families"]) == set(NEW_FAMILIES)
    assert manifest["motion_families"]["box"]["velocity_limit_deg_s"] == BOX_VELOCITY_DEG_S
    dataset_fingerprint(datasets["everyday"])  # consistent: accepted
    # a shard of another motion set copied in: named, refused
    foreign = datasets["everyday"] / "shards" / "shard-000001.parquet"
    shutil.copy(datasets["tiny"] / "shards" / "shard-000000.parquet", foreign)
    with pytest.raises(DatasetError, match=r"shard-000001.*other settings.*motion_set"):
        dataset_fingerprint(datasets["everyday"])
