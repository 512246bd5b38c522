"""``cervical bench generalisation``: how the network holds on motion it never saw.

For each motion family in turn (leave one family out), a network is trained without that family
(``cervical train --heldout-family F`` with the stated time budget) and evaluated on it, for
the held-out subjects: worst and median muscle R² over the muscles whose force varies in that
family (``learning.metrics``), the worst muscle's RMSE in % of Fmax, float and int8 (the
run converted and gated as ``cervical quantize`` does, no bundle written). With ``--run R`` the
given run is evaluated on its own held-out family instead, without training, and end to end:
everyday motions of unseen subjects through simulated IMUs and the hub's IMU path
(``cervical_demo.hub_e2e``: ``hub_r2_min``, ``hub_r2_median``).

It lives here, beside the demo, because it composes what no other package may: training
(host_training), the int8 conversion front end (quantization) and the hub's IMU path.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_runtime.common.text import report_error
from host_training.errors import DatasetError
from host_training.simulation.frames import dataset_families
from host_training.simulation.motions import MOTION_FAMILIES

Progress = Callable[[str], None]


def check_families(wanted: list[str] | None, available: list[str]) -> list[str]:
    if not wanted:
        return available
    unknown = [f for f in wanted if f not in MOTION_FAMILIES]
    if unknown:
        raise DatasetError(f"unknown motion family {unknown}: known families {MOTION_FAMILIES}")
    absent = [f for f in wanted if f not in available]
    if absent:
        raise DatasetError(f"motion family {absent} is not in the dataset (it has {available})")
    return wanted


def family_row(metrics: dict[str, Any], gate: dict[str, Any] | None) -> dict[str, Any]:
    """One family's figures from a run's metrics.json and its int8 gate result."""
    summary = metrics["heldout_motion"]["summary"]
    row: dict[str, Any] = {
        "family": metrics["heldout_motion"]["family"],
        "r2_min": summary["r2_min_varying"],
        "r2_median": summary["r2_median"],
        "worst_muscle": summary["worst_varying_muscle"],
        # R² = 1 - (RMSE / SD)²: the worst muscle's own error and spread on the family's frames
        # (absent from runs made before they were recorded)
        "worst_muscle_rmse_pct_fmax": summary.get("worst_varying_muscle_rmse_pct_fmax"),
        "worst_muscle_sd_pct_fmax": summary.get("worst_varying_muscle_sd_pct_fmax"),
        "muscles_judged": summary["muscles_varying"],
        "r2_min_all_muscles": summary["r2_min"],
        "rmse_pct_fmax_max": summary["rmse_pct_fmax_max"],
        "worst_rmse_muscle": summary["worst_rmse_muscle"],
        "heldout_subjects_r2_min": metrics["heldout_subjects"]["summary"]["r2_min"],
        "frames": summary["n_frames"],
    }
    if gate is not None:
        family = gate["heldout_family"]
        row["int8"] = {
            "r2_min": family["r2_min_int8"],
            "worst_muscle": family["worst_muscle_int8"],
            "r2_median": family["r2_median_int8"],
            "largest_r2_drop": family["largest_r2_drop"],
            "gate_passed": gate["passed"],
            "heldout_subjects_r2_min": gate["r2_min_int8"],
            "frames": family["n_frames"],
        }
    return row


def leave_one_family_out(
    data: Path, families: list[str] | None, budget_s: float, runs_dir: Path, int8: bool,
    progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    from host_training.learning.training import TrainConfig, train
    from quantization.cli import gate_run

    available = dataset_families(data)
    if len(available) < 2:
        raise DatasetError(f"{data} has one motion family: leaving it out leaves nothing")
    chosen = check_families(families, available)
    rows = []
    for k, family in enumerate(chosen):
        run = runs_dir / f"without-{family}"
        progress(f"[{k + 1}/{len(chosen)}] training without {family} ({budget_s:.0f} s budget)")
        metrics = train(data, run, TrainConfig(heldout_family=family, time_budget_s=budget_s))
        gate = None
        if int8:
            progress(f"[{k + 1}/{len(chosen)}] int8 conversion and gate")
            gate = gate_run(run)
        rows.append(family_row(metrics, gate))
        progress(f"[{k + 1}/{len(chosen)}] {family}: worst muscle R² {rows[-1]['r2_min']:.4f}")
    return summarise(rows, budget_s)


def summarise(rows: list[dict[str, Any]], budget_s: float | None) -> dict[str, Any]:
    worst = min(rows, key=lambda r: r["r2_min"])
    int8_rows = [r for r in rows if "int8" in r]
    return {
        "families": rows,
        "budget_s_per_family": budget_s,
        "worst_family": worst["family"],
        "worst_family_r2_min": worst["r2_min"],
        "worst_family_rmse_pct_fmax": max(r["rmse_pct_fmax_max"] for r in rows),
        "worst_family_r2_min_int8": (
            min(r["int8"]["r2_min"] for r in int8_rows) if int8_rows else None
        ),
    }


def bench_generalisation(
    data: Annotated[Path, typer.Option(help="Dataset directory (from `cervical simulate`).")],
    run: Annotated[
        Path | None, typer.Option(help="Evaluate this run on its own held-out family only.")
    ] = None,
    family: Annotated[
        list[str] | None, typer.Option(help="Leave out only these families (repeatable).")
    ] = None,
    budget_s: Annotated[
        float, typer.Option(help="Training budget per left-out family (s).", min=10)
    ] = 300.0,
    runs_dir: Annotated[
        Path | None, typer.Option(help="Keep the runs here (default: a temporary directory).")
    ] = None,
    int8: Annotated[bool, typer.Option(help="Convert each run to int8 and gate it.")] = True,
    hub_subjects: Annotated[
        int,
        typer.Option(
            help="With --run: unseen subjects for the end-to-end figure (0: none).", min=0
        ),
    ] = 6,
    hub_population: Annotated[
        Path | None,
        typer.Option(help="With --run: draw the unseen subjects here (default: the dataset's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Leave-one-motion-family-out: per family, worst and median muscle R² (muscles whose force
    varies by > 1% of Fmax), the worst muscle and its RMSE in % of Fmax, float and int8, for
    held-out subjects; and the worst family."""
    from rich.console import Console

    from host_training.errors import HostTrainingError
    from quantization.errors import QuantizationError

    err = Console(stderr=True, soft_wrap=True)
    try:
        if run is not None:
            result = _evaluate_run(run, family, int8, hub_subjects, hub_population, err.print)
        elif runs_dir is not None:
            if runs_dir.exists() and any(runs_dir.iterdir()):
                raise DatasetError(f"--runs-dir {runs_dir} is not empty: choose a new directory")
            result = leave_one_family_out(data, family, budget_s, runs_dir, int8, err.print)
        else:
            with tempfile.TemporaryDirectory(prefix="cervical-generalisation-") as tmp:
                result = leave_one_family_out(data, family, budget_s, Path(tmp), int8, err.print)
    except (HostTrainingError, QuantizationError, OSError) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(result))
        return
    _print_result(result)


