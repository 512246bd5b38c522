"""``cervical envelope``, ``cervical envelope-grid`` and ``cervical assess``: personal motion
envelopes and the offline marker assessment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edge_runtime.common.atomic import write_atomic
from edge_runtime.contracts.anthropometrics import Anthropometrics, read_profile
from edge_runtime.contracts.bundle import BundleError, load_public_key
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.force_model import ForceModelError
from host_training.cli import _fail, err, out
from host_training.errors import HostTrainingError

envelope_app = typer.Typer(help="A wearer's personal motion envelope (OpenSim model).")
envelope_grid_app = typer.Typer(help="Envelopes over an anthropometric grid, for model bundles.")
assess_app = typer.Typer(help="Assess a marker session (TRC) with a model bundle.")


def _subject(population: Path | None, subject: int | None, profile: Path | None) -> Anthropometrics:
    from host_training.population.sampling import subject_anthropometrics

    if profile is not None and (population is not None or subject is not None):
        raise typer.BadParameter("give either --profile or --population with --subject")
    if profile is not None:
        return read_profile(profile)
    if population is None or subject is None:
        raise typer.BadParameter("give --profile, or --population with --subject")
    return subject_anthropometrics(population, subject)


def _write_json(path: Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=1) + "\n")


@envelope_app.callback(invoke_without_command=True)
def envelope_command(
    out_path: Annotated[Path, typer.Option("--out", help="Envelope JSON to write.")],
    population: Annotated[Path | None, typer.Option(help="Population Parquet file.")] = None,
    subject: Annotated[int | None, typer.Option(help="Subject id in the population.")] = None,
    profile: Annotated[Path | None, typer.Option(help="Wearer profile TOML instead.")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG picture of the envelope.")] = None,
    coarse: Annotated[bool, typer.Option(help="30° directions, quick (tests, demos).")] = False,
) -> None:
    """Simulate one wearer's envelope: joint ranges, couplers and the muscles' ability to hold each
    posture against gravity and the passive bushings (activations <= 1)."""
    from host_training.rom.envelope import EnvelopeResolution, simulate_envelope
    from host_training.rom.plots import plot_envelope

    try:
        who = _subject(population, subject, profile)
        res = EnvelopeResolution.coarse() if coarse else EnvelopeResolution()
        with err.status("simulating the envelope"):
            env = simulate_envelope(who, res)
        _write_json(out_path, env.to_dict())
        if plot:
            plot_envelope(
                env, plot, f"Personal motion envelope ({who.sex}, head {who.head_mass_kg} kg)"
            )
    except (HostTrainingError, ContractError, OSError) as exc:
        raise _fail(exc) from exc
    table = Table("direction", "limit (deg)", title=f"envelope -> {out_path}")
    for name, value in env.plane_limits_deg().items():
        table.add_row(name.replace("_", " "), f"{value:.1f}")
    for name, value in env.plane_totals_deg().items():
        table.add_row(f"total {name.replace('_', ' ')}", f"{value:.1f}")
    out.print(table)


@envelope_grid_app.callback(invoke_without_command=True)
def envelope_grid_command(
    out_path: Annotated[Path, typer.Option("--out", help="Envelope grid JSON to write.")],
    coarse: Annotated[
        bool, typer.Option(help="2x1x2x2 nodes, 30° directions: for tests and the demo.")
    ] = False,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
) -> None:
    """Envelopes at every node of a grid over neck length, shoulder width, head mass and body mass
    (the hub interpolates between them); give the file to `cervical quantize --envelope`."""
    from host_training.rom.envelope import (
        COARSE_GRID_AXES,
        DEFAULT_GRID_AXES,
        EnvelopeResolution,
        simulate_envelope_grid,
    )

    axes = COARSE_GRID_AXES if coarse else DEFAULT_GRID_AXES
    res = EnvelopeResolution.coarse() if coarse else EnvelopeResolution()
    with Progress(
        TextColumn("envelopes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("nodes", total=None)
        try:
            grid = simulate_envelope_grid(
                axes, res, workers,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )  # fmt: skip
            _write_json(out_path, grid.to_dict())
        except (HostTrainingError, ContractError, OSError) as exc:
            raise _fail(exc) from exc
    totals = [e.plane_totals_deg() for e in grid.envelopes]
    out.print(f"wrote {len(grid.envelopes)} envelopes to {out_path}")
    for key in totals[0]:
        values = [t[key] for t in totals]
        out.print(f"  {key.replace('_', ' ')}: {min(values):.1f}..{max(values):.1f} deg")


@assess_app.callback(invoke_without_command=True)
def assess_command(
    markers: Annotated[Path, typer.Option(help="Marker session (TRC).")],
    markers_map: Annotated[Path, typer.Option(help="TOML naming head/trunk markers.")],
    bundle: Annotated[Path, typer.Option(help="Model bundle directory.")],
    pubkey: Annotated[Path, typer.Option(help="Trusted public key of the bundle (PEM).")],
    profile: Annotated[Path, typer.Option(help="The wearer's profile TOML.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Report directory to create.")],
) -> None:
    """Markers -> neck angles, velocities, accelerations -> int8 muscle forces and the range-of-
    motion assessment, exactly as the hub computes them. The bundle is fully verified first."""
    from edge_runtime.contracts.model_bundle import verify_model_bundle
    from host_training.rom.assess import assess_marker_session

    try:
        who = read_profile(profile)
        verified = verify_model_bundle(bundle, load_public_key(pubkey))
        with err.status("assessing"):
            summary = assess_marker_session(markers, markers_map, verified, who, out_dir)
    except (HostTrainingError, ContractError, BundleError, ForceModelError, OSError) as exc:
        raise _fail(exc) from exc
    out.print(
        f"report {out_dir}: {summary['frames']:,} frames "
        f"({summary['frames_without_posture']} without a posture; gaps filled "
        f"{summary['filled_gaps']}, left {summary['unfilled_gaps']})"
    )
    out.print(summary["guided_test"])
    out.print(f"flagged: {', '.join(summary['flagged']) or 'none'}")
    m = summary["monitoring"]
    ranges = ", ".join(
        f"{d.replace('_', ' ')} {v['p95']:.0f}°" for d, v in m["habitual_range_deg"].items()
        if v["p95"] is not None
    )  # fmt: skip
    out.print(
        f"daily monitoring (the recording as a day of wear; never a deficit): worn "
        f"{m['wear_min']:.1f} min, habitual range p95 {ranges or 'no excursions'}, "
        f"sustained flexion {m['sustained_flexion_pct']} % (monitoring.json)",
        markup=False,
    )
    if summary["insufficient_data"]:
        out.print(f"insufficient data: {', '.join(summary['insufficient_data'])}")
