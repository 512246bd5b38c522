"""Training the muscle-force network: kinematics + anthropometrics -> 72 forces (N).

- Splits by subject (no subject in two splits), seeded; one motion family (circumduction by
  default) is held out of training and validation entirely and evaluated on the test subjects.
- Inputs and outputs are normalised outside the network (int8 needs it); the network predicts
  standardised sqrt(force) (see ``OUTPUT_TRANSFORMS``: it keeps int8 accurate on spiky forces),
  and the loss is the mean squared error of those, every muscle weighing the same.
- A ReLU MLP (int8-friendly), Adam with a cosine learning-rate decay over as many epochs as the
  wall-clock budget holds (measured on epoch 1; ``epochs`` fixes it for reproducible schedules),
  early stopping on validation loss (the best epoch's weights are kept).
- Training frames are every ``frame_stride``-th frame: at 100 Hz neighbouring frames are nearly
  identical, so a stride of 2 halves the epoch time without losing information.
- A share of the training trajectories is shown as the hub measures it (``hub_view``), and the
  data are read in bounded memory (``training_data``): the stages are in ``train``'s docstring.

A run directory is written whole or not at all (built in a hidden temporary directory, renamed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.feature_spec import (
    DEFAULT_FEATURES,
    FeatureSpec,
    default_input_transforms,
)
from edge_runtime.contracts.training_run import (
    MIN_CALIBRATION_ROWS,
    RUN_FORMAT,
    RunError,
    RunLayout,
    RunManifest,
)
from host_training.errors import DatasetError, HostTrainingError
from host_training.learning.calibration import calibration_rows
from host_training.learning.hub_view import HubInputView
from host_training.learning.metrics import ForceMetricsAccumulator, json_safe
from host_training.learning.network import (
    NetworkConfig,
    NetworkError,
    export_onnx,
    forces_of_rows,
    load_weights,
    predict,
    save_weights,
)
from host_training.learning.training_data import PreparedData, TrainingSet, UniformSample, prepare
from host_training.model.anatomy import load_anatomy
from host_training.simulation.frames import (
    Frames,
    dataset_families,
    dataset_fingerprint,
    dataset_subject_ids,
    iter_frames,
)
from host_training.simulation.motions import motion_family

# the run directory's files: edge_runtime.contracts.training_run.RunLayout


class TrainingError(HostTrainingError, ValueError):
    """A training run cannot start or finish; the message names what and why."""


@dataclass(frozen=True)
class TrainConfig:
    hidden_units: tuple[int, ...] = (256, 256, 256)
    batch_size: int = 2048
    learning_rate: float = 2e-3
    max_epochs: int = 200
    epochs: int | None = None  # fixed schedule length; None: as many as time_budget_s holds
    qat_epochs: int = 3  # quantisation-aware fine-tuning after the float epochs (learning.qat)
    qat_learning_rate: float = 1e-4
    patience_epochs: int = 10
    time_budget_s: float = 660.0  # training loop; loading, evaluation and export come on top
    frame_stride: int = 2
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    heldout_family: str = "circumduction"
    seed: int = 0
    input_normalisation: str = "range"
    output_normalisation: str = "standard"
    output_transform: str = "sqrt"
    calibration_samples: int = 8192
    gate_samples: int = 50_000
    # share of the training trajectories shown as the hub measures them (learning.hub_view)
    hub_view_share: float = 0.5
    # training rows held in memory at once: all of them when they fit in half of it, else a
    # buffer of shards at a time (host_training.learning.training_data)
    memory_budget_mb: float = 4096.0

    def check(self) -> None:
        problems = []
        if not self.hidden_units or min(self.hidden_units) < 1:
            problems.append(f"hidden_units {self.hidden_units}")
        if not 0 < self.val_fraction < 0.5 or not 0 < self.test_fraction < 0.5:
            problems.append(f"val/test fractions {self.val_fraction}/{self.test_fraction}")
        if self.calibration_samples < MIN_CALIBRATION_ROWS:
            problems.append(
                f"calibration_samples {self.calibration_samples} (need >= {MIN_CALIBRATION_ROWS})"
            )
        for name in ("batch_size", "max_epochs", "patience_epochs", "frame_stride", "gate_samples"):
            if getattr(self, name) < 1:
                problems.append(f"{name} {getattr(self, name)}")
        if not 1 <= self.memory_budget_mb <= 2**20:
            problems.append(f"memory_budget_mb {self.memory_budget_mb} (1 MB .. 1 TB)")
        if not 0.0 <= self.hub_view_share <= 1.0:
            problems.append(f"hub_view_share {self.hub_view_share} (a share, 0..1)")
        if problems:
            raise TrainingError("invalid training settings: " + ", ".join(problems))

    @property
    def network(self) -> NetworkConfig:
        return NetworkConfig(self.hidden_units)


@dataclass(frozen=True)
class Splits:
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def split_subjects(
    subject_ids: npt.NDArray[Any], config: TrainConfig, always_train: tuple[int, ...] = ()
) -> Splits:
    """Seeded subject-level split; every split gets at least one subject. ``always_train``
    (the population's extreme subjects, ``SimulationConfig.anchor_subjects``) are trained on:
    they exist to widen the training range, and are not drawn for validation or test."""
    anchors = np.intersect1d(np.unique(subject_ids), np.asarray(always_train, dtype=np.int64))
    unique = np.setdiff1d(np.unique(subject_ids), anchors)
    if len(unique) < 3:
        raise TrainingError(f"the dataset has {len(unique)} subjects; a split needs at least 3")
    order = np.random.default_rng([config.seed, 0x5B17]).permutation(unique)
    n_test = max(1, round(config.test_fraction * len(unique)))
    n_val = max(1, round(config.val_fraction * len(unique)))
    if n_test + n_val >= len(unique):
        raise TrainingError(f"{len(unique)} subjects leave none for training")
    test, val = order[:n_test], order[n_test : n_test + n_val]
    train = np.concatenate([order[n_test + n_val :], anchors])
    return Splits(*(tuple(sorted(int(s) for s in part)) for part in (train, val, test)))


def cosine_learning_rate(peak: float, epoch: int, epochs: int, floor: float = 0.01) -> float:
    """Cosine decay from ``peak`` to ``floor * peak`` over ``epochs`` epochs."""
    progress = min(1.0, epoch / max(1, epochs - 1))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


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


def run_epoch(
    network: Any, optimiser: Any, batches: Iterable[tuple[Any, Any]], forward: Callable[[Any], Any]
) -> float:
    """One pass of minibatch MSE training over ``batches``; returns the mean training loss."""
    import torch

    network.train()
    total, count = 0.0, 0
    for x, y in batches:
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(forward(x), y)
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(x)
        count += len(x)
    return total / max(count, 1)


def quantisation_aware_finetune(
    network: Any,
    training_set: TrainingSet,
    x_val: npt.NDArray[np.float32],
    y_val: npt.NDArray[np.float32],
    calib_x: npt.NDArray[np.float32],
    config: TrainConfig,
    generator: Any,
    report: ProgressFn,
) -> list[dict[str, Any]]:
    """Fine-tune with int8 simulated (see learning.qat); keeps the epoch whose simulated
    int8 validation loss is lowest. Returns the epochs' history entries."""
    import torch

    from host_training.learning.qat import activation_ranges, int8_forward

    optimiser = torch.optim.Adam(network.parameters(), lr=config.qat_learning_rate)
    history: list[dict[str, Any]] = []
    best_loss, best_state = float("inf"), dict(network.state_dict())
    for epoch in range(config.qat_epochs):
        started = time.perf_counter()
        lr = cosine_learning_rate(config.qat_learning_rate, epoch, config.qat_epochs)
        for group in optimiser.param_groups:
            group["lr"] = lr
        ranges = activation_ranges(network, calib_x)  # what the converter will calibrate

        def simulated_int8(x: Any, ranges: list[tuple[float, float]] = ranges) -> Any:
            return int8_forward(network, x, ranges)

        train_loss = run_epoch(network, optimiser, training_set.batches(generator), simulated_int8)
        with torch.inference_mode():
            ranges = activation_ranges(network, calib_x)
            simulated = int8_forward(network, torch.from_numpy(x_val), ranges).numpy()
        val_loss = float(np.mean((simulated - y_val) ** 2))
        if val_loss < best_loss:
            best_loss = val_loss
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        history.append({"epoch": epoch, "phase": "quantisation_aware", "val_loss": val_loss,
                        "train_loss": train_loss, "lr": lr,
                        "seconds": time.perf_counter() - started})  # fmt: skip
        report("int8 fine-tuning", epoch + 1, config.qat_epochs, f"int8 val {val_loss:.2e}")
    network.load_state_dict(best_state)
    return history


ProgressFn = Callable[[str, float, float, str], None]  # (stage, done, total, detail)


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


def train(
    data_dir: Path,
    out_dir: Path,
    config: TrainConfig = TrainConfig(),
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train on ``data_dir`` and write the run directory ``out_dir``; returns the metrics.

    The stages: split the subjects, prepare the training data in one pass over the shards
    (``training_data``), fit the float network, fine-tune it for int8, evaluate on the test
    subjects (streamed, shard by shard), write the run. Memory stays bounded by
    ``config.memory_budget_mb`` plus one shard, whatever the dataset's size."""
    import torch

    config.check()
    if out_dir.exists():
        raise TrainingError(
            f"{out_dir} already exists: choose a new --out (runs are never overwritten)"
        )
    report = progress or (lambda *_: None)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    anatomy = load_anatomy()
    muscles = anatomy.muscle_names()
    fmax = [m.max_isometric_force_n for m in anatomy.muscles]
    families = dataset_families(data_dir)
    if config.heldout_family not in families:
        raise TrainingError(
            f"held-out motion family {config.heldout_family!r} is not in {data_dir} "
            f"(families: {families})"
        )
    fingerprint = dataset_fingerprint(data_dir)  # recorded in the run; its config names anchors
    anchors = fingerprint["config"].get("anchor_subjects", [])
    splits = split_subjects(dataset_subject_ids(data_dir), config, tuple(anchors))
    view = HubInputView(share=config.hub_view_share)
    input_transforms = default_input_transforms(DEFAULT_FEATURES)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.cache.", dir=_parent(out_dir)) as c:
        prepared = prepare(
            data_dir, DEFAULT_FEATURES, muscles, splits.train, splits.val,
            config.heldout_family, Path(c), frame_stride=config.frame_stride,
            input_transforms=input_transforms, output_transform=config.output_transform,
            view=view, calibration_samples=config.calibration_samples,
            n_shards=fingerprint["n_shards"], seed=config.seed,
            progress=lambda i, n: report("preparing the training data", i, n, ""),
        )  # fmt: skip
        candidates = prepared.calibration_candidates
        if len(candidates) < config.calibration_samples:
            raise TrainingError(
                f"only {len(candidates)} training frames for int8 calibration; "
                f"{config.calibration_samples} are needed: simulate more subjects or motions"
            )
        spec = _feature_spec(prepared, muscles, input_transforms, config)
        training_set = TrainingSet(prepared, spec, config.batch_size, config.memory_budget_mb)
        x_val = spec.model_inputs(prepared.val_x)
        y_val = spec.targets_from_forces(prepared.val_y)
        generator = torch.Generator().manual_seed(config.seed)
        network, fitting = _fit(training_set, x_val, y_val, spec, config, generator, report)
        calib = calibration_rows(
            candidates, np.arange(len(candidates)), config.calibration_samples, config.seed
        )
        calib_x = spec.model_inputs(candidates.x[calib])
        history = fitting.pop("history")
        if config.qat_epochs:
            history += quantisation_aware_finetune(
                network, training_set, x_val, y_val, calib_x, config, generator, report
            )
    float_epochs = [h for h in history if h["phase"] == "float"]
    fitting["train_frames_per_s"] = (  # frames through the optimiser per second, float loop
        len(training_set) * len(float_epochs) / max(sum(h["seconds"] for h in float_epochs), 1e-9)
    )
    tested = _evaluate_test_subjects(data_dir, network, spec, splits, config, fmax, report)
    metrics = tested.metrics(muscles, fmax, config.heldout_family)

    _write_run(
        out_dir, network, spec, config, fmax, calib_x, tested, metrics,
        manifest={
            "dataset": fingerprint,
            "input_view": {**view.to_dict(), "changed": prepared.viewed},
            "splits": {
                "train": list(splits.train),
                "val": list(splits.val),
                "test": list(splits.test),
                "heldout_family": config.heldout_family,
                "frames": {
                    "train": len(training_set),
                    "val": len(x_val),
                    "test": tested.seen.n,
                    "heldout_motion": tested.heldout.n,
                },
            },
            "training": {
                **fitting,
                "epochs": len(history),
                "history": history,
                "seconds": time.perf_counter() - started,
                "in_memory": training_set.in_memory,
                # the process's peak resident memory (preparation, training and evaluation)
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            },
        },
        report=report,
    )  # fmt: skip
    return metrics


def _write_run(
    out_dir: Path,
    network: Any,
    spec: FeatureSpec,
    config: TrainConfig,
    fmax: Sequence[float],
    calib_x: npt.NDArray[np.float32],
    tested: _TestEvaluation,
    metrics: dict[str, Any],
    manifest: dict[str, Any],
    report: ProgressFn,
) -> None:
    """Write the run directory whole or not at all: built in a hidden temporary directory beside
    ``out_dir``, renamed into place. ``manifest`` holds the run's own sections (dataset, splits,
    training); the network, feature spec, muscles and metrics are added here."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=_parent(out_dir)))
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


def _feature_spec(
    prepared: PreparedData,
    muscles: Sequence[str],
    input_transforms: tuple[str, ...],
    config: TrainConfig,
) -> FeatureSpec:
    """The feature spec: normalisations and input range from the training rows' statistics."""
    return FeatureSpec(
        features=DEFAULT_FEATURES,
        outputs=tuple(muscles),
        input_normalisation=prepared.transformed_stats.normalisation(config.input_normalisation),
        output_normalisation=prepared.target_stats.normalisation(
            config.output_normalisation, min_scale=1e-3
        ),
        output_transform=config.output_transform,
        input_transforms=input_transforms,
        input_range=tuple(
            (float(lo), float(hi))
            for lo, hi in zip(prepared.input_stats.lo, prepared.input_stats.hi, strict=True)
        ),
    )


def _fit(
    training_set: TrainingSet,
    x_val: npt.NDArray[np.float32],
    y_val: npt.NDArray[np.float32],
    spec: FeatureSpec,
    config: TrainConfig,
    generator: Any,
    report: ProgressFn,
) -> tuple[Any, dict[str, Any]]:
    """The float network: Adam, cosine decay over as many epochs as the budget holds, early
    stopping on validation loss (the best epoch's weights are kept)."""
    import torch

    network = config.network.build(len(spec.features), len(spec.outputs))
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    history: list[dict[str, Any]] = []
    best_loss, best_epoch, best_state = float("inf"), -1, dict(network.state_dict())
    stopped = "planned_epochs"
    planned = config.epochs or config.max_epochs  # fitted to the time budget after epoch 1
    loop_started = time.perf_counter()
    epoch = 0
    while epoch < planned:
        epoch_started = time.perf_counter()
        lr = cosine_learning_rate(config.learning_rate, epoch, planned)
        for group in optimiser.param_groups:
            group["lr"] = lr
        train_loss = run_epoch(network, optimiser, training_set.batches(generator), network)
        val_loss = float(np.mean((predict(network, x_val) - y_val) ** 2))
        seconds = time.perf_counter() - epoch_started
        history.append({"epoch": epoch, "phase": "float", "train_loss": train_loss,
                        "val_loss": val_loss, "lr": lr, "seconds": seconds})  # fmt: skip
        if val_loss < best_loss * (1 - 1e-4):
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        if epoch == 0 and config.epochs is None:
            # The cosine schedule needs its length up front: as many epochs as the budget holds.
            # Quantisation-aware epochs cost about 1.5 float epochs each and come out of it.
            float_budget = config.time_budget_s - 1.5 * config.qat_epochs * seconds
            planned = max(2, min(config.max_epochs, int(float_budget / seconds)))
        report(
            "training",
            epoch + 1,
            planned,
            f"val {val_loss:.2e} (best {best_loss:.2e} @ {best_epoch + 1}), lr {lr:.1e}",
        )
        epoch += 1
        if epoch - 1 - best_epoch >= config.patience_epochs:
            stopped = "early_stopping"
            break
        if time.perf_counter() - loop_started > config.time_budget_s * 1.15:
            stopped = "time_budget"  # a slower machine than epoch 1 promised
            break
    network.load_state_dict(best_state)
    return network, {"planned_epochs": planned, "best_epoch": best_epoch, "stopped": stopped,
                     "history": history}  # fmt: skip


@dataclass
class _TestEvaluation:
    """Everything the run reports about its test subjects, gathered shard by shard."""

    seen: ForceMetricsAccumulator  # seen families, box frames apart
    heldout: ForceMetricsAccumulator  # the held-out family
    per_family: dict[str, ForceMetricsAccumulator]
    gate: tuple[UniformSample, UniformSample]  # (x, y, y_float, subject) of part 0 and part 1
    traces: list[dict[str, Any]]

    def metrics(
        self, muscles: Sequence[str], fmax: Sequence[float], heldout_family: str
    ) -> dict[str, Any]:
        test = self.seen.result(muscles, fmax)
        motion = self.heldout.result(muscles, fmax)
        return {
            "r2_per_muscle": test["r2_per_muscle"],
            "r2_per_muscle_heldout_motion": motion["r2_per_muscle"],
            "heldout_subjects": test,
            "heldout_subjects_per_family": {  # the box frames' figures are here
                f: acc.result(muscles, fmax)["summary"]
                for f, acc in sorted(self.per_family.items())
                if acc.n > 1
            },
            "heldout_motion": {"family": heldout_family, **motion},
        }


def _evaluate_test_subjects(
    data_dir: Path,
    network: Any,
    spec: FeatureSpec,
    splits: Splits,
    config: TrainConfig,
    fmax: Sequence[float],
    report: ProgressFn,
) -> _TestEvaluation:
    """Predict every test-subject frame, one shard at a time, into the accumulators."""
    n = len(spec.outputs)
    result = _TestEvaluation(
        seen=ForceMetricsAccumulator(n, config.seed),
        heldout=ForceMetricsAccumulator(n, config.seed),
        per_family={},
        gate=(
            UniformSample(config.gate_samples, config.seed),
            UniformSample(config.gate_samples, config.seed + 1),
        ),
        traces=[],
    )
    parts = iter_frames(data_dir, spec.features, spec.outputs, splits.test,
                        lambda i, k: report("evaluating", i, k, ""))  # fmt: skip
    for part in parts:
        predicted = forces_of_rows(network, spec, part.x)
        heldout = part.family_mask(config.heldout_family)
        box = part.family_mask("box")
        for accumulator, sample, rows in (
            (result.seen, result.gate[0], ~heldout & ~box),
            (result.heldout, result.gate[1], heldout),
        ):
            accumulator.add(part.y[rows], predicted[rows])
            sample.add(part.x[rows], part.y[rows], predicted[rows], part.subject_id[rows])
        for family in part.families():
            if family != config.heldout_family:
                rows = part.family_mask(family)
                acc = result.per_family.setdefault(family, ForceMetricsAccumulator(n, config.seed))
                acc.add(part.y[rows], predicted[rows])
        if splits.test[0] in part.subject_id and not result.traces:
            result.traces = _example_traces(part, predicted, splits.test[0], config)
    if not result.seen.n or not result.heldout.n:
        raise TrainingError(
            f"{data_dir}: the test subjects {list(splits.test)[:5]} have no frames of the "
            f"seen families or of {config.heldout_family!r}"
        )
    return result


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def _example_traces(
    part: Frames, predicted: npt.NDArray[np.float32], subject: int, config: TrainConfig
) -> list[dict[str, Any]]:
    """Predicted vs simulated forces over one held-out subject's trials (one seen-family motion,
    one of the held-out family), for the trace plot."""
    rows = part.subject_id == subject
    traces = []
    for family in ("single_plane", config.heldout_family):
        codes = [i for i, m in enumerate(part.motion_ids) if motion_family(m) == family]
        if not codes:
            continue
        mask = rows & (part.motion_code == codes[min(2, len(codes) - 1)])
        if not mask.any():
            continue
        traces.append(
            {
                "title": f"subject {subject}, {part.motion_ids[codes[min(2, len(codes) - 1)]]}",
                "t_s": part.frame[mask] / 100.0,
                "simulated_n": part.y[mask],
                "predicted_n": predicted[mask],
            }
        )
    return traces


@dataclass(frozen=True)
class Run:
    """A finished run directory, loaded for evaluation or quantisation."""

    path: Path
    manifest: dict[str, Any]  # the whole manifest (RunManifest validated its core)
    spec: FeatureSpec
    network: Any
    fmax_n: tuple[float, ...]

    def forces(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        return forces_of_rows(self.network, self.spec, x)


def load_run(path: Path) -> Run:
    layout = RunLayout(path)
    try:
        manifest = RunManifest.read(layout)
    except RunError as exc:
        raise TrainingError(str(exc)) from None
    spec = manifest.spec
    try:
        network = load_weights(layout.weights, spec)
    except NetworkError as exc:
        raise TrainingError(str(exc)) from None
    return Run(path, dict(manifest.document), spec, network, manifest.fmax_n)


def evaluate(run: Run, data_dir: Path, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The run's metrics on every frame of another dataset, overall and per motion family
    (read one shard at a time: memory independent of the dataset's size)."""
    report = progress or (lambda *_: None)
    muscles = run.spec.outputs
    fmax = list(run.fmax_n)
    n = len(muscles)
    overall = ForceMetricsAccumulator(n)
    per_family: dict[str, ForceMetricsAccumulator] = {}
    out_of_range: dict[str, int] = {}
    parts = iter_frames(data_dir, run.spec.features, muscles,
                        progress=lambda i, k: report("evaluating shards", i, k, ""))  # fmt: skip
    for part in parts:
        predicted = run.forces(part.x)
        overall.add(part.y, predicted)
        for family in part.families():
            rows = part.family_mask(family)
            per_family.setdefault(family, ForceMetricsAccumulator(n)).add(
                part.y[rows], predicted[rows]
            )
        for name, count in run.spec.out_of_range(part.x).items():
            out_of_range[name] = out_of_range.get(name, 0) + count
    if not overall.n:
        raise DatasetError(f"{data_dir}: no frames to evaluate")
    result: dict[str, Any] = {
        "dataset": dataset_fingerprint(data_dir),
        "run": str(run.path),
        "all_frames": overall.result(muscles, fmax),
        "per_family": {
            f: acc.result(muscles, fmax)["summary"]
            for f, acc in sorted(per_family.items())
            if acc.n > 1
        },
        "out_of_training_range": out_of_range,
    }
    result["r2_per_muscle"] = result["all_frames"]["r2_per_muscle"]
    return result


__all__ = ["DatasetError", "TrainConfig", "TrainingError", "evaluate", "load_run", "train"]
