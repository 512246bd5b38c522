"""``cervical bench model-runtime``: float32 vs int8 TFLite on the hub runtime, side by side;
``cervical bench assessment``: the range-of-motion flags on synthetic subjects performing the
guided test, and on healthy wearers' free-living wear (which must never show a deficit).

Latency per sample of ``invoke`` (with set/get tensor) at batch 1 and batched, and of the whole
hub path (normalise, quantise, invoke, dequantise, forces in N) at batch 1, for both models,
measured interleaved in one process on one thread so the ratios hold on a noisy machine.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from edge_runtime.common.text import report_error
from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.envelope import ENVELOPE_GRID_FORMAT, EnvelopeGrid, MotionEnvelope
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.force_model import ForceModel, runtime_name
from edge_runtime.contracts.guided_test import find_guided_test
from edge_runtime.contracts.rom_assessment import AssessmentConfig, assess_session
from edge_runtime.contracts.training_run import RunLayout, RunManifest
from edge_runtime.imu_sim import SimulationSetup
from edge_runtime.synthetic import confusion, random_subject, run_subject
from edge_runtime.wear_days import measure_wear_days, simulated_wear


def _per_sample_us(fn: Callable[[], Any], samples: int, repeats: int) -> float:
    """Median over repeats of (time of fn) / samples, in µs."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / samples * 1e6)
    return statistics.median(times)


