"""Stages 1-4: population, simulated dataset, trained network, signed int8 bundle.

Each stage first checks what an earlier run left: an output that checks out against this run's
inputs is reused (and the demo says so); one that does not is moved aside, never deleted
(``NAME.stale-UTC``), and built again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cervical_demo.progress import StageReporter
from cervical_demo.scales import MOTION_SEED, POPULATION_SEED, POPULATION_SIZE, SOLVER, DemoScale
from edge_runtime.common.atomic import atomic_path
from edge_runtime.contracts.bundle import (
    BundleError,
    generate_key_pair,
    load_private_key,
    load_public_key,
)
from edge_runtime.contracts.envelope import EnvelopeError
from edge_runtime.contracts.force_model import ForceModelError
from edge_runtime.contracts.model_bundle import VerifiedBundle, verify_model_bundle

POPULATION_FILE = "population.parquet"
DATA_DIR = "data"
RUN_DIR = "run"
KEY_FILE = "signing.key"
ENVELOPE_GRID_FILE = "envelope_grid.json"
BUNDLE_DIR = "bundle"


def move_aside(path: Path) -> Path:
    """Keep an output that no longer fits under a dated name; returns the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.stale-{stamp}")
    os.replace(path, target)
    return target


def population(out_dir: Path, stage: StageReporter) -> Path:
    from host_training.errors import HostTrainingError
    from host_training.population.sampling import (
        population_metadata,
        population_size,
        write_population,
    )

    path = out_dir / POPULATION_FILE
    if path.is_file():
        try:
            same = (
                population_size(path) == POPULATION_SIZE
                and population_metadata(path).get("seed") == POPULATION_SEED
            )
        except (HostTrainingError, OSError):
            same = False
        if same:
            stage.reused(f"{path} ({POPULATION_SIZE:,} subjects, seed {POPULATION_SEED})")
            return path
        stage.note(f"{path} is another population: kept as {move_aside(path).name}")
    done = {"rows": 0}

    def advance(rows: int) -> None:
        done["rows"] += rows
        stage.update(done["rows"], POPULATION_SIZE, "subjects")

    write_population(path, POPULATION_SIZE, POPULATION_SEED, progress=advance)
    stage.outcome.note = f"{POPULATION_SIZE:,} subjects (ANSUR II, seed {POPULATION_SEED})"
    return path


@dataclass(frozen=True)
class DatasetInfo:
    path: Path
    shards: int
    frames: int
    new_frames: int


def dataset(
    out_dir: Path, scale: DemoScale, population_path: Path, scheduler: str | None,
    stage: StageReporter,
) -> DatasetInfo:  # fmt: skip
    """ID + static optimisation on a local Dask cluster (or ``scheduler``); finished shards are
    skipped, so an interrupted demo resumes here."""
    import pyarrow.parquet as pq

    from host_training.simulation.cluster import run_simulation
    from host_training.simulation.dataset import make_config

    path = out_dir / DATA_DIR
    # the population's extreme subjects too: any patient is inside the network's training range
    config = make_config(
        population_path, scale.subjects, scale.motions, MOTION_SEED, SOLVER, scale.shard_subjects,
        span_population=True,
    )  # fmt: skip
    n_shards = config.n_shards()
    if path.exists() and not _dataset_matches(path, config.content_key()):
        stage.note(f"{path} holds another dataset: kept as {move_aside(path).name}")
    counts = {"pending": 0, "done": 0, "frames": 0}

    def started(pending: int) -> None:
        counts["pending"] = pending
        stage.update(0, pending or None, "shards")

    def finished(report: dict[str, float]) -> None:
        counts["done"] += 1
        counts["frames"] += int(report["frames"])
        stage.update(counts["done"], counts["pending"], f"shards, {counts['frames']:,} frames")

    where = scheduler or "a local Dask cluster (one worker per core)"
    run_simulation(config, path, None, scheduler, started, finished)
    frames = sum(pq.ParquetFile(p).metadata.num_rows for p in (path / "shards").glob("*.parquet"))
    extremes = len(config.subject_ids()) - scale.subjects
    summary = (
        f"{scale.subjects} subjects and the population's {extremes} extreme ones x "
        f"'{scale.motions}' motions: {frames:,} frames"
    )
    if counts["pending"] == 0:
        stage.reused(f"{path}: all {n_shards} shards ({summary})")
    elif counts["pending"] < n_shards:
        stage.resumed(f"{n_shards - counts['pending']} of {n_shards} shards were done; {summary}")
    else:
        stage.outcome.note = f"{summary} on {where}"
    return DatasetInfo(path, n_shards, frames, counts["frames"])


def _dataset_matches(path: Path, wanted: dict[str, Any]) -> bool:
    from host_training.errors import DatasetError
    from host_training.simulation.frames import manifest_config

    try:
        return manifest_config(path) == wanted
    except DatasetError:
        return not any(path.iterdir())  # an empty folder fits anything


def _run_matches(run: Path, data: Path, config: dict[str, Any]) -> bool:
    from edge_runtime.contracts.training_run import RunError, RunLayout, RunManifest
    from host_training.errors import DatasetError
    from host_training.simulation.frames import dataset_fingerprint

    layout = RunLayout(run)
    try:
        manifest = RunManifest.read(layout)
        return (
            layout.onnx.is_file()
            and layout.metrics.is_file()
            and dict(manifest.train_config) == config
            and manifest.dataset_sha256 == dataset_fingerprint(data)["sha256"]
        )
    except (RunError, DatasetError, OSError):
        return False