def _evaluate_run(
    run: Path,
    family: list[str] | None,
    int8: bool,
    hub_subjects: int,
    hub_population: Path | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """A trained run on its own held-out family (and end to end from simulated IMUs)."""
    from edge_runtime.contracts.training_run import RunLayout
    from quantization.cli import gate_run

    metrics = json.loads(RunLayout(run).metrics.read_text())
    if family and family != [metrics["heldout_motion"]["family"]]:
        raise DatasetError(
            f"{run} was trained without {metrics['heldout_motion']['family']!r}, "
            f"not {family}: leave --family out or train a run without it"
        )
    result = summarise([family_row(metrics, gate_run(run) if int8 else None)], None)
    if hub_subjects:
        from cervical_demo.hub_e2e import evaluate_end_to_end

        hub = evaluate_end_to_end(run, hub_subjects, log, hub_population)
        result.update(hub=hub, hub_r2_min=hub["hub_r2_min"], hub_r2_median=hub["hub_r2_median"])
    return result


def worst_muscle_label(row: dict[str, Any]) -> str:
    """The worst muscle with its RMSE and force SD on the family's frames, where recorded."""
    rmse, sd = row.get("worst_muscle_rmse_pct_fmax"), row.get("worst_muscle_sd_pct_fmax")
    return row["worst_muscle"] + ("" if rmse is None or sd is None else f" ({rmse:.2f} / {sd:.2f})")


def _print_result(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cervical bench generalisation (held-out subjects, family left out)")
    for column in ("family", "worst R²", "median R²", "worst muscle (RMSE / SD, % Fmax)",
                   "worst RMSE % Fmax", "int8 worst R²", "int8 drop"):  # fmt: skip
        table.add_column(column)
    for r in result["families"]:
        q = r.get("int8") or {}
        table.add_row(
            r["family"], f"{r['r2_min']:.4f}", f"{r['r2_median']:.4f}", worst_muscle_label(r),
            f"{r['rmse_pct_fmax_max']:.2f} ({r['worst_rmse_muscle']})",
            f"{q['r2_min']:.4f}" if q else "-", f"{q['largest_r2_drop']:.4f}" if q else "-",
        )  # fmt: skip
    Console().print(table)
    Console().print(
        f"worst family: {result['worst_family']} (worst muscle R² "
        f"{result['worst_family_r2_min']:.4f})"
    )
    if "hub" in result:
        hub = result["hub"]
        labels = {
            "float": "float",
            "int8": "int8",
            "float_exact_inputs": "float on the exact kinematics (no hub input error)",
        }
        for kind, label in labels.items():
            if kind in hub:
                h = hub[kind]
                Console().print(
                    f"end to end from simulated IMUs, {len(hub['subjects'])} unseen subjects, "
                    f"{hub['frames']:,} frames of everyday motion, {label}: worst muscle R² "
                    f"{h['hub_r2_min']:.4f} ({h['worst_muscle']}), "
                    f"median {h['hub_r2_median']:.4f}, "
                    f"worst RMSE {h['rmse_pct_fmax_max']:.2f}% of Fmax ({h['worst_rmse_muscle']})"
                )
