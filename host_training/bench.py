"""``cervical bench model``: population, personalisation and model-building costs, side by side.

Every figure is measured in the same run, interleaved, so the ratios hold on a noisy machine:
building a personalised model from the tables is compared with OpenSim's own ways of getting a
model (loading an .osim file; copy-constructing a loaded model).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _one_subject(person: Any, out: Path, ref_file: Path, loaded: Any) -> dict[str, float]:
    from host_training.model.builder import build_model, write_model
    from host_training.model.opensim_env import opensim
    from host_training.model.personalise import personalise

    osim = opensim()
    t0 = time.perf_counter()
    anatomy = personalise(person)
    t1 = time.perf_counter()
    model = build_model(anatomy)
    t2 = time.perf_counter()
    model.initSystem()
    t3 = time.perf_counter()

    def build_write() -> None:
        m = build_model(personalise(person))
        m.initSystem()
        write_model(m, out)

    return {
        "personalise_ms": (t1 - t0) * 1e3,
        "build_ms": (t2 - t1) * 1e3,
        "init_system_ms": (t3 - t2) * 1e3,
        "build_write_ms": _median_ms(build_write, 1),
        "opensim_load_file_ms": _median_ms(lambda: osim.Model(str(ref_file)).initSystem(), 1),
        "opensim_copy_model_ms": _median_ms(lambda: osim.Model(loaded).initSystem(), 1),
    }


def measure(subjects: int, population_rows: int) -> dict[str, float]:
    """The figures of ``cervical bench model`` (ms per subject unless the key says otherwise)."""
    from host_training.model.builder import build_model, write_model
    from host_training.model.opensim_env import opensim
    from host_training.model.personalise import personalise
    from host_training.population.sampling import subject_anthropometrics, write_population

    osim = opensim()
    with tempfile.TemporaryDirectory() as tmp:
        pop = Path(tmp) / "population.parquet"
        t0 = time.perf_counter()
        write_population(pop, population_rows, seed=7)
        population_s = time.perf_counter() - t0
        people = [subject_anthropometrics(pop, i) for i in range(subjects)]
        ref_file = write_model(build_model(), Path(tmp) / "reference.osim")
        loaded = osim.Model(str(ref_file))
        loaded.initSystem()
        build_model(personalise(people[0])).initSystem()  # warm caches before timing

        figures: dict[str, list[float]] = {k: [] for k in (
            "personalise_ms", "build_ms", "init_system_ms", "build_write_ms",
            "opensim_load_file_ms", "opensim_copy_model_ms")}  # fmt: skip
        for i, person in enumerate(people):  # interleaved: drift hits every figure alike
            out = Path(tmp) / f"s{i}.osim"
            for key, value in _one_subject(person, out, ref_file, loaded).items():
                figures[key].append(value)
    result = {k: statistics.median(v) for k, v in figures.items()}
    result["population_rows_per_s"] = population_rows / population_s
    result["personalise_build_ms"] = result["personalise_ms"] + result["build_ms"]
    result["ratio_build_write_vs_load_file"] = (
        result["build_write_ms"] / result["opensim_load_file_ms"]
    )
    result["subjects"] = subjects
    result["population_rows"] = population_rows
    return result


def bench_model(
    subjects: Annotated[int, typer.Option(help="Subjects to personalise and build.", min=1)] = 30,
    population_rows: Annotated[
        int, typer.Option(help="Rows for the population-sampling figure.", min=1)
    ] = 1_000_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Population rows/s; personalise, build, initSystem and build+write ms per subject; and
    OpenSim's load-from-file and copy-a-model costs, measured side by side."""
    r = measure(subjects, population_rows)
    rows = [
        ("population sampling + write", f"{r['population_rows_per_s']:,.0f} rows/s"),
        ("personalise (tables, numpy)", f"{r['personalise_ms']:.2f} ms"),
        ("build OpenSim model in memory", f"{r['build_ms']:.2f} ms"),
        ("personalise + build (target <= 20 ms)", f"{r['personalise_build_ms']:.2f} ms"),
        ("initSystem", f"{r['init_system_ms']:.2f} ms"),
        ("personalise + build + initSystem + write .osim", f"{r['build_write_ms']:.2f} ms"),
        ("OpenSim: load reference .osim + initSystem", f"{r['opensim_load_file_ms']:.2f} ms"),
        ("OpenSim: copy a loaded model + initSystem", f"{r['opensim_copy_model_ms']:.2f} ms"),
        ("ratio build+write / load file", f"{r['ratio_build_write_vs_load_file']:.2f}"),
    ]
    _report(f"cervical bench model ({subjects} subjects, median per subject)", rows, r, as_json)


