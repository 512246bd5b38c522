"""A training run's directory: written whole or not at all, and loaded back, checked, for use.

The layout and the manifest's core are the contract ``edge_runtime.contracts.training_run``
(``RunLayout``, ``RunManifest``), which evaluation and quantisation read too; this module writes
that layout and loads it back into a ready network.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import FeatureSpec
from edge_runtime.contracts.training_run import RUN_FORMAT, RunError, RunLayout, RunManifest
from host_training.errors import TrainingError
from host_training.learning.metrics import json_safe
from host_training.learning.network import (
    NetworkConfig,
    NetworkError,
    export_onnx,
    forces_of_rows,
    load_weights,
    save_weights,
)
from host_training.model.anatomy import load_anatomy

if TYPE_CHECKING:  # the writer's inputs; both modules import this one
    from host_training.learning.evaluation import TestEvaluation
    from host_training.learning.training import TrainConfig

ProgressFn = Callable[[str, float, float, str], None]  # (stage, done, total, detail)


@dataclass(frozen=True)
class Run:
    """A finished run directory, loaded for evaluation or quantisation."""

    path: Path
    manifest: RunManifest
    spec: FeatureSpec
    network: Any
    fmax_n: tuple[float, ...]
    twin: Any | None = None  # the confidence twin (learning.confidence); None: trained without

    def forces(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        return forces_of_rows(self.network, self.spec, x)

    def twin_run(self) -> Run:
        """The twin as a run of its own (same manifest and spec), for side-by-side use."""
        if self.twin is None:
            raise TrainingError(f"{self.path} was trained without a confidence twin")
        return Run(self.path, self.manifest, self.spec, self.twin, self.fmax_n)


def load_run(path: Path) -> Run:
    layout = RunLayout(path)
    try:
        manifest = RunManifest.read(layout)
    except RunError as exc:
        raise TrainingError(str(exc)) from None
    spec = manifest.spec
    try:
        network = load_weights(layout.weights, spec)
        twin = None
        if manifest.confidence is not None:
            layout.require(layout.twin_weights)
            twin = load_weights(layout.twin_weights, spec)
    except (NetworkError, RunError) as exc:
        raise TrainingError(str(exc)) from None
    return Run(path, manifest, spec, network, manifest.fmax_n, twin)


def write_run(
    out_dir: Path,
    network: Any,
    twin: Any | None,
    spec: FeatureSpec,
    config: TrainConfig,
    fmax: Sequence[float],
    calib_x: npt.NDArray[np.float32],
    tested: TestEvaluation,
    metrics: dict[str, Any],
    manifest: dict[str, Any],
    report: ProgressFn,
) -> None:
    """Write the run directory whole or not at all: built in a hidden temporary directory beside
    ``out_dir``, renamed into place. ``manifest`` holds the run's own sections (dataset, splits,
    training); the network, feature spec, muscles and metrics are added here."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent_dir(out_dir)))
    try:
        layout = RunLayout(tmp)
        np.save(layout.calibration, calib_x)
        # the int8 gate checks held-out subjects on seen motions (part 0) and on the held-out
        # motion family (part 1): quantisation error is largest where the network extrapolates
        gate_parts = [sample.columns() for sample in tested.gate]
        np.savez_compressed(
            layout.gate,
            x=np.concatenate([p[0] for p in gate_parts]).astype(np.float64),
            y=np.concatenate([p[1] for p in gate_parts]),
            y_float=np.concatenate([p[2] for p in gate_parts]),
            subject_id=np.concatenate([p[3] for p in gate_parts]),
            part=np.repeat(np.arange(2, dtype=np.int8), [len(p[0]) for p in gate_parts]),
            heldout_family=np.array(config.heldout_family),
        )
        save_weights(network, config.network, spec, layout.weights)
        export_onnx(network, spec.n_inputs, layout.onnx)
        if twin is not None:
            assert config.twin_hidden_units is not None
            twin_config = NetworkConfig(config.twin_hidden_units)
            save_weights(twin, twin_config, spec, layout.twin_weights)
            export_onnx(twin, spec.n_inputs, layout.twin_onnx)
        document = {
            "format": RUN_FORMAT,
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": _git_commit(),
            "feature_spec": spec.to_dict(),
            "muscles": _muscle_entries(spec.outputs, fmax),
            "architecture": config.network.to_dict(),
            "config": dataclasses.asdict(config),
            **manifest,
            "metrics": {
                "heldout_subjects": metrics["heldout_subjects"]["summary"],
                "heldout_motion": metrics["heldout_motion"]["summary"],
            },
        }
        layout.metrics.write_text(json.dumps(json_safe(metrics), indent=1) + "\n")
        layout.manifest.write_text(json.dumps(document, indent=1) + "\n")
        report("plotting", 0, 1, "")
        from host_training.learning.plots import plot_run

        plot_run(tmp, metrics, document["training"]["history"], tested.traces)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _muscle_entries(muscles: Sequence[str], fmax: Sequence[float]) -> list[dict[str, Any]]:
    """Name, maximum isometric force and functional/anatomical groups of each output muscle
    (the hub reports force statistics per group)."""
    groups: dict[str, list[str]] = {}
    for group, member in load_anatomy().muscle_groups:
        groups.setdefault(member, []).append(group)
    return [
        {"name": m, "fmax_n": f, "groups": groups.get(m, [])}
        for m, f in zip(muscles, fmax, strict=True)
    ]


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]  # the repository (host_training/learning/..)
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty.strip() else "")


def parent_dir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent
