"""``cervical population ...`` and ``cervical model ...``: thin commands over the pure stages."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edge_runtime.common.text import report_error
from edge_runtime.contracts.errors import ContractError
from host_training.errors import HostTrainingError

population_app = typer.Typer(
    help="Seeded populations of adult anthropometrics (ANSUR II).", no_args_is_help=True
)
model_app = typer.Typer(
    help="The personalised 72-muscle head–neck OpenSim model.", no_args_is_help=True
)
err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines in logs
out = Console(soft_wrap=True)


def _fail(exc: Exception) -> typer.Exit:
    report_error(exc)
    return typer.Exit(2)


@population_app.command("sample")
def population_sample(
    out_path: Annotated[Path, typer.Option("--out", help="Parquet file to write (atomically).")],
    n: Annotated[int, typer.Option("--n", help="Number of subjects.", min=1)] = 1_000_000,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same bytes.", min=0)
    ] = 7,
    female_fraction: Annotated[
        float, typer.Option(help="Fraction of women, 0..1.", min=0.0, max=1.0)
    ] = 0.5,
) -> None:
    """Draw N adults (sex, stature_m, body_mass_kg, neck_length_m, shoulder_width_m,
    head_mass_kg) jointly from ANSUR II statistics; ids 0..N-1, a smaller N is a prefix."""
    from host_training.population.sampling import write_population

    with Progress(
        TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("rows", total=n)
        try:
            write_population(
                out_path,
                n,
                seed,
                female_fraction,
                progress=lambda rows: progress.advance(task, rows),
            )
        except (HostTrainingError, ContractError, ValueError) as exc:
            raise _fail(exc) from exc
    out.print(f"wrote {n:,} subjects to {out_path} (seed {seed})")


@population_app.command("show")
def population_show(
    population: Annotated[Path, typer.Argument(help="Population Parquet file.")],
    subject: Annotated[int, typer.Option(help="Subject id.")] = 0,
) -> None:
    """Print one subject's anthropometrics (SI units)."""
    from host_training.population.sampling import population_size, subject_anthropometrics

    try:
        population_size(population)  # the whole file checked, not only this subject's row
        a = subject_anthropometrics(population, subject)
    except (HostTrainingError, ContractError) as exc:
        raise _fail(exc) from exc
    for key, value in a.to_dict().items():
        out.print(f"{key:18s} {value}")


@model_app.command("build")
def model_build(
    out_path: Annotated[Path, typer.Option("--out", help=".osim file to write (atomically).")],
    population: Annotated[
        Path | None, typer.Option(help="Population Parquet file (with --subject).")
    ] = None,
    subject: Annotated[int | None, typer.Option(help="Subject id in --population.")] = None,
    reference: Annotated[
        bool, typer.Option("--reference", help="Build the reference (50th-percentile man).")
    ] = False,
) -> None:
    """Build a loadable .osim: the reference model, or one subject's personalised model."""
    from host_training.model.builder import build_model, write_model
    from host_training.model.personalise import personalise
    from host_training.population.sampling import subject_anthropometrics

    if reference == (population is not None):
        raise _fail(ValueError("give either --reference or --population with --subject"))
    try:
        if reference:
            model, name = build_model(name="cervical_reference"), "reference"
        else:
            if subject is None:
                raise ValueError("--population needs --subject")
            assert population is not None
            anthro = subject_anthropometrics(population, subject)
            model = build_model(personalise(anthro), name=f"cervical_subject_{subject}")
            model.set_credits(
                f"{model.get_credits()}. Subject {subject} of {population.name}: {anthro.to_dict()}"
            )
            name = f"subject {subject}"
        model.initSystem()
        write_model(model, out_path)
    except (HostTrainingError, ContractError, ValueError) as exc:
        raise _fail(exc) from exc
    out.print(f"wrote {name} model to {out_path}")


