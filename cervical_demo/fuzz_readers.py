"""The readers the fuzzing benchmark feeds, and the worker process that runs them.

Each reader takes one (corrupted) input the way a command does and returns what the command
would go on to use; ``nonfinite`` says whether that output holds a value a command would
report as a result though it is not a number (NaN where the format does not mean "missing",
or infinity anywhere). The worker runs cases sent on stdin, one JSON line each, and answers one
JSON line per case: the outcome and, for a traceback, its last line. It runs in its own process
so that a case that hangs can be killed without losing the benchmark.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Reader = Callable[[Path, dict[str, Any]], Any]


def _clean_errors() -> tuple[type[BaseException], ...]:
    """What a command catches and prints as a refusal (each package's base, and OSError)."""
    from ble_gateway.errors import GatewayError
    from edge_runtime.contracts.errors import ContractError
    from edge_runtime.errors import HubError
    from host_training.errors import HostTrainingError

    return (GatewayError, ContractError, HubError, HostTrainingError, OSError)


def _any_nonfinite(*arrays: Any, allow_nan: bool = False) -> bool:
    for a in arrays:
        if a is None:
            continue
        values = np.asarray(a, dtype=np.float64)
        bad = np.isinf(values) if allow_nan else ~np.isfinite(values)
        if bad.any():
            return True
    return False


def recording_csv(path: Path, _: dict[str, Any]) -> bool:
    from edge_runtime.contracts.recording import ImuRecording

    rec = ImuRecording.read_csv(path)  # empty fields are NaN: a dropped value, marked later
    return _any_nonfinite(rec.t_s, rec.gyr_rad_s, rec.acc_m_s2, rec.mag_ut, allow_nan=True)


def orientation(path: Path, _: dict[str, Any]) -> bool:
    """``cervical edge orientation``: a quaternion for every sample with finite inputs."""
    from edge_runtime.contracts.recording import ImuRecording
    from edge_runtime.fusion import sensor_orientation

    rec = ImuRecording.read_csv(path)
    quat = sensor_orientation(rec, use_magnetometer=True)
    known = np.isfinite(rec.gyr_rad_s).all(axis=1) & np.isfinite(rec.acc_m_s2).all(axis=1)
    return _any_nonfinite(quat[known])


def trc(path: Path, _: dict[str, Any]) -> bool:
    from host_training.model.markers import read_trc

    data = read_trc(path)  # NaN: a marker not seen in that frame
    return _any_nonfinite(data.t_s) or _any_nonfinite(*data.positions_m.values(), allow_nan=True)


def marker_map(path: Path, _: dict[str, Any]) -> bool:
    from host_training.model.markers import MarkerMap

    m = MarkerMap.read(path)
    return _any_nonfinite(m.neutral_s, m.max_fill_s)


def profile(path: Path, _: dict[str, Any]) -> bool:
    from edge_runtime.contracts.anthropometrics import NUMERIC_FIELDS, read_profile

    p = read_profile(path)
    return _any_nonfinite([getattr(p, f) for f in NUMERIC_FIELDS])


def hub_config(path: Path, _: dict[str, Any]) -> bool:
    import dataclasses

    from edge_runtime.hub.config import load_config

    cfg = load_config(path)
    numbers = [
        v
        for section in dataclasses.astuple(cfg)
        for v in (section if isinstance(section, tuple) else (section,))
        if isinstance(v, float)
    ]
    return _any_nonfinite(numbers)


def population(path: Path, _: dict[str, Any]) -> bool:
    from edge_runtime.contracts.anthropometrics import NUMERIC_FIELDS
    from host_training.population.sampling import (
        population_extremes,
        population_metadata,
        population_size,
        subject_anthropometrics,
    )

    n = population_size(path)
    population_metadata(path)
    first, last = subject_anthropometrics(path, 0), subject_anthropometrics(path, n - 1)
    population_extremes(path)
    return _any_nonfinite([getattr(s, f) for s in (first, last) for f in NUMERIC_FIELDS])


def dataset(path: Path, seed: dict[str, Any]) -> bool:
    from host_training.simulation.frames import dataset_fingerprint, load_frames

    dataset_fingerprint(path)
    frames = load_frames(path, seed["features"], seed["muscles"])
    return _any_nonfinite(frames.x, frames.y)


def run(path: Path, seed: dict[str, Any]) -> bool:
    from host_training.learning.run import load_run

    loaded = load_run(path)
    rows = np.asarray(seed["rows"], dtype=np.float32)
    return _any_nonfinite(loaded.forces(rows))


def bundle(path: Path, seed: dict[str, Any]) -> bool:
    from edge_runtime.contracts.bundle import load_public_key
    from edge_runtime.contracts.model_bundle import verify_model_bundle

    checked = verify_model_bundle(path, load_public_key(Path(seed["pubkey"])))
    diff = checked.golden_max_diff_n
    return diff is not None and not np.isfinite(diff)


def sync_ingestion(path: Path, _: dict[str, Any]) -> bool:
    """A synced session record as a hub might send it: stored, and every page of the patient
    answers (a record that does not read is quarantined, never an error)."""
    from sqlalchemy import select

    from ble_gateway.store import ClinicStore, ClinicStoreError, DeviceKey, quarantine
    from ble_gateway.web.exports import fhir_bundle, sessions_csv
    from ble_gateway.web.review import patient_history
    from edge_runtime.contracts.gatt import SyncRecord

    payload = path.read_bytes().decode("utf-8", errors="replace")
    with tempfile.TemporaryDirectory() as tmp:
        store = ClinicStore(Path(tmp) / "clinic.db")
        try:
            device = store.device_id(DeviceKey("AA:BB:CC:DD:EE:FF", "00" * 16), "1.0.0")
            store.assign_device(device, "P-1")
            record = SyncRecord(1, "2026-11-24T10:00:00.000+00:00", "session", "s1", payload)
            store.add_records(device, [record])
            with store.engine.connect() as db:
                reason = db.execute(select(quarantine.c.reason)).scalar()
            history = patient_history(store.engine, "P-1")
            history.warnings()
            sessions_csv(history)
            json.dumps(fhir_bundle(history), allow_nan=False)
        finally:
            store.close()
    if reason is not None:  # kept verbatim and shown as unreadable: the store's clean refusal
        raise ClinicStoreError(f"quarantined: {reason}")
    return False


READERS: dict[str, Reader] = {
    "recording_csv": recording_csv,
    "orientation": orientation,
    "trc": trc,
    "marker_map": marker_map,
    "profile_toml": profile,
    "hub_toml": hub_config,
    "population": population,
    "dataset": dataset,
    "run": run,
    "bundle": bundle,
    "sync_ingestion": sync_ingestion,
}


def classify(reader: Reader, path: Path, seed: dict[str, Any]) -> dict[str, str]:
    clean = _clean_errors()
    try:
        nonfinite = reader(path, seed)
    except clean as exc:
        return {"outcome": "clean_refusal", "detail": str(exc)[:300]}
    except Exception as exc:  # what the benchmark is looking for: any escape is a defect
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"outcome": "traceback", "detail": last[:500]}
    return {"outcome": "silent_nonfinite_output" if nonfinite else "accepted_valid", "detail": ""}


def main() -> None:
    """Worker loop: ``{"reader", "path", "seed"}`` lines in, one outcome line out each."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)  # refusals log warnings; the outcome line says enough
    warnings.simplefilter("ignore")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        result = classify(READERS[case["reader"]], Path(case["path"]), case.get("seed", {}))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
