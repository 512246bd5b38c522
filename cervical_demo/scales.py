"""How big the demo is: ``tiny`` (tests, ~3 min), ``default`` (a fresh machine: well inside 20
min on 2 cores), ``full`` (the scale of the figures in the README: 1,000 subjects, 30 epochs, the
full envelope grid; about 50 min on 2 cores and 15 GB of memory).

A scale fixes everything a finished stage depends on, so an output folder holds one scale: a
re-run at the same scale reuses finished stages, a re-run at another scale is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

POPULATION_SIZE = 1_000_000
POPULATION_SEED = 7
MOTION_SEED = 7
SOLVER = "fast"


@dataclass(frozen=True)
class DemoScale:
    name: str
    subjects: int  # simulated: population ids 0..subjects-1
    motions: str  # motion set name (host_training.simulation.motions)
    shard_subjects: int
    hidden_units: tuple[int, ...]
    train_budget_s: float  # the training loop's wall-clock budget
    epochs: int | None  # a fixed schedule (None: as many epochs as the budget holds)
    max_epochs: int
    batch_size: int
    calibration_samples: int
    gate_samples: int
    gate_tolerance: float  # largest per-muscle R² drop float -> int8 the bundle may have
    family_gate_tolerance: float  # the same on the motion family the network never saw
    gate_rmse_tolerance_pct_fmax: float  # largest int8-vs-float RMS force of any muscle
    full_envelope_grid: bool  # 54 nodes (~5 min on 2 cores) instead of 8 coarse ones (~10 s)
    replay_speed: float  # the virtual hub's simulated sensors, times real time
    wear_days: int = 28  # the patient's days before today the hub records (cervical_demo.weeks)
    wear_min_per_day: float = 21.0  # just over a day the change judgement counts (20 min)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_config(self) -> Any:
        from host_training.learning.training import TrainConfig

        return dataclasses.replace(
            TrainConfig(),
            hidden_units=self.hidden_units,
            time_budget_s=self.train_budget_s,
            epochs=self.epochs,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            calibration_samples=self.calibration_samples,
            gate_samples=self.gate_samples,
        )


# a fresh machine: a few minutes of simulation (the everyday motion set: the library, everyday
# families and the input-box sampler) and 6 min of training on 2 cores: 5 for the network and 1
# for its confidence twin (training's twin_budget_share, 0.2). With 5 min in all, the network got
# 4 (40-45 epochs instead of 56), was less converged (held-out worst R² 0.92 instead of 0.95) and
# failed the int8 gate (a 0.0066 drop against 0.005), measured on a quiet machine
DEFAULT = DemoScale(
    name="default",
    subjects=60,
    motions="everyday",
    shard_subjects=10,
    hidden_units=(256, 256, 256),
    train_budget_s=375.0,
    epochs=None,
    max_epochs=200,
    batch_size=2048,
    calibration_samples=8192,
    gate_samples=50_000,
    gate_tolerance=0.005,
    family_gate_tolerance=0.005,  # quantization.pipeline.R2_FAMILY_TOLERANCE (per frame)
    gate_rmse_tolerance_pct_fmax=0.5,  # quantization.pipeline.INT8_RMSE_TOLERANCE_PCT_FMAX
    full_envelope_grid=False,
    replay_speed=10.0,
)
SCALES = {
    # the smallest real pipeline: a tiny network is not accurate enough for the release gate
    # (0.005), so its gate is 0.05, and the summary says so; it does not generalise to a motion
    # family it never saw, so int8 is not judged there
    "tiny": dataclasses.replace(
        DEFAULT,
        name="tiny",
        subjects=24,
        motions="tiny",
        shard_subjects=6,
        hidden_units=(64, 64),
        train_budget_s=40.0,
        max_epochs=400,
        batch_size=256,
        calibration_samples=5000,
        gate_samples=3000,
        gate_tolerance=0.05,
        family_gate_tolerance=1000.0,
        gate_rmse_tolerance_pct_fmax=100.0,
        replay_speed=20.0,
        wear_days=8,  # a baseline week and a day: too little wear a day to judge change
        wear_min_per_day=2.0,
    ),
    "default": DEFAULT,
    # the README's figures: 1,000 subjects, 30 epochs, the 54-node envelope grid
    "full": dataclasses.replace(
        DEFAULT,
        name="full",
        subjects=1000,
        train_budget_s=7200.0,
        epochs=30,
        full_envelope_grid=True,
    ),
}
