"""Offline assessment of a marker session with the hub's own contracts: features, int8 inference
with a verified bundle, and the range-of-motion assessment against the personal envelope.

Report directory (written to a temporary sibling and renamed, so it appears complete or not at
all; an existing directory is never overwritten):

- ``forces.parquet``: t_s, valid, out_of_range, the nine neck kinematics columns and one force
  column per muscle (N; NaN where the markers could not give a posture);
- ``forces.png``: the neck angles and the largest muscle forces over time;
- ``guided_test.json``: whether the recording holds a complete guided test
  (``contracts.guided_test``: the ten directions in the test's order, each out and back to the
  centre; markers need no calibration, so that step counts from the first frame);
- ``assessment.json`` and ``assessment.png``: the assessment record and its picture, only for a
  recording with a complete test (without one nothing is judged a deficit: free-living motion
  does not show how far a wearer can move);
- ``monitoring.json``: the daily-monitoring figures of the recording as one day of wear
  (``contracts.wear_monitoring``: habitual range, movements, sustained flexion, muscle load as a
  share of capacity on the frames inside the training range), what a recording without a
  complete test reports instead of deficits;
- ``envelope.json``: the personal envelope used;
- ``markers.json``: the gap report per marker and the frames without a posture.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.daily import HABITUAL_QUANTILES, DayFigures, daily_summaries
from edge_runtime.contracts.feature_spec import feature_matrix
from edge_runtime.contracts.force_model import ForceModel
from edge_runtime.contracts.guided_test import find_guided_test
from edge_runtime.contracts.model_bundle import VerifiedBundle
from edge_runtime.contracts.neck_angles import (
    NECK_ACCELERATION_NAMES,
    NECK_ANGLE_NAMES,
    NECK_VELOCITY_NAMES,
    neck_angles_from_rotation,
    neck_kinematics,
)
from edge_runtime.contracts.rom_assessment import assess_session
from edge_runtime.contracts.wear_monitoring import DIRECTIONS, LoadMeter, wear_monitoring
from host_training.model.markers import (
    MarkerError,
    MarkerMap,
    neck_rotation_from_markers,
    read_trc,
)
from host_training.rom.plots import plot_assessment

INFERENCE_BATCH = 4096


def assess_marker_session(
    markers: Path, mapping_path: Path, bundle: VerifiedBundle, profile: Anthropometrics, out: Path
) -> dict[str, Any]:
    """Run the whole offline path and write the report directory; returns a short summary."""
    if out.exists():
        raise MarkerError(f"{out} already exists: choose a new report directory")
    if bundle.envelope is None:
        raise MarkerError(f"{bundle.path}: the bundle carries no motion envelope")
    mapping = MarkerMap.read(mapping_path)
    data = read_trc(markers)
    kin = neck_rotation_from_markers(data, mapping, markers)
    t = kin.t_s
    angles = np.where(kin.valid[:, None], neck_angles_from_rotation(
        np.where(kin.valid[:, None, None], kin.neck_rotation, np.eye(3))), np.nan)  # fmt: skip
    neck = neck_kinematics(angles, 1.0 / float(np.median(np.diff(t))), kin.valid)
    spec = bundle.spec
    model = ForceModel(bundle.model, spec)
    forces = np.full((len(t), len(spec.outputs)), np.nan)
    out_of_range = np.zeros(len(t), dtype=bool)
    rows = np.flatnonzero(kin.valid)
    if rows.size:
        x = feature_matrix(neck[rows], profile, spec.features)
        lo = np.array([r[0] for r in spec.input_range])
        hi = np.array([r[1] for r in spec.input_range])
        out_of_range[rows] = np.any((x < lo) | (x > hi), axis=1)
        for i in range(0, rows.size, INFERENCE_BATCH):
            forces[rows[i : i + INFERENCE_BATCH]] = model.forces(x[i : i + INFERENCE_BATCH])
    envelope, clamped = bundle.envelope.for_subject(profile)
    monitoring = _monitoring(bundle, angles, neck, forces, kin.valid & ~out_of_range, t)
    test = find_guided_test(t, angles, kin.valid)
    assessment = assess_session(t, angles, envelope, mapping.assessment) if test.complete else None

    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=parent))
    try:
        columns: dict[str, Any] = {"t_s": t, "valid": kin.valid, "out_of_range": out_of_range}
        for j, name in enumerate(NECK_ANGLE_NAMES + NECK_VELOCITY_NAMES + NECK_ACCELERATION_NAMES):
            columns[name] = neck[:, j]
        for j, muscle in enumerate(spec.outputs):
            columns[f"{muscle}_n"] = forces[:, j]
        pq.write_table(pa.table(columns), work / "forces.parquet")
        _plot_forces(t, angles, forces, spec.outputs, work / "forces.png")
        (work / "guided_test.json").write_text(json.dumps(test.to_dict(), indent=1) + "\n")
        if assessment is not None:
            (work / "assessment.json").write_text(json.dumps(assessment.to_dict(), indent=1) + "\n")
            plot_assessment(assessment, envelope, work / "assessment.png")
        (work / "monitoring.json").write_text(json.dumps(monitoring, indent=1) + "\n")
        (work / "envelope.json").write_text(json.dumps(envelope.to_dict(), indent=1) + "\n")
        marker_report = {
            "markers": [asdict(g) for g in kin.gaps],
            "frames": len(t),
            "frames_without_posture": int((~kin.valid).sum()),
            "frames_out_of_training_range": int(out_of_range.sum()),
            "envelope_clamped_fields": clamped,
            "bundle_version": bundle.version,
        }
        (work / "markers.json").write_text(
            json.dumps(marker_report, indent=1, default=float) + "\n"
        )
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {
        "frames": len(t),
        "frames_without_posture": int((~kin.valid).sum()),
        "guided_test": test.words(),
        "flagged": [] if assessment is None else list(assessment.flagged),
        "insufficient_data": [] if assessment is None else list(assessment.insufficient),
        "filled_gaps": sum(g.filled for g in kin.gaps),
        "unfilled_gaps": sum(g.unfilled for g in kin.gaps),
        "peak_force_n": float(np.nanmax(forces)) if rows.size else math.nan,
        "monitoring": monitoring["figures"],
    }


def _monitoring(
    bundle: VerifiedBundle, angles: np.ndarray, neck: np.ndarray, forces: np.ndarray,
    trusted: np.ndarray, t: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """The recording as one day of wear (its block, and the figures a clinician reads)."""
    rate_hz = 1.0 / float(np.median(np.diff(t)))
    meter = LoadMeter(bundle.manifest.muscle_groups(), [m.fmax_n for m in bundle.manifest.muscles])
    meter.add(forces[trusted & np.isfinite(forces).all(axis=1)])
    rates = np.where(np.isfinite(angles).all(axis=1)[:, None], neck[:, 3:6], np.nan)
    block = wear_monitoring(date.today(), angles, rates, rate_hz, meter)
    day = DayFigures.of(daily_summaries([block])[0])
    figures = {
        "wear_min": round(day.wear_s / 60, 2),
        "movements_per_hour": day.movements_per_hour,
        "sustained_flexion_pct": round(100 * day.flexed_s / day.wear_s, 1) if day.wear_s else None,
        "habitual_range_deg": {
            d: {f"p{100 * q:.0f}": day.range_deg(d, q) for q in HABITUAL_QUANTILES}
            for d in DIRECTIONS
        },
        "load_mean_capacity_pct": {
            g: None if (v := day.load_share_mean(g)) is None else round(100 * v, 2)
            for g in day.groups
        },
    }
    return {"block": block.to_dict(), "figures": figures}


def _plot_forces(
    t: np.ndarray, angles: np.ndarray, forces: np.ndarray, muscles: Any, path: Path, top: int = 8
) -> None:
    fig, (ax_a, ax_f) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for j, name in enumerate(NECK_ANGLE_NAMES):
        ax_a.plot(t, np.degrees(angles[:, j]), label=name.replace("_rad", " (deg)"))
    ax_a.set_ylabel("neck angle (deg)")
    ax_a.legend(fontsize=8)
    peak = np.nan_to_num(np.nanmax(forces, axis=0), nan=0.0) if len(forces) else np.zeros(0)
    for j in np.argsort(peak)[::-1][:top]:
        ax_f.plot(t, forces[:, j], label=muscles[j], lw=1)
    ax_f.set_ylabel("muscle force (N)")
    ax_f.set_xlabel("time (s)")
    ax_f.legend(fontsize=7, ncol=2)
    ax_f.set_title(f"the {top} muscles with the largest peak force (int8 model)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