def _report(
    title: str, rows: list[tuple[str, str]], figures: dict[str, Any], as_json: bool
) -> None:
    """Print the figures as one JSON object, or as a readable table."""
    if as_json:
        print(json.dumps(figures, sort_keys=True))
        return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def compare_solvers(
    subjects: int, motions: str, max_trials: int | None, seed: int = 7
) -> dict[str, Any]:
    """OpenSim reference vs fast solver on the same trials, side by side (see bench_simulate)."""
    from edge_runtime.contracts.anthropometrics import NUMERIC_FIELDS, Anthropometrics
    from host_training.model.personalise import personalise
    from host_training.population.sampling import iter_blocks, load_statistics
    from host_training.simulation.motions import PlaneSplit, motion_set, trajectory
    from host_training.simulation.solvers import (
        FastSolver,
        OpenSimSolver,
        opensim_spline_kinematics,
    )

    block = next(iter_blocks(subjects, seed, 0.5, load_statistics()))
    ref_s = fast_s = 0.0
    ref_frames = fast_frames = 0
    worst_abs, worst_rms_pct, trials, flag_mismatch = 0.0, 0.0, 0, 0
    frames_per_subject = []
    for i in range(subjects):
        anthro = Anthropometrics.from_dict(
            {"sex": str(block["sex"][i]), **{k: float(block[k][i]) for k in NUMERIC_FIELDS}}
        )
        anatomy = personalise(anthro)
        split = PlaneSplit.of(anatomy)
        fast, ref = FastSolver(anatomy), OpenSimSolver(anatomy)
        specs = motion_set(motions, seed, i)
        frames_per_subject.append(sum(len(trajectory(s, split).t_s) for s in specs))
        # box frames are not a time series: OpenSim's AnalyzeTool cannot take them
        comparable = [s for s in specs if s.family != "box"]
        for spec in comparable[: max_trials if max_trials else None]:
            traj = trajectory(spec, split)
            same = opensim_spline_kinematics(traj)  # both solvers see OpenSim's derivatives
            t0 = time.process_time()
            rf = fast.solve(same)
            fast_s += time.process_time() - t0
            t0 = time.process_time()
            rr = ref.solve(traj)
            ref_s += time.process_time() - t0
            n = len(traj.t_s)
            fast_frames += n
            ref_frames += n
            both = rf.feasible & rr.feasible
            flag_mismatch += int(np.sum(rf.feasible != rr.feasible))
            if both.any():
                diff = rf.forces_n[both] - rr.forces_n[both]
                worst_abs = max(worst_abs, float(np.abs(diff).max()))
                rms = np.sqrt(np.mean(diff**2, axis=0)) / fast.dynamics.fmax_n * 100.0
                worst_rms_pct = max(worst_rms_pct, float(rms.max()))
            trials += 1
    ref_rate = ref_frames / ref_s
    fast_rate = fast_frames / fast_s
    mean_frames = float(np.mean(frames_per_subject))
    return {
        "trials": trials,
        "frames": fast_frames,
        "reference_frames_per_core_s": ref_rate,
        "fast_frames_per_core_s": fast_rate,
        "ratio": fast_rate / ref_rate,
        "max_abs_diff_N": worst_abs,
        "worst_rms_diff_pct_fmax": worst_rms_pct,
        "feasibility_mismatches": flag_mismatch,
        "frames_per_subject": mean_frames,
        "projected_core_hours_1m": 1_000_000 * mean_frames / fast_rate / 3600.0,
        "projected_core_hours_1m_reference": 1_000_000 * mean_frames / ref_rate / 3600.0,
    }


