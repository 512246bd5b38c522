"""``cervical bench wear-drift``: how far the neck angles drift over long free-living wear, with
the hub's 6-axis sensors (LSM6DSO: no magnetometer) and, side by side on the same simulated
signals, with a magnetometer (9-axis).

Each simulated wearer moves as in ordinary life (``wear_sim``) for ``minutes``; the IMU simulator
adds trunk motion, mounting misalignment, gyroscope bias (constant, random walk and a warm-up
drift as the sensors reach skin temperature), noise and saturation; the offline IMU path fuses
and calibrates on the session's opening neutral hold and nod. The figure is the error of each
neck angle over the session's last minute: the 95th percentile of |error| over every wearer's
frames there.

The hub does not report 6-axis angles that late: it trusts a 6-axis calibration for
``six_axis_trust_s`` after the neutral hold (``hub.tracking``). The figures also give the 6-axis
error over that horizon (``six_axis_trusted_error_deg_p95``): what the hub does report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from edge_runtime.contracts.neck_angles import NECK_ANGLE_NAMES, rotation_from_neck_angles
from edge_runtime.fusion import neck_kinematics_from_imus
from edge_runtime.hub.tracking import CalibrationSettings
from edge_runtime.imu_sim import ImuErrors, SimulationSetup, simulate_imus
from edge_runtime.wear_sim import NEUTRAL_S, RATE_HZ, free_living_angles, nod_window_s

WARMUP_DRIFT_DEG_S = 0.2  # LSM6DSO zero-rate level change, +-0.01 dps/degC, over ~20 degC
END_S = 60.0


def measure_wear_drift(
    subjects: int, minutes: float, seed: int, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The figures of ``cervical bench wear-drift`` (module docstring)."""
    errors = ImuErrors(gyr_bias_warmup_deg_s=WARMUP_DRIFT_DEG_S)
    setup = replace(SimulationSetup(), errors=errors, calm_s=NEUTRAL_S)
    neutral, nod = nod_window_s()
    trust_s = CalibrationSettings().six_axis_trust_s or minutes * 60.0
    trusted: list[np.ndarray] = []  # 6-axis, within the hub's horizon
    end_errors: dict[str, list[np.ndarray]] = {"6-axis": [], "9-axis": []}
    curves: dict[str, list[np.ndarray]] = {"6-axis": [], "9-axis": []}
    started = time.perf_counter()
    for i in range(subjects):
        t, truth = free_living_angles(minutes * 60.0, seed + i)
        sim = simulate_imus(t, rotation_from_neck_angles(truth), setup, seed=seed + i)
        for name, mag in (("6-axis", False), ("9-axis", True)):
            kin = neck_kinematics_from_imus(sim.head, sim.trunk, neutral, nod, use_magnetometer=mag)
            error = np.abs((np.degrees(kin.angles_rad - truth) + 180.0) % 360.0 - 180.0)
            end_errors[name].append(error[t >= t[-1] - END_S])
            if not mag:
                trusted.append(error[(t >= neutral[0]) & (t < neutral[0] + trust_s)])
            per_minute = error[: len(error) // int(60 * RATE_HZ) * int(60 * RATE_HZ)]
            curves[name].append(per_minute.reshape(-1, int(60 * RATE_HZ), 3).mean(axis=1))
        if progress:
            progress(i + 1)
    out: dict[str, Any] = {
        "subjects": subjects,
        "minutes": minutes,
        "gyr_bias_warmup_deg_s": WARMUP_DRIFT_DEG_S,
        "seconds_per_subject": (time.perf_counter() - started) / max(subjects, 1),
    }
    for name, key in (("6-axis", "six_axis"), ("9-axis", "nine_axis")):
        end = np.concatenate(end_errors[name])
        p95 = np.nanpercentile(end, 95, axis=0)
        out[f"{key}_end_error_deg_p95"] = dict(
            zip(NECK_ANGLE_NAMES, p95.round(3).tolist(), strict=True)
        )
        out[f"{key}_end_error_deg_median"] = dict(
            zip(NECK_ANGLE_NAMES, np.nanmedian(end, axis=0).round(3).tolist(), strict=True)
        )
        out[f"{key}_mean_error_deg_per_minute"] = np.mean(curves[name], axis=0).round(3).tolist()
    out["axial_rotation_error_deg_p95_end"] = out["six_axis_end_error_deg_p95"][NECK_ANGLE_NAMES[2]]
    out["six_axis_trusted_s"] = trust_s
    p95 = np.nanpercentile(np.concatenate(trusted), 95, axis=0)
    out["six_axis_trusted_error_deg_p95"] = dict(
        zip(NECK_ANGLE_NAMES, p95.round(3).tolist(), strict=True)
    )
    return out


def plot_wear_drift(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (("six_axis", "-"), ("nine_axis", "--")):
        curve = np.array(figures[f"{key}_mean_error_deg_per_minute"])
        minutes = np.arange(1, len(curve) + 1)
        for j, name in enumerate(("extension", "bending", "axial rotation")):
            ax.plot(minutes, curve[:, j], style, color=f"C{j}",
                    label=f"{name}, {key.replace('_', '-')}")  # fmt: skip
    ax.set_xlabel("minute of wear")
    ax.set_ylabel("mean |error| (deg)")
    ax.set_yscale("log")
    ax.set_title(f"Neck-angle drift over free-living wear ({figures['subjects']} wearers)")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_wear_drift(
    subjects: Annotated[int, typer.Option(min=1, help="Simulated wearers.")] = 10,
    minutes: Annotated[float, typer.Option(min=2.0, help="Length of each wear session.")] = 30.0,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    plot: Annotated[Path | None, typer.Option(help="Error per minute as a PNG here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Neck-angle error at the end of long free-living wear: the hub's 6-axis path beside a
    9-axis one on the same simulated signals (``axial_rotation_error_deg_p95_end``)."""
    import json

    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("wearers", total=subjects)
        figures = measure_wear_drift(
            subjects, minutes, seed, lambda k: bar.update(task, completed=k)
        )
    if plot is not None:
        plot_wear_drift(figures, plot)
    if as_json:
        print(json.dumps(figures))
        return
    table = Table(
        title=f"error over the last minute of {minutes:g} min of wear, {subjects} wearers"
    )
    table.add_column("path")
    for name in ("extension", "bending", "axial rotation"):
        table.add_column(f"{name} p95 (deg)", justify="right")
    for key, label in (("six_axis", "6-axis (the hub's LSM6DSO)"), ("nine_axis", "9-axis")):
        p95 = figures[f"{key}_end_error_deg_p95"]
        table.add_row(label, *(f"{p95[n]:.1f}" for n in NECK_ANGLE_NAMES))
    p95 = figures["six_axis_trusted_error_deg_p95"]
    label = f"6-axis, first {figures['six_axis_trusted_s']:g} s (what the hub reports)"
    table.add_row(label, *(f"{p95[n]:.1f}" for n in NECK_ANGLE_NAMES))
    Console().print(table)
