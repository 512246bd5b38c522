"""Training the muscle-force network: kinematics + anthropometrics -> 72 forces (N).

- Splits by subject (no subject in two splits), seeded; one motion family (circumduction by
  default) is held out of training and validation entirely and evaluated on the test subjects.
- Inputs and outputs are normalised outside the network (int8 needs it); the network predicts
  standardised sqrt(force) (see ``OUTPUT_TRANSFORMS``: it keeps int8 accurate on spiky forces),
  and the loss is the mean squared error of those plus a share of the force error in newtons
  (``learning.loss``), every muscle weighing the same.
- After fine-tuning, each muscle's output range is folded into the last layer and the feature
  spec (``learning.qat.OutputGrid``), so every muscle gets the whole int8 output grid.
- A ReLU MLP (int8-friendly), Adam with a cosine learning-rate decay over as many epochs as the
  wall-clock budget holds (measured on epoch 1; ``epochs`` fixes it for reproducible schedules),
  early stopping on validation loss (the best epoch's weights are kept).
- Training frames are every ``frame_stride``-th frame: at 100 Hz neighbouring frames are nearly
  identical, so a stride of 2 halves the epoch time without losing information.
- A share of the training trajectories is shown as the hub measures it (``hub_view``), and the
  data are read in bounded memory (``training_data``): the stages are in ``train``'s docstring.

The run directory is written by ``learning.run`` (whole or not at all) and evaluated by
``learning.evaluation``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.confidence import disagreement
from edge_runtime.contracts.feature_spec import (
    DEFAULT_FEATURES,
    FeatureSpec,
    default_input_transforms,
)
from edge_runtime.contracts.training_run import MIN_CALIBRATION_ROWS
from host_training.errors import TrainingError
from host_training.learning.calibration import calibration_rows
from host_training.learning.confidence import DEFAULT_FLAG_RATE
from host_training.learning.evaluation import evaluate_test_subjects
from host_training.learning.hub_view import HubInputView
from host_training.learning.loss import TrainingLoss
from host_training.learning.network import NetworkConfig, forces_of_rows, predict
from host_training.learning.qat import (
    OutputGrid,
    activation_ranges,
    fold_output_grid,
    int8_forward,
    spec_after_fold,
)
from host_training.learning.run import parent_dir, write_run
from host_training.learning.training_data import PreparedData, TrainingSet, prepare
from host_training.model.anatomy import load_anatomy
from host_training.simulation.frames import (
    dataset_families,
    dataset_fingerprint,
    dataset_subject_ids,
)

# the run directory's files: edge_runtime.contracts.training_run.RunLayout


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
    # train on the first N training subjects of the seeded order only (None: all of them); the
    # validation and test subjects stay the same, so runs of a learning curve are comparable
    max_train_subjects: int | None = None
    heldout_family: str = "circumduction"
    seed: int = 0
    input_normalisation: str = "range"
    output_normalisation: str = "standard"
    output_transform: str = "sqrt"
    calibration_samples: int = 8192
    gate_samples: int = 50_000
    # share of the training trajectories shown as the hub measures them (learning.hub_view)
    hub_view_share: float = 0.5
    # weight of the force-space term of the loss (learning.loss); 0: sqrt-space error alone.
    # 0.3: on two seeds of the demo dataset, held-out subjects' worst muscle +0.001/+0.017 and
    # end to end from IMUs +0.013/+0.009; the unseen circumduction's worst -0.014/-0.037 (README)
    force_loss_weight: float = 0.3
    # training rows held in memory at once: all of them when they fit in half of it, else a
    # buffer of shards at a time (host_training.learning.training_data)
    memory_budget_mb: float = 4096.0
    # the confidence twin (learning.confidence): a second, smaller network fitted on the same
    # rows from another initialisation and order, on this share of the time budget (or of the
    # fixed epochs); its disagreement with the network flags untrusted frames. None: no twin
    twin_hidden_units: tuple[int, ...] | None = (128, 128)
    twin_budget_share: float = 0.2
    confidence_flag_rate: float = DEFAULT_FLAG_RATE  # of validation frames: sets the threshold

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
        if self.twin_hidden_units is not None and (
            not self.twin_hidden_units or min(self.twin_hidden_units) < 1
        ):
            problems.append(f"twin_hidden_units {self.twin_hidden_units}")
        if not 0.0 < self.twin_budget_share < 1.0 or not 0.0 < self.confidence_flag_rate < 1.0:
            problems.append(
                f"twin_budget_share {self.twin_budget_share} / confidence_flag_rate "
                f"{self.confidence_flag_rate} (shares, strictly between 0 and 1)"
            )
        if self.max_train_subjects is not None and self.max_train_subjects < 1:
            problems.append(f"max_train_subjects {self.max_train_subjects}")
        if not 0.0 <= self.force_loss_weight <= 100.0:
            problems.append(f"force_loss_weight {self.force_loss_weight} (0..100)")
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
    train = np.concatenate([order[n_test + n_val :][: config.max_train_subjects], anchors])
    return Splits(*(tuple(sorted(int(s) for s in part)) for part in (train, val, test)))


def cosine_learning_rate(peak: float, epoch: int, epochs: int, floor: float = 0.01) -> float:
    """Cosine decay from ``peak`` to ``floor * peak`` over ``epochs`` epochs."""
    progress = min(1.0, epoch / max(1, epochs - 1))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def run_epoch(
    network: Any,
    optimiser: Any,
    batches: Iterable[tuple[Any, Any]],
    forward: Callable[[Any], Any],
    loss_of: TrainingLoss,
) -> float:
    """One pass of minibatch training over ``batches``; returns the mean training loss."""
    network.train()
    total, count = 0.0, 0
    for x, y in batches:
        optimiser.zero_grad(set_to_none=True)
        loss = loss_of.torch(forward(x), y)
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
    loss_of: TrainingLoss,
    grid: OutputGrid | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune with int8 simulated (see learning.qat); keeps the epoch whose simulated
    int8 validation loss is lowest. Returns the epochs' history entries. The output is simulated
    on ``grid`` (None: the network's own, calibrated every epoch like the other ranges)."""
    import torch

    optimiser = torch.optim.Adam(network.parameters(), lr=config.qat_learning_rate)
    history: list[dict[str, Any]] = []
    best_loss, best_state = float("inf"), dict(network.state_dict())
    for epoch in range(config.qat_epochs):
        started = time.perf_counter()
        lr = cosine_learning_rate(config.qat_learning_rate, epoch, config.qat_epochs)
        for group in optimiser.param_groups:
            group["lr"] = lr
        epoch_grid = grid or OutputGrid.calibrated(network, calib_x)
        ranges = activation_ranges(network, calib_x, epoch_grid)  # what the converter will see

        def simulated_int8(
            x: Any, ranges: list[tuple[float, float]] = ranges, g: OutputGrid = epoch_grid
        ) -> Any:
            return int8_forward(network, x, ranges, g)

        train_loss = run_epoch(
            network, optimiser, training_set.batches(generator), simulated_int8, loss_of
        )
        with torch.inference_mode():
            epoch_grid = grid or OutputGrid.calibrated(network, calib_x)
            ranges = activation_ranges(network, calib_x, epoch_grid)
            simulated = int8_forward(network, torch.from_numpy(x_val), ranges, epoch_grid).numpy()
        val_loss = loss_of.numpy(simulated, y_val)
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
    with tempfile.TemporaryDirectory(
        prefix=f".{out_dir.name}.cache.", dir=parent_dir(out_dir)
    ) as c:
        learned = _learn(data_dir, splits, muscles, fmax, config, view,
                         Path(c), report)  # fmt: skip
    tested = evaluate_test_subjects(data_dir, learned.network, learned.spec, splits, config, fmax,
                                    report)  # fmt: skip
    metrics = tested.metrics(muscles, fmax, config.heldout_family)
    write_run(
        out_dir, learned.network, learned.twin, learned.spec, config, fmax, learned.calib_x,
        tested, metrics,
        manifest={
            "dataset": fingerprint,
            "input_view": {**view.to_dict(), "changed": learned.viewed},
            "confidence": learned.confidence,
            "splits": {
                "train": list(splits.train),
                "val": list(splits.val),
                "test": list(splits.test),
                "heldout_family": config.heldout_family,
                "frames": {
                    **learned.frames,
                    "test": tested.seen.n,
                    "heldout_motion": tested.heldout.n,
                },
            },
            "training": {
                **learned.fitting,
                "epochs": len(learned.history),
                "history": learned.history,
                "seconds": time.perf_counter() - started,
                "in_memory": learned.in_memory,
                # the process's peak resident memory (preparation, training and evaluation)
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            },
        },
        report=report,
    )  # fmt: skip
    return metrics