@model_app.command("info")
def model_info(path: Annotated[Path, typer.Argument(help=".osim file.")]) -> None:
    """Print bodies, coordinates (ranges in deg), muscle count and total max isometric force (N)."""
    from host_training.model.opensim_env import opensim

    if not path.is_file():
        raise _fail(FileNotFoundError(f"{path}: no such file"))
    osim = opensim()
    try:
        model = osim.Model(str(path))
        state = model.initSystem()
    except RuntimeError as exc:
        raise _fail(
            ValueError(f"{path}: OpenSim cannot load it ({str(exc).splitlines()[0]})")
        ) from exc
    bodies = [model.getBodySet().get(i) for i in range(model.getBodySet().getSize())]
    table = Table(title=f"{model.getName()}  ({path})")
    table.add_column("coordinate")
    table.add_column("range (deg)", justify="right")
    table.add_column("role")
    coords = model.getCoordinateSet()
    for i in range(coords.getSize()):
        c = coords.get(i)
        role = (
            "locked"
            if c.getLocked(state)
            else ("dependent" if c.isDependent(state) else "independent")
        )
        if role == "independent":
            lo, hi = math.degrees(c.getRangeMin()), math.degrees(c.getRangeMax())
            table.add_row(c.getName(), f"{lo:.1f} .. {hi:.1f}", role)
    muscles = model.getMuscles()
    fmax = sum(muscles.get(i).getMaxIsometricForce() for i in range(muscles.getSize()))
    out.print(
        f"bodies ({len(bodies)}): "
        + ", ".join(f"{b.getName()} {b.getMass():.3g} kg" for b in bodies)
    )
    out.print(table)
    out.print(
        f"coordinates: {coords.getSize()} "
        f"({sum(1 for i in range(coords.getSize()) if coords.get(i).isDependent(state))} coupled)"
    )
    out.print(f"constraints: {model.getConstraintSet().getSize()}")
    out.print(f"muscles: {muscles.getSize()}")
    out.print(f"total max isometric force: {fmax:,.1f} N")
    if model.get_credits():
        out.print(f"credits: {model.get_credits()}")


simulate_app = typer.Typer(help="Simulate the muscle-force dataset (ID + static optimisation).")


