"""``cervical edge ...``: the hub daemon, replay, model install, status and orientation."""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from itertools import zip_longest
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from edge_runtime.common.atomic import atomic_path
from edge_runtime.common.files import refuse_same_file
from edge_runtime.common.text import report_error
from edge_runtime.contracts.anthropometrics import read_profile
from edge_runtime.contracts.bundle import load_public_key
from edge_runtime.contracts.guided_test import GuidedTestError
from edge_runtime.contracts.model_bundle import verify_model_bundle
from edge_runtime.contracts.record_payloads import SessionRecord, parse_record
from edge_runtime.contracts.recording import ImuRecording, RecordingError, check_same_time_base
from edge_runtime.errors import USER_ERRORS
from edge_runtime.hub.config import load_config
from edge_runtime.hub.models import InstallError, ModelSlots
from edge_runtime.hub.pipeline import HubPipeline, PipelineSettings
from edge_runtime.hub.storage import HubStore, StoredRecord
from edge_runtime.sensors.replay import chunked

edge_app = typer.Typer(
    help="The hub: run, replay recordings, install models, status.", no_args_is_help=True
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    report_error(exc)
    return typer.Exit(code)


@edge_app.command("orientation")
def orientation(
    recording: Annotated[Path, typer.Option(help="Recording CSV (t_s, gyr_*, acc_*[, mag_*]).")],
    out_path: Annotated[Path, typer.Option("--out", help="CSV to write: t_s,qw,qx,qy,qz.")],
    magnetometer: Annotated[bool, typer.Option(help="Use mag_* columns when present.")] = True,
) -> None:
    """The sensor's orientation w.r.t. an ENU earth frame (x east, y north, z up), VQF 9D when
    the recording has a magnetometer (heading from magnetic north), else 6D (heading arbitrary)."""
    from edge_runtime.fusion import sensor_orientation

    try:
        refuse_same_file(recording, out_path, RecordingError)
        if out_path.is_dir():
            raise RecordingError(f"{out_path}: is a folder; --out names the CSV to write")
        rec = ImuRecording.read_csv(recording)
        quat = sensor_orientation(rec, use_magnetometer=magnetometer)
        with atomic_path(out_path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t_s", "qw", "qx", "qy", "qz"])
            for t, q in zip(rec.t_s, quat, strict=True):
                w.writerow([repr(float(t)), *(f"{v:.8f}" for v in q)])
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    mode = "9D (magnetometer)" if magnetometer and rec.mag_ut is not None else "6D"
    out.print(f"wrote {out_path}: {len(quat)} orientations, VQF {mode}, {rec.rate_hz:.1f} Hz")


@edge_app.command("mag-offset")
def mag_offset(
    recording: Annotated[
        Path, typer.Option(help="Recording CSV with mag_* columns, the sensor turned every way.")
    ],
) -> None:
    """The board's hard-iron field (µT), to give the magnetometer as ``:offset=X,Y,Z`` in the
    sensor spec: record the sensor (``cervical edge run`` or any logger) while turning it slowly
    through every direction, away from steel and magnets, then run this on the recording."""
    from edge_runtime.sensors.lis3mdl import hard_iron_offset_ut

    errors: tuple[type[Exception], ...] = (*USER_ERRORS, ValueError)  # (too few orientations)
    try:
        rec = ImuRecording.read_csv(recording)
        if rec.mag_ut is None:
            raise RecordingError(f"{recording}: no mag_x, mag_y, mag_z columns")
        offset = hard_iron_offset_ut(rec.mag_ut)
    except errors as exc:
        raise _fail(exc) from exc
    residual = np.linalg.norm(rec.mag_ut - offset, axis=1)
    out.print(
        f"offset={offset[0]:.1f},{offset[1]:.1f},{offset[2]:.1f}  (field after it "
        f"{np.nanmedian(residual):.1f} µT, spread {np.nanstd(residual):.1f} µT over "
        f"{len(residual)} samples)"
    )


@edge_app.command("simulate")
def simulate(
    sim: Annotated[str, typer.Option(help="Simulation spec, e.g. seed=3,restrict=right_rotation.")],
    out_dir: Annotated[Path, typer.Option(help="Directory for head.csv, trunk.csv, truth.csv.")],
) -> None:
    """Write a simulated wearer's head and trunk recordings (warm-up, neutral hold, nod, the ten
    directions) and the true neck angles, for replay and tests."""
    from edge_runtime.contracts.neck_angles import NECK_ANGLE_NAMES
    from edge_runtime.sensors.sim import SimSource, SimSpec

    try:
        spec = SimSpec.parse(sim)
        out_dir.mkdir(parents=True, exist_ok=True)
        for role in ("head", "trunk"):
            SimSource(spec, role).recording.write_csv(out_dir / f"{role}.csv")
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    source = SimSource(spec, "head")
    truth = np.column_stack([source.recording.t_s, source.protocol.truth_angles_rad])
    header = "t_s," + ",".join(NECK_ANGLE_NAMES)
    np.savetxt(out_dir / "truth.csv", truth, delimiter=",", header=header, comments="")
    out.print(
        f"wrote {out_dir}/head.csv, trunk.csv and truth.csv: {len(truth)} samples at "
        f"{spec.rate_hz:g} Hz; restricted: {', '.join(spec.restrict) or 'none'}"
    )


@edge_app.command("replay")
def replay(
    head: Annotated[Path, typer.Option(help="Head sensor recording CSV.")],
    trunk: Annotated[Path, typer.Option(help="Trunk sensor recording CSV.")],
    bundle: Annotated[Path, typer.Option(help="Model bundle directory (verified first).")],
    profile: Annotated[Path, typer.Option(help="Wearer's profile TOML.")],
    db: Annotated[Path, typer.Option(help="Record store (SQLite); created or appended to.")],
    pubkey: Annotated[Path, typer.Option(help="Trusted public key (PEM).")],
    guided_test: Annotated[
        bool,
        typer.Option(
            "--guided-test",
            help="The recordings begin with a guided test (as if the gateway started one).",
        ),
    ] = False,
) -> None:
    """Run the hub's pipeline on two recordings, as fast as the CPU allows. Sessions are wear
    (no range-of-motion judgement) unless --guided-test: then the first is a guided test."""
    try:
        checked = verify_model_bundle(bundle, load_public_key(pubkey))
        wearer = read_profile(profile)
        recordings = [ImuRecording.read_csv(head), ImuRecording.read_csv(trunk)]
        check_same_time_base(recordings[0], recordings[1])
        store = HubStore(db)
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    started = time.perf_counter()
    first = store.last_seq
    with store:
        pipeline = HubPipeline(store, checked, wearer, PipelineSettings())
        if guided_test:
            try:
                pipeline.start_test()
            except GuidedTestError as exc:
                raise _fail(exc) from exc
        streams = [chunked(r, 1.0, realtime=False) for r in recordings]
        for head_chunk, trunk_chunk in zip_longest(*streams):
            if head_chunk is not None:
                pipeline.push("head", head_chunk)
            if trunk_chunk is not None:
                pipeline.push("trunk", trunk_chunk)
        pipeline.close()
        elapsed = time.perf_counter() - started
        sessions = [r for r in store.records_after(first, 10**6) if r.kind == "session"]
        span = float(np.nanmax(recordings[0].t_s) - np.nanmin(recordings[0].t_s))
        out.print(
            f"replayed {span:.1f} s in {elapsed:.2f} s ({span / elapsed:.0f}x real time); "
            f"records {first + 1}..{store.last_seq} in {db}"
        )
    _print_sessions(sessions)


def _print_sessions(sessions: list[StoredRecord]) -> None:
    """One block per session, full names (a table would truncate them on a narrow terminal)."""
    for r in sessions:
        p = parse_record("session", r.payload)
        assert isinstance(p, SessionRecord)
        a = p.assessment
        marks = sorted({m.reason for m in p.marks} - {"uncalibrated"})
        lines = [
            f"{p.kind or 'session'} {r.session_id}: {p.duration_s:.1f} s, "
            f"{p.usable_fraction:.0%} usable, "
            f"{'calibrated' if p.calibration else 'not calibrated'}, ended by {p.end_reason}",
            f"  flagged: {', '.join(a.flagged if a else ()) or 'none'}",
            f"  insufficient data: {', '.join(a.insufficient if a else ()) or 'none'}",
            f"  marks: {', '.join(marks) or 'none'}",
        ]
        if p.assessment_note:
            lines.append(f"  note: {p.assessment_note}")
        out.print("\n".join(lines), markup=False)


@edge_app.command("run")
def run(config: Annotated[Path, typer.Option(help="Hub configuration (TOML).")]) -> None:
    """The hub daemon: sensors, fusion, inference, assessment, storage; SIGTERM stops it cleanly."""
    logging.getLogger().setLevel(logging.INFO)
    try:
        from edge_runtime.hub.daemon import run_hub

        cfg = load_config(config)
        services = []
        if cfg.ble.transport:
            from edge_runtime.ble.service import ble_service

            services.append(ble_service(cfg.ble))
        asyncio.run(run_hub(cfg, services))
    except InstallError as exc:
        raise _fail(exc, code=3) from exc
    except USER_ERRORS as exc:
        raise _fail(exc) from exc


@edge_app.command("ble-identity")
def ble_identity(config: Annotated[Path, typer.Option(help="Hub configuration (TOML).")]) -> None:
    """The hub's BLE address and pairing passkey (created on first use): print them on the
    hub's label; a phone or PC pairs by entering the passkey."""
    from edge_runtime.ble.cli import show_identity

    try:
        cfg = load_config(config)
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    show_identity(cfg.ble.state_dir)


@edge_app.command("install")
def install(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory to install.")],
    config: Annotated[Path, typer.Option(help="Hub configuration (TOML).")],
    force: Annotated[bool, typer.Option(help="Install even if not newer.")] = False,
) -> None:
    """Verify, copy into the idle slot, switch, self-test; roll back on failure."""
    try:
        cfg = load_config(config)
        slots = ModelSlots(cfg.models, load_public_key(cfg.public_key))
        installed = slots.install(bundle, read_profile(cfg.profile), force=force)
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    out.print(
        f"installed version {installed.version} in "
        f"{slots.current_slot}; restart the hub service to load it"
    )


@edge_app.command("status")
def status(config: Annotated[Path, typer.Option(help="Hub configuration (TOML).")]) -> None:
    """The installed model and the record store: last record, sync cursor, unsynced count."""
    try:
        cfg = load_config(config)
        slots = ModelSlots(cfg.models, load_public_key(cfg.public_key))
        bundle = slots.active()
        with HubStore(cfg.database) as store:
            out.print(f"model: version {bundle.version} in {slots.current_slot} (verified)")
            out.print(
                f"records: last {store.last_seq}, synced up to {store.acked_seq}, "
                f"{store.unsynced_count} unsynced; integrity {store.integrity()}"
            )
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