def measure(run: Path, batch: int, repeats: int) -> dict[str, Any]:
    layout = RunLayout(run)  # the TFLite files are written into the run by `cervical quantize`
    spec = RunManifest.read(layout).spec
    paths = {"int8": layout.tflite_int8, "float32": layout.tflite_float32}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing} missing: run `cervical quantize --run {run} ...` first")
    models = {k: ForceModel(p.read_bytes(), spec, num_threads=1) for k, p in paths.items()}
    rng = np.random.default_rng(0)
    lo = np.array([r[0] for r in spec.input_range])
    hi = np.array([r[1] for r in spec.input_range])
    x = lo + (hi - lo) * rng.random((batch, spec.n_inputs))
    inputs: dict[str, tuple[Any, Any]] = {}
    for name, m in models.items():
        normalised = spec.model_inputs(x)
        q = m.input_quantisation.quantise(normalised) if m.input_quantisation else normalised
        inputs[name] = (q[:1], q)
    figures: dict[str, Any] = {
        "runtime": runtime_name(),
        "batch": batch,
        "threads": 1,
        "int8_activations": "per-frame" if models["int8"].per_frame_int8 else "calibrated",
    }
    loops = 2000
    for _round in range(2):  # interleaved: float and int8 alternate within each round
        for name, m in models.items():
            one, many = inputs[name]

            def invoke_one(m: ForceModel = m, one: Any = one) -> None:
                for _ in range(loops):
                    m.invoke_standardised(one)

            def forces_one(m: ForceModel = m) -> None:
                for i in range(loops // 4):
                    m.forces(x[i % batch : i % batch + 1])

            figures[f"{name}_invoke_batch1_us"] = _per_sample_us(invoke_one, loops, repeats)
            m.invoke_standardised(many)  # resize once outside the timing

            def invoke_many(m: ForceModel = m, many: Any = many) -> None:
                m.invoke_standardised(many)

            figures[f"{name}_invoke_batched_us"] = _per_sample_us(invoke_many, batch, repeats * 5)
            figures[f"{name}_hub_path_batch1_us"] = _per_sample_us(forces_one, loops // 4, repeats)
    for name, p in paths.items():
        figures[f"{name}_bytes"] = p.stat().st_size
    figures["int8_vs_float_invoke_batch1"] = (
        figures["int8_invoke_batch1_us"] / figures["float32_invoke_batch1_us"]
    )
    figures["int8_vs_float_size"] = figures["int8_bytes"] / figures["float32_bytes"]
    return figures


def bench_model_runtime(
    run: Annotated[Path, typer.Option(help="Run directory after `cervical quantize`.")],
    batch: Annotated[int, typer.Option(help="Batch size of the batched figures.", min=2)] = 256,
    repeats: Annotated[int, typer.Option(min=1)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Invoke latency per sample, float32 vs int8, batch 1 and batched, and model sizes."""
    try:
        f = measure(run, batch, repeats)
    except (FileNotFoundError, ValueError) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(f))
        return
    table = Table(title=f"model runtime on {f['runtime']}, 1 thread (µs per sample)")
    for col in ("model", "invoke, batch 1", f"invoke, batch {batch}", "hub path, batch 1", "size"):
        table.add_column(col, justify="right")
    labels = {"float32": "float32", "int8": f"int8, {f['int8_activations']} activations"}
    for name, label in labels.items():
        table.add_row(
            label,
            f"{f[f'{name}_invoke_batch1_us']:.2f}",
            f"{f[f'{name}_invoke_batched_us']:.3f}",
            f"{f[f'{name}_hub_path_batch1_us']:.2f}",
            f"{f[f'{name}_bytes'] / 1024:.0f} KiB",
        )
    Console().print(table)
    Console().print(
        f"int8 / float32: invoke at batch 1 x{f['int8_vs_float_invoke_batch1']:.2f}, "
        f"size x{f['int8_vs_float_size']:.2f}"
    )


def _load_envelope_source(path: Path) -> EnvelopeGrid | MotionEnvelope:
    """An envelope grid, a single envelope, or a bundle directory's manifest envelope."""
    source = path / "manifest.json" if path.is_dir() else path
    data = json.loads(source.read_text())
    if path.is_dir():
        data = data.get("envelope")
        if data is None:
            raise ValueError(f"{source}: the bundle carries no envelope")
    if data.get("format") == ENVELOPE_GRID_FORMAT:
        return EnvelopeGrid.from_dict(data)
    return MotionEnvelope.from_dict(data)


def measure_assessment(
    source: EnvelopeGrid | MotionEnvelope,
    subjects: int,
    seed: int,
    config: AssessmentConfig,
    progress: Callable[[int], None] | None = None,
    six_axis: bool = False,
) -> dict[str, Any]:
    """Half healthy, half restricted synthetic subjects through IMU simulation, fusion and the
    assessment; a grid gives each subject random anthropometrics inside it. ``six_axis``: the
    hub's own sensors, without a magnetometer."""
    setup = SimulationSetup(magnetometer=not six_axis)
    rng = np.random.default_rng(seed)
    results = []
    started = time.perf_counter()
    for i in range(subjects):
        if isinstance(source, EnvelopeGrid):
            values = {k: float(rng.uniform(v[0], v[-1])) for k, v in source.axes.items()}
            who = Anthropometrics(sex="female", stature_m=1.70, **values)
            envelope, _ = source.for_subject(who)
        else:
            envelope = source
        subject = random_subject(rng, envelope, restricted=i % 2 == 1, config=config, seed=seed + i)
        results.append(run_subject(subject, envelope, config, setup, not six_axis))
        if progress:
            progress(i + 1)
    elapsed = time.perf_counter() - started
    c = confusion(results)
    rmse = np.array([r.angle_rmse_deg for r in results])
    return {
        "subjects": subjects,
        "restricted_sectors": c.true_positive + c.false_negative,
        "true_positive": c.true_positive,
        "false_negative": c.false_negative,
        "false_positive": c.false_positive,
        "true_negative": c.true_negative,
        "insufficient_data": c.insufficient,
        "sensitivity": c.sensitivity,
        "specificity": c.specificity,
        "healthy_subjects": c.healthy_subjects,
        "healthy_subjects_flagged": c.healthy_subjects_flagged,
        "guided_tests_incomplete": c.tests_incomplete,
        "min_deficit_deg": config.min_deficit_deg,
        "angle_rmse_deg_mean": [float(v) for v in rmse.mean(axis=0)],
        "angle_rmse_deg_p95": [float(v) for v in np.percentile(rmse, 95, axis=0)],
        "seconds_per_subject": elapsed / max(1, subjects),
        "six_axis": six_axis,
    }


def measure_wear(
    source: EnvelopeGrid | MotionEnvelope, wearers: int, minutes: float, seed: int,
    config: AssessmentConfig, progress: Callable[[int], None] | None = None,
    six_axis: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Healthy wearers' free-living wear (``wear_sim``) through simulated IMUs and fusion, then
    the offline test detector (``find_guided_test``): a wear session taken for a complete test
    would be assessed, and any flag there is a false deficit. (The hub never assesses wear: only
    a test the gateway started, so there the count is zero by construction.)"""
    rng = np.random.default_rng(seed + 1)
    taken = flagged = 0
    for i in range(wearers):
        if isinstance(source, EnvelopeGrid):
            values = {k: float(rng.uniform(v[0], v[-1])) for k, v in source.axes.items()}
            envelope, _ = source.for_subject(Anthropometrics("female", 1.70, **values))
        else:
            envelope = source
        _, kin = simulated_wear(seed + 100_000 + i, minutes, six_axis=six_axis)
        test = find_guided_test(kin.t_s, kin.angles_rad, kin.valid)
        if test.complete:
            taken += 1
            flagged += bool(assess_session(kin.t_s, kin.angles_rad, envelope, config).flagged)
        if progress:
            progress(i + 1)
    return {
        "wear_sessions": wearers,
        "wear_minutes": minutes,
        "wear_sessions_taken_for_tests": taken,
        "wear_sessions_with_deficit_flags": flagged,
    }


def bench_assessment(
    envelope: Annotated[
        Path,
        typer.Option(help="Envelope grid JSON, single envelope JSON, or a bundle directory."),
    ],
    subjects: Annotated[int, typer.Option(min=2)] = 1000,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    min_deficit_deg: Annotated[float, typer.Option(help="Flag threshold (deg).", min=0)] = 12.0,
    wear_sessions: Annotated[int, typer.Option(min=0, help="Healthy wearers' wear.")] = 50,
    wear_minutes: Annotated[float, typer.Option(min=1.0, help="Each wear session.")] = 30.0,
    wear_days: Annotated[
        int, typer.Option(min=0, help="Days of wear per wearer, judged for change (0: none).")
    ] = 14,
    restricted_wearers: Annotated[
        int, typer.Option(min=0, help="Wearers whose range drops after their baseline week.")
    ] = 10,
    six_axis: Annotated[
        bool, typer.Option("--six-axis", help="The hub's own sensors: no magnetometer.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Sector-level sensitivity and specificity of the range-of-motion flags on synthetic subjects
    (half healthy, half with 1-3 restricted sectors) performing the guided test, rendered through
    simulated IMUs and fusion; and healthy wearers' free-living wear that must flag nothing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    err = Console(stderr=True)
    try:
        source = _load_envelope_source(envelope)
    except (OSError, ValueError, KeyError, ContractError) as exc:
        report_error(f"{envelope}: {exc}")
        raise typer.Exit(2) from exc
    config = AssessmentConfig(min_deficit_deg=min_deficit_deg)
    with Progress(BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  transient=True) as bar:  # fmt: skip
        task = bar.add_task("subjects", total=subjects)
        f = measure_assessment(source, subjects, seed, config,
                               lambda done: bar.update(task, completed=done), six_axis)  # fmt: skip
        wear = bar.add_task("wear sessions", total=wear_sessions)
        f |= measure_wear(source, wear_sessions, wear_minutes, seed, config,
                          lambda done: bar.update(wear, completed=done), six_axis)  # fmt: skip
        if wear_days:
            wearers = wear_sessions + restricted_wearers
            days = bar.add_task("wearers' days", total=wearers)
            f |= measure_wear_days(
                wear_sessions, restricted_wearers, wear_days, wear_minutes, seed,
                progress=lambda done: bar.update(days, completed=done), six_axis=six_axis,
            )  # fmt: skip
    if as_json:
        print(json.dumps(f))
        return
    table = Table(title=f"{subjects} synthetic subjects, sector level (flag >= {min_deficit_deg}°)")
    table.add_column("")
    table.add_column("flagged", justify="right")
    table.add_column("not flagged", justify="right")
    table.add_row("restricted", str(f["true_positive"]), str(f["false_negative"]))
    table.add_row("unrestricted", str(f["false_positive"]), str(f["true_negative"]))
    Console().print(table)
    rmse = ", ".join(f"{v:.2f}" for v in f["angle_rmse_deg_mean"])
    Console().print(
        f"sensitivity {f['sensitivity']:.4f}, specificity {f['specificity']:.4f}; healthy subjects "
        f"flagged {f['healthy_subjects_flagged']}/{f['healthy_subjects']}; insufficient-data "
        f"sectors {f['insufficient_data']}; guided tests not complete "
        f"{f['guided_tests_incomplete']}; fused neck-angle RMSE (ext, bend, rot) {rmse} deg; "
        f"wear: {f['wear_sessions']} sessions of {f['wear_minutes']:g} min, "
        f"{f['wear_sessions_taken_for_tests']} taken for a test, "
        f"{f['wear_sessions_with_deficit_flags']} with deficit flags; "
        + (
            f"days judged for change: healthy {f['healthy_wear_days_with_change_flags']}/"
            f"{f['healthy_wear_days']} flagged, range dropped to {f['wear_restriction']:.0%} "
            f"{f['restricted_wear_days_with_change_flags']}/{f['restricted_wear_days']}; "
            if "healthy_wear_days" in f
            else ""
        )
        + f"{f['seconds_per_subject'] * 1000:.0f} ms per subject"
    )