@simulate_app.callback(invoke_without_command=True)
def simulate(
    population: Annotated[Path, typer.Option(help="Population Parquet file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Dataset directory (created).")],
    subjects: Annotated[int, typer.Option(help="Simulate subject ids 0..N-1.", min=1)] = 2000,
    motions: Annotated[
        str, typer.Option(help="Motion set: default | tiny | everyday.")
    ] = "default",
    seed: Annotated[int, typer.Option(help="Seed of the motion set.", min=0)] = 7,
    solver: Annotated[str, typer.Option(help="fast | opensim (the reference).")] = "fast",
    workers: Annotated[
        int | None, typer.Option(help="Local worker processes (default: one per core).", min=1)
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Existing Dask scheduler, e.g. tcp://HOST:8786.")
    ] = None,
    shard_subjects: Annotated[int, typer.Option(help="Subjects per shard.", min=1)] = 10,
    span_population: Annotated[
        bool,
        typer.Option(help="Also simulate the population's extreme subjects (always trained on)."),
    ] = False,
) -> None:
    """Forces (N) of the 72 muscles per frame (100 Hz) for every subject x motion, as Parquet
    shards; re-running skips finished shards."""
    from rich.progress import TimeRemainingColumn

    from host_training.simulation.cluster import run_simulation
    from host_training.simulation.dataset import make_config

    try:
        config = make_config(
            population, subjects, motions, seed, solver, shard_subjects, span_population
        )
    except (HostTrainingError, ContractError) as exc:
        raise _fail(exc) from exc
    frames = {"done": 0}
    progress = Progress(
        TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
        TextColumn("shards  {task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err,
    )  # fmt: skip
    task = progress.add_task("shards", total=None, rate="")

    def started(n_pending: int) -> None:  # called once the output directory checks out
        if n_pending == 0:
            err.print(f"{out_dir}: every shard already exists, nothing to do")
            return
        if n_pending < config.n_shards():
            err.print(f"resuming: {config.n_shards() - n_pending} of {config.n_shards()} "
                      "shards already done")  # fmt: skip
        progress.update(task, total=n_pending)
        progress.start()

    def finished(report: dict[str, float]) -> None:
        frames["done"] += int(report["frames"])
        elapsed = progress.tasks[0].elapsed or 1e-9
        progress.update(task, advance=1, rate=f"{frames['done'] / elapsed:,.0f} frames/s")

    try:
        run_simulation(config, out_dir, workers, scheduler, started, finished)
    except (HostTrainingError, ContractError) as exc:
        raise _fail(exc) from exc
    finally:
        progress.stop()
    out.print(f"dataset in {out_dir}: {config.n_shards()} shards, {frames['done']:,} new frames")


train_app = typer.Typer(help="Train the muscle-force network on a simulated dataset.")


def _stage_progress() -> tuple[Progress, Any]:
    """A progress bar whose task follows (stage, done, total, detail) reports."""
    progress = Progress(
        TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=err,
    )  # fmt: skip
    task = progress.add_task("starting", total=None, detail="")

    last_stage = {"name": ""}

    def report(stage: str, done: float, total: float, detail: str) -> None:
        progress.update(task, description=stage, completed=done, total=total, detail=detail)
        # Without a terminal (logs, CI) the bar is not drawn: print stage changes and epochs.
        if not err.is_terminal and (stage != last_stage["name"] or stage == "training"):
            err.print(f"{stage} {int(done)}/{int(total)} {detail}".rstrip(), highlight=False)
            last_stage["name"] = stage

    return progress, report


@train_app.callback(invoke_without_command=True)
def train_command(
    data: Annotated[Path, typer.Option(help="Dataset directory (from `cervical simulate`).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory to create.")],
    hidden: Annotated[
        str, typer.Option(help="Hidden layer widths, comma-separated.")
    ] = "256,256,256",
    time_budget_s: Annotated[
        float, typer.Option(help="Wall-clock budget of the training loop (s).", min=1)
    ] = 660.0,
    max_epochs: Annotated[int, typer.Option(min=1)] = 200,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).", min=1)] = 10,
    epochs: Annotated[
        int | None,
        typer.Option(help="Fixed number of epochs (default: as many as the budget holds).", min=2),
    ] = None,
    heldout_family: Annotated[
        str, typer.Option(help="Motion family never trained on, evaluated on test subjects.")
    ] = "circumduction",
    seed: Annotated[int, typer.Option(min=0)] = 0,
    hub_view_share: Annotated[
        float,
        typer.Option(
            help="Share of training trajectories shown as the hub measures them "
            "(fused-angle error, its derivative filter).",
            min=0.0,
            max=1.0,
        ),
    ] = 0.5,
    batch_size: Annotated[int, typer.Option(help="Training rows per minibatch.", min=16)] = 2048,
    learning_rate: Annotated[
        float, typer.Option(help="Adam's peak learning rate (cosine decay from it).", min=1e-6)
    ] = 2e-3,
    force_loss_weight: Annotated[
        float,
        typer.Option(
            help="Weight of the force-space term of the loss (per-muscle force error in "
            "standard deviations; 0: the sqrt-space error alone).",
            min=0.0,
            max=100.0,
        ),
    ] = 0.3,
    frame_stride: Annotated[
        int,
        typer.Option(help="Train on every n-th frame of each trajectory (box frames: all).", min=1),
    ] = 2,
    train_subjects: Annotated[
        int | None,
        typer.Option(
            help="Train on this many of the training subjects only (validation and test "
            "subjects unchanged: for learning curves).",
            min=1,
        ),
    ] = None,
    memory_budget_mb: Annotated[
        float,
        typer.Option(
            help="Training rows held in memory: all when they fit in half of it, "
            "else streamed from a cache beside the run.",
            min=1,
        ),
    ] = 4096.0,
    twin_hidden: Annotated[
        str,
        typer.Option(
            help="Hidden widths of the confidence twin, comma-separated ('none': no twin; "
            "it takes 20% of the time budget).",
        ),
    ] = "128,128",
) -> None:
    """Fit kinematics + anthropometrics -> 72 forces (N) and the confidence twin; write
    model.onnx, weights.pt, twin.onnx, twin_weights.pt, manifest.json, metrics.json, calibration
    and held-out gate data, and plots/."""
    import dataclasses

    from host_training.learning.training import TrainConfig, train

    def widths(option: str, text: str) -> tuple[int, ...]:
        try:
            return tuple(int(u) for u in text.split(","))
        except ValueError as exc:
            raise _fail(ValueError(f"{option} {text!r}: expected widths like 256,256,256")) from exc

    units = widths("--hidden", hidden)
    twin = None if twin_hidden.strip().lower() == "none" else widths("--twin-hidden", twin_hidden)
    config = dataclasses.replace(
        TrainConfig(), hidden_units=units, time_budget_s=time_budget_s, max_epochs=max_epochs,
        patience_epochs=patience, epochs=epochs, heldout_family=heldout_family, seed=seed,
        hub_view_share=hub_view_share, memory_budget_mb=memory_budget_mb, frame_stride=frame_stride,
        twin_hidden_units=twin, max_train_subjects=train_subjects,
        force_loss_weight=force_loss_weight, batch_size=batch_size, learning_rate=learning_rate,
    )  # fmt: skip
    progress, report = _stage_progress()
    try:
        config.check()
        with progress:
            metrics = train(data, out_dir, config, progress=report)
    except (HostTrainingError, ContractError) as exc:
        raise _fail(exc) from exc
    _print_metrics(metrics["heldout_subjects"], "held-out subjects")
    _print_metrics(metrics["heldout_motion"], f"held-out motion ({heldout_family})")
    out.print(f"run written to {out_dir} (plots in {out_dir / 'plots'})")


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    s = metrics["summary"]
    table = Table(title=f"{title}: {metrics['n_frames']:,} frames")
    for col in ("R² min (muscle)", "R² median", "worst MAE (N)", "RMSE mean (N)",
                "RMSE mean (% Fmax)", "max |error| (N)"):  # fmt: skip
        table.add_column(col, justify="right")
    table.add_row(
        f"{s['r2_min']:.4f} ({s['worst_muscle']})", f"{s['r2_median']:.4f}",
        f"{s['worst_muscle_mae_n']:.3f}", f"{s['rmse_n_mean']:.3f}",
        f"{s['rmse_pct_fmax_mean']:.3f}",
        f"{s['max_abs_error_n']:.1f} ({s['max_abs_error_muscle']})",
    )  # fmt: skip
    out.print(table)