def bench_simulate(
    subjects: Annotated[int, typer.Option(help="Subjects (drawn with seed 7).", min=1)] = 2,
    motions: Annotated[
        str, typer.Option(help="Motion set: default | tiny | everyday (box frames skipped).")
    ] = "default",
    max_trials: Annotated[
        int | None, typer.Option(help="At most this many motions per subject.", min=1)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """OpenSim's static optimisation vs the fast solver on the same trials: frames/s per core
    (CPU time), their ratio, force differences on feasible frames (N and % of Fmax), and the
    projected core-hours for all 1,000,000 subjects with the motion set."""
    r = compare_solvers(subjects, motions, max_trials)
    rows = [
        ("OpenSim reference", f"{r['reference_frames_per_core_s']:,.1f} frames/s per core"),
        ("fast solver", f"{r['fast_frames_per_core_s']:,.1f} frames/s per core"),
        ("ratio fast / reference", f"{r['ratio']:.1f}x"),
        ("max |force difference| (feasible frames)", f"{r['max_abs_diff_N']:.4f} N"),
        ("worst per-muscle RMS difference", f"{r['worst_rms_diff_pct_fmax']:.4f} % Fmax"),
        ("frames with different feasibility", f"{r['feasibility_mismatches']}"),
        ("frames per subject (motion set)", f"{r['frames_per_subject']:,.0f}"),
        ("1,000,000 subjects, fast", f"{r['projected_core_hours_1m']:,.0f} core-hours"),
        ("1,000,000 subjects, reference",
         f"{r['projected_core_hours_1m_reference']:,.0f} core-hours"),
    ]  # fmt: skip
    title = f"cervical bench simulate ({r['trials']} trials, {r['frames']:,} frames)"
    _report(title, rows, r, as_json)


def bench_confidence(
    run: Annotated[Path, typer.Option(help="Training run whose forces are judged.")],
    twin: Annotated[
        Path | None,
        typer.Option(
            help="Judge with a second run of the same dataset, split and held-out family "
            "instead of the run's own confidence twin."
        ),
    ] = None,
    flag_rate: Annotated[
        float | None,
        typer.Option(
            help="Share of validation frames (seen families) flagged [default: the run's own, "
            "else learning.confidence.DEFAULT_FLAG_RATE].",
            min=0,
            max=1,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per-frame confidence from two networks' disagreement, on the run's own test subjects:
    recall of large errors (> 10% of Fmax in any muscle) on the held-out family and on seen
    families, the share of seen-family frames flagged, and the worst muscle R² on all and on
    unflagged frames, at the threshold that flags ``flag_rate`` of the validation frames."""
    from edge_runtime.common.text import report_error
    from host_training.errors import HostTrainingError
    from host_training.learning.confidence import DEFAULT_FLAG_RATE, measure_confidence
    from host_training.learning.run import load_run

    try:
        judged = load_run(run)
        if flag_rate is None:
            flag_rate = (judged.manifest.confidence or {}).get("flag_rate", DEFAULT_FLAG_RATE)
        r = measure_confidence(judged, load_run(twin) if twin else judged.twin_run(), flag_rate)
    except HostTrainingError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def r2(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    rows = [
        ("threshold (share of Fmax)", f"{r['threshold_of_fmax']:.4f}"),
        (f"recall, held-out family ({r['heldout_family']})",
         f"{share(r['recall_large_errors'])} of {r['heldout']['large_error_frames']:,}"),
        ("recall, seen families",
         f"{share(r['recall_large_errors_seen_families'])} of "
         f"{r['seen']['large_error_frames']:,}"),
        ("flagged in distribution", share(r["flagged_in_distribution"])),
        ("worst R², held-out family: all -> unflagged",
         f"{r2(r['r2_min_heldout_all'])} -> {r2(r['r2_min_heldout_unflagged'])}"),
        ("worst R², seen families: all -> unflagged",
         f"{r2(r['seen'].get('r2_min_all'))} -> {r2(r['seen'].get('r2_min_unflagged'))}"),
    ]  # fmt: skip
    for family, f in r["per_family"].items():
        rows.append(
            (f"  {family}",
             f"flagged {share(f['flagged'])}, recall {share(f['recall_large_errors'])}, "
             f"R² {r2(f.get('r2_min_all'))} -> {r2(f.get('r2_min_unflagged'))}")
        )  # fmt: skip
    against = twin.name if twin else "its twin"
    _report(f"cervical bench confidence ({run.name} vs {against})", rows, r, as_json)


def bench_scale(
    subjects: Annotated[
        int, typer.Option(help="Subjects of the population-scale profile (>= 20).", min=20)
    ] = 40,
    everyday_subjects: Annotated[
        int, typer.Option(help="Subjects of the everyday set, side by side.", min=1)
    ] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What simulating all 1,000,000 subjects costs: the population-scale profile against the
    everyday set on one core (CPU time), per-subject stages, bytes, projections."""
    from edge_runtime.common.text import report_error
    from host_training.errors import HostTrainingError
    from host_training.simulation.scale import STAGES, measure_scale

    console = Console(stderr=True)
    try:
        r = measure_scale(subjects, everyday_subjects, lambda m: console.print(m, markup=False))
    except HostTrainingError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(r, sort_keys=True))
        return
    e = r["everyday"]
    table = Table(title=f"cervical bench scale ({subjects} subjects, 1 core, cpu {r['cpu']})")
    for col in ("per subject", "population profile", "everyday set"):
        table.add_column(col, justify="right" if col != "per subject" else "left")
    table.add_row("frames", f"{r['frames_per_subject']:,.0f}", f"{e['frames_per_subject']:,.0f}")
    for s in STAGES:
        ms = (f"{1e3 * x['per_subject_s'][s]:.1f} ms" for x in (r, e))
        table.add_row(f"  {s.replace('_', ' ')}", *ms)
    table.add_row("CPU time", *(f"{x['cpu_s_per_subject']:.3f} s" for x in (r, e)))
    rate = (f"{x['subjects_per_core_hour']:,.0f}" for x in (r, e))
    table.add_row("subjects per core-hour", *rate)
    table.add_row("frames per core-second", *(f"{x['frames_per_core_s']:,.0f}" for x in (r, e)))
    table.add_row("bytes", f"{r['bytes_per_subject'] / 1e3:,.0f} kB", "")
    hours = (r["projected_core_hours_1m"], r["everyday_projected_core_hours_1m"])
    table.add_row("1,000,000 subjects", *(f"{h:,.0f} core-hours" for h in hours))
    table.add_row("", f"{r['projected_disk_gb_1m']:,.0f} GB on disk", "")
    Console().print(table)


def bench_learning_curve(
    data: Annotated[Path, typer.Option(help="Dataset directory (from `cervical simulate`).")],
    runs_dir: Annotated[Path, typer.Option(help="One run per point (reused when complete).")],
    subjects: Annotated[
        str,
        typer.Option(help="Training subjects per point, comma-separated; `all`: the whole split."),
    ] = "100,1000,5000,all",
    frame_budget: Annotated[
        int, typer.Option(help="Training frames every point sees (epochs x rows).", min=1)
    ] = 20_000_000,
    frame_stride: Annotated[int, typer.Option(help="As `cervical train`.", min=1)] = 1,
    heldout_family: Annotated[str, typer.Option(help="As `cervical train`.")] = "circumduction",
    hidden: Annotated[str, typer.Option(help="Hidden widths, comma-separated.")] = "256,256,256",
    plot: Annotated[Path | None, typer.Option(help="Write the curve as a PNG here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Held-out subjects' and held-out family's worst and median muscle R² against the number of
    training subjects, every point with the same training frames (runs under --runs-dir)."""
    from edge_runtime.common.text import report_error
    from edge_runtime.contracts.errors import ContractError
    from edge_runtime.contracts.training_run import MIN_CALIBRATION_ROWS
    from host_training.errors import HostTrainingError
    from host_training.learning.subject_curve import measure_subject_curve, plot_subject_curve
    from host_training.learning.training import TrainConfig

    console = Console(stderr=True)
    try:
        counts = [None if n.strip() == "all" else int(n) for n in subjects.split(",")]
        units = tuple(int(u) for u in hidden.split(","))
    except ValueError as exc:
        report_error(ValueError(f"--subjects {subjects!r} / --hidden {hidden!r}: {exc}"))
        raise typer.Exit(2) from exc
    # the curve's runs are compared, never shipped: no int8 fine-tuning (every point sees exactly
    # its frame budget) and the smallest calibration set will do
    base = TrainConfig(hidden_units=units, frame_stride=frame_stride,
                       heldout_family=heldout_family, qat_epochs=0,
                       calibration_samples=MIN_CALIBRATION_ROWS)  # fmt: skip
    try:
        base.check()
        curve = measure_subject_curve(
            data, runs_dir, counts, frame_budget, base, lambda m: console.print(m, markup=False)
        )
        if plot is not None:
            plot_subject_curve(plot, curve)
    except (HostTrainingError, ContractError) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(curve, sort_keys=True))
        return
    table = Table(title=f"learning curve, {frame_budget:,} training frames per point ({data})")
    for col in ("training subjects", "epochs", "held-out subjects worst / median",
                f"held-out family ({heldout_family}) worst / median"):  # fmt: skip
        table.add_column(col, justify="right")
    for p in curve["points"]:
        table.add_row(
            f"{p['train_subjects']:,}", str(p["epochs"]),
            f"{p['heldout_subjects_r2_min']:.4f} / {p['heldout_subjects_r2_median']:.4f}",
            f"{p['heldout_family_r2_min']:.4f} / {p['heldout_family_r2_median']:.4f}",
        )  # fmt: skip
    Console().print(table)
