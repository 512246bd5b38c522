"""``cervical demo [--tiny | --full] [--out DIR]`` and ``cervical demo stop``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cervical_demo import build
from cervical_demo.clinic import ClinicResult, clinician_view
from cervical_demo.hub import CLINIC_DB, HUB_DIR, run_hub_and_gateway
from cervical_demo.processes import DemoProcessError, stop_recorded
from cervical_demo.progress import DemoProgress, StageReporter
from cervical_demo.scales import SCALES
from cervical_demo.state import DemoState, DemoStateError
from cervical_demo.summary import (
    SUMMARY_FILE,
    key_figures,
    print_summary,
    scenario_mismatch,
    write_summary,
)
from edge_runtime.common.text import report_error

demo_app = typer.Typer(
    help="The whole product end to end on embedded defaults (no hardware, no network)."
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder (created; reused by re-runs).")]
STAGES = 6


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a stage raises for bad input or a failed check (each names what was wrong): each
    package's one base, the shared contracts' and the demo's own."""
    from ble_gateway.errors import GatewayError
    from edge_runtime.contracts.errors import ContractError
    from edge_runtime.errors import HubError
    from host_training.errors import HostTrainingError
    from quantization.errors import QuantizationError

    return (
        HostTrainingError, ContractError, QuantizationError, HubError, GatewayError,
        DemoProcessError, DemoStateError, OSError,
    )  # fmt: skip


@demo_app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    out_dir: OutOpt = Path("demo-out"),
    tiny: Annotated[
        bool, typer.Option("--tiny", help="The smallest real run (~3 min; tests, CI).")
    ] = False,
    full: Annotated[
        bool,
        typer.Option("--full", help="The README's scale: 1,000 subjects (~50 min on 2 cores)."),
    ] = False,
    scheduler: Annotated[
        str | None, typer.Option(help="Simulate on an existing Dask scheduler (tcp://HOST:8786).")
    ] = None,
    port: Annotated[
        int, typer.Option(help="Web view port on 127.0.0.1 (a free one if taken).")
    ] = 8000,
    serve: Annotated[bool, typer.Option(help="Keep the web view running after the demo.")] = True,
) -> None:
    """Population (1,000,000), simulated dataset (local Dask), training with R² per muscle on
    held-out subjects, int8 bundle (accuracy gate, signing), a virtual hub on the virtual radio
    measuring a patient with restricted mobility, the gateway pairing, pushing the model, setting
    the profile and syncing, and the clinician web view with the patient's report. Re-running
    reuses finished stages (population, dataset shards, trained run, bundle)."""
    if ctx.invoked_subcommand is not None:
        return
    if tiny and full:
        err.print("error: --tiny and --full exclude each other", style="bold red")
        raise typer.Exit(2)
    scale = SCALES["tiny" if tiny else "full" if full else "default"]
    state = DemoState(out_dir, scale)
    try:
        state.open()
    except DemoStateError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    try:
        _run(out_dir, state, scheduler, port, serve)
    except KeyboardInterrupt:
        err.print(f"interrupted: the background processes were stopped; `cervical demo` "
                  f"resumes from the last finished stage (state in {state.path})")  # fmt: skip
        raise typer.Exit(130) from None
    finally:
        state.close()


def _run(out_dir: Path, state: DemoState, scheduler: str | None, port: int, serve: bool) -> None:
    scale = state.scale
    console.print(
        f"cervical demo, '{scale.name}' scale: {scale.subjects} simulated subjects, "
        f"output in {out_dir.resolve()}",
        markup=False,
        style="bold",
    )
    stopped = stop_recorded(out_dir)  # e.g. the web view of an earlier run (it holds the store)
    if stopped:
        console.print(f"stopped the earlier run's {', '.join(stopped)}", markup=False)
    ui = DemoProgress(console, STAGES)
    stages: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()

    def stage(name: str, title: str) -> Any:
        return _stage(ui, state, stages, name, title)

    with stage("population", "population: 1,000,000 personalised subjects") as s:
        population = build.population(out_dir, s)
    with stage("dataset", "dataset: inverse dynamics + static optimisation on Dask") as s:
        data = build.dataset(out_dir, scale, population, scheduler, s)
    with stage("training", "training: kinematics + anthropometrics -> 72 forces") as s:
        run = build.training(out_dir, scale, data.path, s)
    with stage("bundle", "bundle: int8, accuracy gate, signing key, signed bundle") as s:
        bundle, pub = build.model_bundle(out_dir, scale, run, s)
    with stage("hub", "virtual hub + gateway: pair, profile, push, measure, sync") as s:
        hub = run_hub_and_gateway(out_dir, out_dir / build.BUNDLE_DIR, pub, scale, s)
    with stage("clinic", "clinician view: web view, report, FHIR bundle") as s:
        clinic = clinician_view(out_dir, out_dir / CLINIC_DB, hub.address, port, serve, s)
    total = time.perf_counter() - started
    figures = key_figures(run, bundle.manifest, hub, scale)
    outputs = _outputs(out_dir, run, clinic)
    write_summary(out_dir, figures, stages, outputs, clinic, total)
    print_summary(console, figures, stages, outputs, clinic, out_dir, total)
    mismatch = scenario_mismatch(figures)
    if mismatch is not None:  # the demo checks its own story: a wrong outcome is a failure
        report_error(f"in stage 'hub': the outcome differs from the scenario: {mismatch}")
        raise typer.Exit(1)


def _outputs(out_dir: Path, run: Path, clinic: ClinicResult) -> dict[str, Path]:
    return {
        "population": out_dir / build.POPULATION_FILE,
        "dataset (Parquet)": out_dir / build.DATA_DIR,
        "training run": run,
        "R² per muscle (plot)": run / "plots" / "r2_per_muscle.png",
        "signed int8 bundle": out_dir / build.BUNDLE_DIR,
        "public key": (out_dir / build.KEY_FILE).with_suffix(".pub"),
        "virtual hub": out_dir / HUB_DIR,
        "clinic store": out_dir / CLINIC_DB,
        **clinic.exports,
        "summary (JSON)": out_dir / SUMMARY_FILE,
    }


@contextmanager
def _stage(
    ui: DemoProgress, state: DemoState, stages: dict[str, dict[str, Any]], name: str, title: str
) -> Iterator[StageReporter]:
    """A numbered stage: progress, its outcome recorded in the state file, errors made clear."""
    outcome = None
    try:
        with ui.stage(title, name) as reporter:
            outcome = reporter.outcome
            yield reporter
    except _user_errors() as exc:
        report_error(f"in stage '{name}': {exc}")
        raise typer.Exit(2) from exc
    finally:
        if outcome is not None:
            state.record(name, outcome.status, outcome.wall_s, outcome.note)
            stages[name] = {"status": outcome.status, "wall_s": round(outcome.wall_s, 2),
                            "note": outcome.note}  # fmt: skip


@demo_app.command("stop")
def stop(out_dir: OutOpt = Path("demo-out")) -> None:
    """Stop the demo's background processes (the web view; a hub or radio left by an
    interrupted run)."""
    stopped = stop_recorded(out_dir)
    console.print(
        f"stopped: {', '.join(stopped)}" if stopped else f"nothing of {out_dir} was running",
        markup=False,
    )