evaluate_app = typer.Typer(help="Evaluate a training run on any dataset.")


@evaluate_app.callback(invoke_without_command=True)
def evaluate_command(
    run: Annotated[Path, typer.Option(help="Run directory (from `cervical train`).")],
    data: Annotated[Path, typer.Option(help="Dataset directory to evaluate on.")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write the metrics JSON here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Per-muscle R², RMSE and MAE (N, % Fmax) of the run's float model on every frame of
    --data, overall and per motion family; warns about inputs outside the training range."""
    import json

    from edge_runtime.common.atomic import atomic_path
    from host_training.learning.evaluation import evaluate
    from host_training.learning.metrics import json_safe
    from host_training.learning.run import load_run

    progress, report = _stage_progress()
    try:
        loaded = load_run(run)
        with progress:
            result = evaluate(loaded, data, progress=report)
    except (HostTrainingError, ContractError) as exc:
        raise _fail(exc) from exc
    if out_path is not None:
        with atomic_path(out_path) as tmp:
            tmp.write_text(json.dumps(json_safe(result), indent=1, allow_nan=False) + "\n")
    if as_json:
        print(json.dumps(json_safe(result), allow_nan=False))
        return
    _print_metrics(result["all_frames"], f"{run} on {data}")
    table = Table(title="per motion family")
    for col in ("family", "frames", "R² min (muscle)", "R² median", "RMSE mean (N)"):
        table.add_column(col, justify="right")
    for family, s in result["per_family"].items():
        table.add_row(family, f"{s['n_frames']:,}", f"{s['r2_min']:.4f} ({s['worst_muscle']})",
                      f"{s['r2_median']:.4f}", f"{s['rmse_n_mean']:.3f}")  # fmt: skip
    out.print(table)
    if result["out_of_training_range"]:
        err.print(f"[yellow]warning:[/] frames outside the training range per feature: "
                  f"{result['out_of_training_range']}")  # fmt: skip