@dataclass
class _Learned:
    """What the learning stages hand on to evaluation and the run directory."""

    network: Any
    spec: FeatureSpec
    calib_x: npt.NDArray[np.float32]  # the int8 calibration inputs (model space)
    history: list[dict[str, Any]]  # float epochs, then int8 fine-tuning epochs
    fitting: dict[str, Any]  # planned and best epoch, why it stopped, frames/s
    frames: dict[str, int]  # training and validation frames
    in_memory: bool
    viewed: dict[str, Any]  # what the hub input view changed
    twin: Any | None  # the confidence twin (None: trained without)
    confidence: dict[str, Any] | None  # the manifest's confidence section


def _learn(
    data_dir: Path,
    splits: Splits,
    muscles: Sequence[str],
    fmax: Sequence[float],
    config: TrainConfig,
    view: HubInputView,
    cache_dir: Path,
    report: ProgressFn,
) -> _Learned:
    """Prepare the training data in one pass over the shards, fit the float network, choose the
    calibration rows and fine-tune for int8."""
    import torch

    input_transforms = default_input_transforms(DEFAULT_FEATURES)
    prepared = prepare(
        data_dir, DEFAULT_FEATURES, muscles, splits.train, splits.val, config.heldout_family,
        cache_dir, frame_stride=config.frame_stride, input_transforms=input_transforms,
        output_transform=config.output_transform, view=view,
        calibration_samples=config.calibration_samples, seed=config.seed,
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
    main_config = config
    if config.twin_hidden_units:  # the twin's share of the budget comes out of the network's
        main_config = dataclasses.replace(
            config,
            time_budget_s=config.time_budget_s * (1 - config.twin_budget_share),
            epochs=config.epochs and max(2, round(config.epochs * (1 - config.twin_budget_share))),
        )
    loss_of = TrainingLoss.of(spec, prepared.force_stats.std, config.force_loss_weight)
    network, fitting = _fit(
        training_set, x_val, y_val, spec, main_config, generator, report, loss_of
    )
    calib = calibration_rows(
        candidates, np.arange(len(candidates)), config.calibration_samples, config.seed
    )
    calib_x = spec.model_inputs(candidates.x[calib])
    history = fitting.pop("history")
    float_seconds = sum(h["seconds"] for h in history)
    fitting["train_frames_per_s"] = (  # frames through the optimiser per second, float loop
        len(training_set) * len(history) / max(float_seconds, 1e-9)
    )
    if config.qat_epochs:
        history += quantisation_aware_finetune(
            network, training_set, x_val, y_val, calib_x, config, generator, report, loss_of
        )
    # every muscle its whole int8 output grid (learning.qat): the twin shares the spec, so it is
    # tuned for and folded onto the network's grid
    grid = OutputGrid.calibrated(network, calib_x)
    twin, confidence = None, None
    if config.twin_hidden_units:
        twin, confidence = _fit_twin(network, training_set, x_val, y_val, calib_x, spec, config,
                                     prepared.val_x, np.asarray(fmax), report,
                                     loss_of, grid)  # fmt: skip
    for folded in (network, twin):
        if folded is not None:
            fold_output_grid(folded, grid)
    spec = spec_after_fold(spec, grid)
    return _Learned(network, spec, calib_x, history, fitting,
                    {"train": len(training_set), "val": len(x_val)}, training_set.in_memory,
                    prepared.viewed, twin, confidence)  # fmt: skip


def _fit_twin(
    network: Any,
    training_set: TrainingSet,
    x_val: npt.NDArray[np.float32],
    y_val: npt.NDArray[np.float32],
    calib_x: npt.NDArray[np.float32],
    spec: FeatureSpec,
    config: TrainConfig,
    val_inputs: npt.NDArray[Any],
    fmax: npt.NDArray[np.float64],
    report: ProgressFn,
    loss_of: TrainingLoss,
    grid: OutputGrid,
) -> tuple[Any, dict[str, Any]]:
    """The confidence twin: the same rows, another initialisation and batch order, its own
    int8 fine-tuning (on the network's output ``grid``, which it will be folded onto); and the
    threshold that flags ``confidence_flag_rate`` of the validation frames (seen families only:
    the held-out family is in neither training nor validation)."""
    import torch

    assert config.twin_hidden_units is not None
    share = config.twin_budget_share
    twin_config = dataclasses.replace(
        config,
        hidden_units=config.twin_hidden_units,
        time_budget_s=config.time_budget_s * share,
        epochs=config.epochs and max(2, round(config.epochs * share)),
    )
    torch.manual_seed(config.seed + 1)
    generator = torch.Generator().manual_seed(config.seed + 1)

    def twin_report(stage: str, done: float, total: float, detail: str) -> None:
        report(f"confidence twin: {stage}", done, total, detail)

    twin, fitting = _fit(
        training_set, x_val, y_val, spec, twin_config, generator, twin_report, loss_of
    )
    history = fitting.pop("history")
    if config.qat_epochs:
        history += quantisation_aware_finetune(
            twin,
            training_set,
            x_val,
            y_val,
            calib_x,
            twin_config,
            generator,
            twin_report,
            loss_of,
            grid,
        )
    scores = disagreement(
        forces_of_rows(network, spec, val_inputs), forces_of_rows(twin, spec, val_inputs), fmax
    )
    return twin, {
        "twin": twin_config.network.to_dict(),
        "threshold_of_fmax": float(np.quantile(scores, 1 - config.confidence_flag_rate)),
        "flag_rate": config.confidence_flag_rate,
        "validation_frames": len(scores),
        "training": {**fitting, "epochs": len(history), "history": history},
    }


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


def planned_epochs(config: TrainConfig, epoch_seconds: Sequence[float]) -> int:
    """How many float epochs the time budget holds, planned again after every epoch: the cosine
    schedule needs its length. A typical epoch is the median of those so far, so one slow epoch
    (a busy moment, the first epoch's warm-up) does not shorten the whole schedule: planned once
    from the first epoch, a run whose first epoch took twice the usual time got 11 epochs instead
    of about 30 (worst R² on its held-out family 0.66 against 0.83). Quantisation-aware epochs
    cost about 1.5 float epochs each and come out of the budget."""
    typical = float(np.median(epoch_seconds))
    left = config.time_budget_s - sum(epoch_seconds) - 1.5 * config.qat_epochs * typical
    more = int(left / typical) if left > 0 else 0
    return max(2, min(config.max_epochs, len(epoch_seconds) + more))


def _fit(
    training_set: TrainingSet,
    x_val: npt.NDArray[np.float32],
    y_val: npt.NDArray[np.float32],
    spec: FeatureSpec,
    config: TrainConfig,
    generator: Any,
    report: ProgressFn,
    loss_of: TrainingLoss,
) -> tuple[Any, dict[str, Any]]:
    """The float network: Adam, cosine decay over as many epochs as the budget holds, early
    stopping on validation loss (the best epoch's weights are kept)."""
    import torch

    network = config.network.build(len(spec.features), len(spec.outputs))
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    history: list[dict[str, Any]] = []
    best_loss, best_epoch, best_state = float("inf"), -1, dict(network.state_dict())
    stopped = "planned_epochs"
    planned = config.epochs or config.max_epochs  # fitted to the time budget after each epoch
    loop_started = time.perf_counter()
    epoch = 0
    while epoch < planned:
        epoch_started = time.perf_counter()
        lr = cosine_learning_rate(config.learning_rate, epoch, planned)
        for group in optimiser.param_groups:
            group["lr"] = lr
        train_loss = run_epoch(
            network, optimiser, training_set.batches(generator), network, loss_of
        )
        val_loss = loss_of.numpy(predict(network, x_val), y_val)
        seconds = time.perf_counter() - epoch_started
        history.append({"epoch": epoch, "phase": "float", "train_loss": train_loss,
                        "val_loss": val_loss, "lr": lr, "seconds": seconds})  # fmt: skip
        if val_loss < best_loss * (1 - 1e-4):
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        if config.epochs is None:
            planned = planned_epochs(config, [h["seconds"] for h in history])
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


__all__ = ["TrainConfig", "TrainingError", "split_subjects", "train"]
