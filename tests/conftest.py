"""Shared fixtures. Third-party reference material lives in ../shared and is optional: tests that
read it skip, naming what is missing, where it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_runtime.contracts.anthropometrics import Anthropometrics

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HYOID_OSIM = SHARED / "reference" / "hyoid-1.2" / "HYOID_1.2_ScaledStrenght_UpdatedInertia.osim"
ANSUR_DIR = SHARED / "data" / "ansur2"


@pytest.fixture(scope="session")
def hyoid_osim() -> Path:
    if not HYOID_OSIM.is_file():
        pytest.skip(f"reference model absent: {HYOID_OSIM}")
    return HYOID_OSIM


@pytest.fixture(scope="session")
def ansur_dir() -> Path:
    if not (ANSUR_DIR / "ANSUR_II_MALE_Public.csv").is_file():
        pytest.skip(f"ANSUR II data absent: {ANSUR_DIR}")
    return ANSUR_DIR


LEARNING_SUBJECTS = 24  # tiny motions: ~500 frames each, enough for >= 5,000 calibration frames


@pytest.fixture(scope="session")
def learning_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real dataset (fast solver, tiny motion set) simulated in-process."""
    from host_training.population.sampling import write_population
    from host_training.simulation.dataset import make_config, prepare_output, simulate_shard

    root = tmp_path_factory.mktemp("learning")
    population = write_population(root / "population.parquet", LEARNING_SUBJECTS, seed=11)
    config = make_config(population, LEARNING_SUBJECTS, "tiny", 7, "fast", 6)
    out = root / "data"
    for shard in prepare_output(out, config):
        simulate_shard(config, shard, str(out))
    return out


@pytest.fixture(scope="session")
def envelope_grid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-node envelope grid (a light and the reference body: weaker and stronger muscles),
    coarse directions: ~10 s of simulation."""
    from host_training.model.personalise import reference_anthropometrics
    from host_training.rom.envelope import EnvelopeResolution, simulate_envelope_grid

    ref = reference_anthropometrics()
    axes = {
        "neck_length_m": (ref.neck_length_m,),
        "shoulder_width_m": (ref.shoulder_width_m,),
        "head_mass_kg": (ref.head_mass_kg,),
        "body_mass_kg": (45.0, ref.body_mass_kg),
    }
    grid = simulate_envelope_grid(axes, EnvelopeResolution.coarse(), workers=1)
    path = tmp_path_factory.mktemp("envelope") / "grid.json"
    path.write_text(json.dumps(grid.to_dict()))
    return path


@pytest.fixture(scope="session")
def learning_run(learning_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short but real training run on ``learning_dataset`` (small network, 20 s budget)."""
    from host_training.learning.training import TrainConfig, train

    run = tmp_path_factory.mktemp("runs") / "r1"
    config = TrainConfig(hidden_units=(64, 64), time_budget_s=20, max_epochs=40,
                         calibration_samples=5000, gate_samples=3000, batch_size=256)  # fmt: skip
    train(learning_dataset, run, config)
    return run


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from edge_runtime.contracts.bundle import generate_key_pair

    key = tmp_path_factory.mktemp("keys") / "signing.key"
    return key, generate_key_pair(key)


QUANT_PYTHON = REPO / ".venv-quant" / "bin" / "python"
# the test network is tiny; the gate itself is tested with an impossible tolerance. Trained for
# 20 s on 24 subjects it does not generalise to its held-out family at all (float R² below
# zero for some muscles there), so int8 is not judged on that family here: the family gate has
# its own tests (tests/quantization/test_gate.py)
TEST_TOLERANCE = "0.05"
TEST_FAMILY_TOLERANCE = "1000"
TEST_RMSE_TOLERANCE = "100"  # % of Fmax


@pytest.fixture(scope="session")
def quantized_bundle(
    learning_run: Path,
    signing_keys: tuple[Path, Path],
    envelope_grid_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A real signed int8 bundle (version 1.0.0) from ``cervical quantize`` on ``learning_run``:
    the default model, activations quantised per frame."""
    out = tmp_path_factory.mktemp("bundles") / "b1"
    return _quantize(learning_run, signing_keys, envelope_grid_file, out)


@pytest.fixture(scope="session")
def calibrated_bundle(
    learning_run: Path,
    signing_keys: tuple[Path, Path],
    envelope_grid_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The same with the full-integer model (``--activations calibrated``)."""
    out = tmp_path_factory.mktemp("bundles") / "calibrated"
    return _quantize(learning_run, signing_keys, envelope_grid_file, out, "--activations",
                     "calibrated")  # fmt: skip


def _quantize(
    run: Path, keys: tuple[Path, Path], envelope_grid_file: Path, out: Path, *extra: str
) -> Path:
    import subprocess
    import sys

    if not QUANT_PYTHON.is_file():
        pytest.skip(f"{QUANT_PYTHON} absent: run `make venv-quant` (make test builds it)")
    cervical = str(Path(sys.executable).with_name("cervical"))
    r = subprocess.run([cervical, "quantize", "--run", str(run), "--out", str(out),
                        "--key", str(keys[0]), "--tolerance", TEST_TOLERANCE,
                        "--family-tolerance", TEST_FAMILY_TOLERANCE,
                        "--rmse-tolerance", TEST_RMSE_TOLERANCE,
                        "--version", "1.0.0", "--envelope", str(envelope_grid_file), *extra],
                       capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[quantize] gate:" in r.stderr and "golden vectors reproduced" in r.stdout
    return out


@pytest.fixture(scope="session")
def wearer(quantized_bundle: Path, signing_keys: tuple[Path, Path]) -> Anthropometrics:
    """A wearer at the bundle's envelope grid reference node (no clamping)."""
    from edge_runtime.contracts.bundle import load_public_key
    from edge_runtime.contracts.model_bundle import verify_model_bundle

    checked = verify_model_bundle(quantized_bundle, load_public_key(signing_keys[1]))
    assert checked.envelope is not None
    node = {k: float(v[-1]) for k, v in checked.envelope.axes.items()}
    return Anthropometrics(sex="male", stature_m=1.76, **node)
