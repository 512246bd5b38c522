from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from host_training.model.anatomy import INDEPENDENT_COORDINATES
from host_training.model.builder import build_model, write_model
from host_training.model.kinematics import CoupledPoser, independent_ranges_rad
from host_training.model.opensim_env import opensim

# NECK_MODEL.md: ranges (deg) after Vasavada 1998.
RANGES_DEG = {"pitch1": (-16, 24), "roll1": (-6, 6), "yaw1": (-38, 38),
              "pitch2": (-33, 48), "roll2": (-33, 33), "yaw2": (-27, 27)}  # fmt: skip


@pytest.fixture(scope="module")
def written_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model()
    model.initSystem()
    return write_model(model, tmp_path_factory.mktemp("m") / "reference.osim")


def test_written_model_loads_with_72_muscles_and_6_independent_coordinates(
    written_reference: Path,
) -> None:
    osim = opensim()
    model = osim.Model(str(written_reference))
    state = model.initSystem()
    assert model.getMuscles().getSize() == 72
    coords = model.getCoordinateSet()
    every = [coords.get(i) for i in range(coords.getSize())]
    free = [c for c in every if not c.isDependent(state) and not c.getLocked(state)]
    assert sorted(c.getName() for c in free) == sorted(INDEPENDENT_COORDINATES)
    for c in free:
        lo, hi = RANGES_DEG[c.getName()]
        assert math.degrees(c.getRangeMin()) == pytest.approx(lo, abs=1e-6)
        assert math.degrees(c.getRangeMax()) == pytest.approx(hi, abs=1e-6)
    assert model.getConstraintSet().getSize() == 18
    muscle = osim.Millard2012EquilibriumMuscle.safeDownCast(model.getMuscles().get(0))
    assert muscle.getMinControl() == 0.0
    assert muscle.get_ignore_tendon_compliance()


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    class Broken:
        def printToXML(self, path: str) -> bool:  # noqa: N802 - OpenSim's name
            Path(path).write_text("partial")
            return False

    target = tmp_path / "m.osim"
    with pytest.raises(OSError, match="could not write"):
        write_model(Broken(), target)
    assert list(tmp_path.iterdir()) == []


def _postures(ranges: np.ndarray, n_random: int, seed: int) -> np.ndarray:
    """Random postures inside the ranges plus each coordinate alone at 95% of either limit."""
    rng = np.random.default_rng(seed)
    inner = ranges * 0.98
    random = rng.uniform(inner[:, 0], inner[:, 1], size=(n_random, 6))
    single = []
    for k in range(6):
        for end in (0, 1):
            q = np.zeros(6)
            q[k] = 0.95 * ranges[k, end]
            single.append(q)
    return np.vstack([random, np.array(single)])


def test_matches_reference_lengths_and_moment_arms_over_the_range_of_motion(
    hyoid_osim: Path,
) -> None:
    osim = opensim()
    ours = build_model()
    ours_state = ours.initSystem()
    ref = osim.Model(str(hyoid_osim))
    ref_state = ref.initSystem()
    a, b = CoupledPoser(ours, ours_state), CoupledPoser(ref, ref_state)
    assert a.muscle_names == b.muscle_names
    postures = _postures(independent_ranges_rad(ref), n_random=228, seed=3)
    assert len(postures) >= 200
    worst_length_rel, worst_arm_m = 0.0, 0.0
    for q in postures:
        la, lb = a.lengths_m(q), b.lengths_m(q)
        worst_length_rel = max(worst_length_rel, float(np.max(np.abs(la / lb - 1.0))))
        arms = np.abs(a.moment_arms_m(q) - b.moment_arms_m(q))
        worst_arm_m = max(worst_arm_m, float(arms.max()))
    assert worst_length_rel < 0.02
    assert worst_arm_m < 0.002


def test_finite_difference_moment_arms_equal_opensims_own() -> None:
    osim = opensim()
    model = build_model()
    state = model.initSystem()
    poser = CoupledPoser(model, state)
    q = np.radians([10.0, 3.0, -20.0, 25.0, -15.0, 10.0])
    arms = poser.moment_arms_m(q)
    poser.set_posture(q)
    coords = model.getCoordinateSet()
    for name in ("stern_mast", "splen_cap_sklthx_L", "long_col_c1thx"):
        i = poser.muscle_names.index(name)
        muscle = model.getMuscles().get(name)
        for k, coord in enumerate(INDEPENDENT_COORDINATES):
            expected = muscle.computeMomentArm(state, coords.get(coord))
            assert arms[i, k] == pytest.approx(expected, abs=1e-7), (name, coord)
    assert osim is not None
