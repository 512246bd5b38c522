"""``cervical bench edge``: the hub's per-frame cost on one core, and its peak memory.

A simulated session (two IMUs at 100 Hz with a magnetometer, the full protocol) is written as
recordings; a fresh interpreter pinned to one core with one inference thread then runs, side by
side on the same data: the hub's streaming pipeline (fusion, calibration search, derivatives,
features, int8 inference and its confidence twin, force statistics, assessment, SQLite storage)
and the offline reference path (``fusion.neck_kinematics_from_imus`` on the whole recording with
the same calibration windows, one batched inference of each network, ``assess_session``).
The worker's peak RSS is the hub's memory figure (it imports only what the hub imports).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from edge_runtime.common.text import report_error

WORKER = "edge_runtime.hub.bench"


def _worker(
    mode: str, recordings: Path, bundle: Path, pubkey: Path, profile: Path, db: Path
) -> dict[str, Any]:
    """Runs in a fresh pinned interpreter: one path once; its time and the process's peak RSS.
    The recordings come as arrays (a hub gets chunks from its sensors, never a whole file)."""
    import numpy as np

    from edge_runtime.contracts.anthropometrics import read_profile
    from edge_runtime.contracts.bundle import load_public_key
    from edge_runtime.contracts.model_bundle import verify_model_bundle
    from edge_runtime.contracts.recording import ImuRecording

    checked = verify_model_bundle(bundle, load_public_key(pubkey))
    wearer = read_profile(profile)
    with np.load(recordings) as data:
        recs = [
            ImuRecording(data["t_s"], data[f"{r}_gyr"], data[f"{r}_acc"], data[f"{r}_mag"])
            for r in ("head", "trunk")
        ]
    t0 = time.perf_counter()
    if mode == "stream":
        from edge_runtime.contracts.record_payloads import SessionRecord, parse_record
        from edge_runtime.hub.pipeline import HubPipeline
        from edge_runtime.hub.storage import HubStore
        from edge_runtime.sensors.replay import chunked

        with HubStore(db) as store:
            pipeline = HubPipeline(store, checked, wearer)
            for h, t in zip(
                chunked(recs[0], 0.5, False), chunked(recs[1], 0.5, False), strict=True
            ):
                pipeline.push("head", h)
                pipeline.push("trunk", t)
            pipeline.close()
            session = parse_record("session", store.records_of_kind("session")[-1].payload)
            assert isinstance(session, SessionRecord)
            calibration = session.calibration and session.calibration.to_dict()
    else:
        from edge_runtime.contracts.feature_spec import feature_matrix
        from edge_runtime.contracts.rom_assessment import assess_session
        from edge_runtime.fusion import neck_kinematics_from_imus
        from edge_runtime.hub.forces import ForceEstimator

        assert checked.envelope is not None
        envelope, _ = checked.envelope.for_subject(wearer)
        cal = json.loads(mode.partition(":")[2])
        kin = neck_kinematics_from_imus(
            recs[0], recs[1], tuple(cal["neutral_s"]), tuple(cal["nod_s"]), cal["nod_direction"]
        )
        columns = np.concatenate(
            [kin.angles_rad, kin.velocities_rad_s, kin.accelerations_rad_s2], axis=1
        )
        ok = np.isfinite(columns).all(axis=1)
        estimator = ForceEstimator.for_bundle(checked, wearer)
        x = feature_matrix(columns[ok], wearer, checked.spec.features)
        estimator.model.forces(x)
        if estimator.twin is not None:
            estimator.twin.model.forces(x)
        assess_session(kin.t_s, kin.angles_rad, envelope)
        calibration = cal
    return {
        "frames": len(recs[0].t_s),
        "confidence_twin": checked.twin is not None,
        "seconds": time.perf_counter() - t0,
        "calibration": calibration,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _run_worker(args: list[str], cpu: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["taskset", "-c", str(cpu), sys.executable, "-m", WORKER, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure_edge(bundle: Path, pubkey: Path, seconds: float, repeats: int) -> dict[str, Any]:
    from edge_runtime.contracts.anthropometrics import write_profile
    from edge_runtime.contracts.bundle import load_public_key
    from edge_runtime.contracts.model_bundle import verify_model_bundle
    from edge_runtime.sensors.sim import SimSource, SimSpec
    from edge_runtime.synthetic import WARMUP_S

    checked = verify_model_bundle(bundle, load_public_key(pubkey), run_golden=False)
    if checked.envelope is None:
        raise ValueError(f"{bundle}: the bundle carries no envelope")
    protocol_s = 35.0
    spec = SimSpec(seed=1, repeats=max(1, round(seconds / (WARMUP_S + protocol_s))))
    with tempfile.TemporaryDirectory(prefix="cervical-bench-edge-") as tmp:
        work = Path(tmp)
        head, trunk = (SimSource(spec, role).recording for role in ("head", "trunk"))
        np.savez(
            work / "rec.npz",
            t_s=head.t_s,
            head_gyr=head.gyr_rad_s,
            head_acc=head.acc_m_s2,
            head_mag=np.asarray(head.mag_ut),
            trunk_gyr=trunk.gyr_rad_s,
            trunk_acc=trunk.acc_m_s2,
            trunk_mag=np.asarray(trunk.mag_ut),
        )
        from edge_runtime.contracts.anthropometrics import Anthropometrics

        grid = checked.envelope.axes
        mid = {k: float(v[len(v) // 2]) for k, v in grid.items()}
        write_profile(Anthropometrics(sex="male", stature_m=1.75, **mid), work / "profile.toml")
        common = [str(work / "rec.npz"), str(bundle), str(pubkey), str(work / "profile.toml")]
        cpu = sorted(os.sched_getaffinity(0))[0]
        stream, offline = [], []
        for k in range(repeats):  # interleaved, each in a fresh interpreter
            stream.append(_run_worker(["stream", *common, str(work / f"hub-{k}.db")], cpu))
            cal = json.dumps(stream[-1]["calibration"])
            offline.append(_run_worker([f"offline:{cal}", *common, str(work / "x.db")], cpu))
        r = {
            "frames": stream[0]["frames"],
            "stream_s": min(x["seconds"] for x in stream),
            "offline_s": min(x["seconds"] for x in offline),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in stream),
        }
    duration_s = r["frames"] / 100.0
    return {
        "session_s": duration_s,
        "frames": r["frames"],
        "us_per_frame": r["stream_s"] / r["frames"] * 1e6,
        "realtime_factor": duration_s / r["stream_s"],
        "offline_us_per_frame": r["offline_s"] / r["frames"] * 1e6,
        "stream_vs_offline": r["stream_s"] / r["offline_s"],
        "peak_rss_mb": r["peak_rss_mb"],
        "confidence_twin": stream[0]["confidence_twin"],
        "cpu": cpu,
    }


def bench_edge(
    bundle: Annotated[Path, typer.Option(help="Model bundle directory.")],
    pubkey: Annotated[Path, typer.Option(help="Trusted public key (PEM).")],
    seconds: Annotated[float, typer.Option(help="Simulated session length (s).", min=60)] = 300,
    repeats: Annotated[int, typer.Option(min=1)] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per-frame cost of the hub pipeline for two IMUs at 100 Hz on one core, and peak memory."""
    try:
        f = measure_edge(bundle, pubkey, seconds, repeats)
    except (OSError, ValueError, RuntimeError) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(f))
        return
    twin = "with" if f["confidence_twin"] else "without"
    table = Table(
        title=f"hub pipeline, {f['session_s']:.0f} s session at 100 Hz, 1 core (cpu {f['cpu']}), "
        f"{twin} the confidence twin"
    )
    for col in ("path", "µs per frame", "× real time"):
        table.add_column(col, justify="right")
    table.add_row(
        "hub (streaming, with storage)", f"{f['us_per_frame']:.1f}", f"{f['realtime_factor']:.0f}"
    )
    table.add_row(
        "offline reference",
        f"{f['offline_us_per_frame']:.1f}",
        f"{1e6 / 100 / f['offline_us_per_frame']:.0f}",
    )
    Console().print(table)
    Console().print(
        f"streaming / offline time: {f['stream_vs_offline']:.2f}; "
        f"peak RSS of the hub process: {f['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(_worker(a[0], Path(a[1]), Path(a[2]), Path(a[3]), Path(a[4]), Path(a[5]))))