def training(out_dir: Path, scale: DemoScale, data: Path, stage: StageReporter) -> Path:
    """The network on the dataset; a finished run of the same settings on the same data (by
    SHA-256) is reused."""
    import dataclasses

    from host_training.learning.training import train

    run = out_dir / RUN_DIR
    config = scale.training_config()
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))
    if run.exists():
        if _run_matches(run, data, wanted):
            stage.reused(f"{run} (same settings, same dataset SHA-256)")
            return run
        stage.note(f"{run} was trained on other data or settings: kept as {move_aside(run).name}")

    def report(name: str, done: float, total: float, detail: str) -> None:
        stage.update(done, total, f"{name} {detail}".strip())

    train(data, run, config, progress=report)
    metrics = json.loads((run / "metrics.json").read_text())["heldout_subjects"]["summary"]
    stage.outcome.note = (
        f"held-out subjects: worst muscle R² {metrics['r2_min']:.4f} ({metrics['worst_muscle']})"
    )
    return run


def signing_key(out_dir: Path, stage: StageReporter) -> tuple[Path, Path]:
    """An existing key is always kept (bundles signed with it stay valid); never overwritten."""
    key = out_dir / KEY_FILE
    if key.is_file():
        load_private_key(key)  # raises BundleError naming the file if it is not a key
        pub = key.with_suffix(".pub")
        if not pub.is_file():
            raise BundleError(pub, "missing next to its private key")
        stage.note(f"signing key: reusing {key}")
        return key, pub
    pub = generate_key_pair(key)
    stage.note(f"signing key: new Ed25519 pair {key} (0600) and {pub.name}")
    return key, pub


def envelope_grid(out_dir: Path, scale: DemoScale, stage: StageReporter) -> Path:
    from host_training.rom.envelope import (
        COARSE_GRID_AXES,
        DEFAULT_GRID_AXES,
        EnvelopeResolution,
        simulate_envelope_grid,
    )
    from quantization.errors import QuantizationError
    from quantization.pipeline import load_envelope_grid

    path = out_dir / ENVELOPE_GRID_FILE
    axes = DEFAULT_GRID_AXES if scale.full_envelope_grid else COARSE_GRID_AXES
    if path.is_file():
        try:
            grid = load_envelope_grid(path)
            if {k: tuple(float(x) for x in v) for k, v in grid.axes.items()} == axes:
                stage.note(f"envelope grid: reusing {path} ({len(grid.envelopes)} nodes)")
                return path
        except (QuantizationError, EnvelopeError, OSError, ValueError):
            pass
        stage.note(f"{path} is another grid: kept as {move_aside(path).name}")
    res = EnvelopeResolution() if scale.full_envelope_grid else EnvelopeResolution.coarse()
    grid = simulate_envelope_grid(
        axes, res, progress=lambda done, total: stage.update(done, total, "envelope nodes")
    )
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(grid.to_dict(), indent=1) + "\n")
    stage.note(f"envelope grid: {len(grid.envelopes)} nodes -> {path}")
    return path


def _bundle_matches(bundle: Path, pub: Path, run: Path, scale: DemoScale) -> VerifiedBundle | None:
    """The bundle, if it was made from this run as this version makes it: the int8 model the
    quantiser ships by default, gated with this scale's tolerances."""
    from quantization.pipeline import DEFAULT_ACTIVATIONS

    try:
        checked = verify_model_bundle(bundle, load_public_key(pub))
        made_from = checked.manifest.training
        manifest = json.loads((run / "manifest.json").read_text())
    except (BundleError, ForceModelError, OSError, ValueError, KeyError):
        return None
    same = made_from.get("created_utc") == manifest.get("created_utc") and made_from.get(
        "dataset"
    ) == manifest.get("dataset")
    gate = checked.manifest.gate
    same_gate = (
        checked.manifest.document.get("quantisation", {}).get("activations") == DEFAULT_ACTIVATIONS
        and gate.get("tolerance_r2") == scale.gate_tolerance
        and gate.get("heldout_family", {}).get("tolerance_r2") == scale.family_gate_tolerance
    )
    return checked if same and same_gate else None


def model_bundle(
    out_dir: Path, scale: DemoScale, run: Path, stage: StageReporter
) -> tuple[VerifiedBundle, Path]:
    """Signing key, envelope grid, int8 quantisation with the accuracy gate, the signed bundle
    checked as a hub would; returns it and the public key."""
    from quantization.cli import quantize_run

    key, pub = signing_key(out_dir, stage)
    grid = envelope_grid(out_dir, scale, stage)
    bundle = out_dir / BUNDLE_DIR
    if bundle.exists():
        checked = _bundle_matches(bundle, pub, run, scale)
        if checked is not None:
            stage.reused(f"{bundle}: verified, made from this run")
            return checked, pub
        stage.note(f"{bundle} is not this run's: kept as {move_aside(bundle).name}")
    steps = {"n": 0}

    def line(text: str) -> None:
        steps["n"] += 1
        stage.update(steps["n"], None, text.removeprefix("[quantize] ")[:70])
        if "gate:" in text:
            stage.note(text.removeprefix("[quantize] "))

    checked = quantize_run(
        run, bundle, key, grid, tolerance=scale.gate_tolerance, on_line=line,
        family_tolerance=scale.family_gate_tolerance,
        rmse_tolerance=scale.gate_rmse_tolerance_pct_fmax,
    )  # fmt: skip
    gate = checked.manifest.gate
    stage.outcome.note = (
        f"version {checked.version}, int8 worst R² {gate['r2_min_int8']:.4f}, "
        f"largest drop {gate['largest_r2_drop']:.4f} (gate {scale.gate_tolerance}); "
        f"golden vectors reproduced on {checked.runtime}"
    )
    return checked, pub
