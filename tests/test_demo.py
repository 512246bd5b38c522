"""`cervical demo --tiny` end to end, as a new user runs it: every stage's outputs are checked
(not just the exit code), a re-run reuses the finished stages and says so, and
`cervical demo stop` ends the web view it left running."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cervical_demo.scales import SCALES
from tests.conftest import REPO

CERVICAL = str(Path(sys.executable).parent / "cervical")
QUANT_PYTHON = REPO / ".venv-quant" / "bin" / "python"
MUSCLES = 72


def _demo(*args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERVICAL, "demo", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    if not QUANT_PYTHON.is_file():
        pytest.skip(f"{QUANT_PYTHON} absent: run `make venv-quant` (make test builds it)")
    out = tmp_path_factory.mktemp("demo") / "out"
    try:
        r = _demo("--tiny", "--out", str(out), "--port", "0")
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        yield out, r.stdout, json.loads((out / "summary.json").read_text())
    finally:  # whatever failed, no web view outlives the tests
        _demo("stop", "--out", str(out))


@pytest.mark.slow
def test_tiny_demo_runs_every_stage_and_leaves_its_outputs(
    demo: tuple[Path, str, dict[str, Any]],
) -> None:
    from ble_gateway.store import ClinicStore
    from cervical_demo import scenario
    from edge_runtime.contracts.bundle import load_public_key
    from edge_runtime.contracts.model_bundle import verify_model_bundle
    from edge_runtime.hub.storage import HubStore
    from host_training.population.sampling import population_size

    out, stdout, summary = demo
    assert [f"[{i}/6]" in stdout for i in range(1, 7)] == [True] * 6
    assert {s["status"] for s in summary["stages"].values()} == {"done"}
    # 1. population
    assert population_size(out / "population.parquet") == 1_000_000
    # 2. dataset, simulated in shards
    shards = sorted((out / "data" / "shards").glob("shard-*.parquet"))
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    # 24 subjects and the population's extreme ones (smallest and largest of each input)
    extremes = [a for a in manifest["config"]["anchor_subjects"] if a >= 24]
    assert manifest["config"]["n_subjects"] == 24 and 2 <= len(extremes) <= 8
    assert len(shards) == -(-(24 + len(extremes)) // 6)
    # 3. training: R² per muscle on held-out subjects, with its plot
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert len(metrics["r2_per_muscle"]) == MUSCLES
    assert (out / "run" / "plots" / "r2_per_muscle.png").read_bytes()[:4] == b"\x89PNG"
    figures = summary["figures"]
    held_out = metrics["heldout_subjects"]["summary"]
    assert figures["r2_worst_muscle"] == held_out["r2_min"]
    # the goals' figure (muscles varying by more than 1% of Fmax) leads, all 72 beside it
    assert figures["r2_worst_varying_muscle"] == held_out["r2_min_varying"]
    assert figures["r2_worst_varying_muscle"] >= figures["r2_worst_muscle"]
    printed = " ".join(stdout.split())  # the console wraps long lines
    assert f"worst muscle R² {held_out['r2_min_varying']:.4f}" in printed
    assert f"over all {MUSCLES}" in printed
    # 4. signed int8 bundle that a hub accepts; the private key stays private
    bundle = verify_model_bundle(out / "bundle", load_public_key(out / "signing.pub"))
    assert bundle.manifest.gate["passed"] is True
    assert figures["int8_largest_r2_drop"] <= bundle.manifest.gate["tolerance_r2"]
    assert stat.S_IMODE((out / "signing.key").stat().st_mode) == 0o600
    # 5. the virtual hub started without a model, got it over BLE, then measured the patient;
    # stopped, it recorded the days before today, and started again for today's test
    hub_log = (out / "logs" / "hub.log").read_text()
    assert hub_log.index("no model installed") < hub_log.index("hub running")
    assert "hub stopped cleanly" in hub_log
    assert "hub stopped cleanly" in (out / "logs" / "hub-today.log").read_text()
    assert (out / "hub" / "models" / "current").is_symlink()
    with HubStore(out / "hub" / "hub.db") as store:
        sessions = store.records_of_kind("session")
        hub_records = store.sync_records_after(0, 10**6)
        assert store.unsynced_count == 1  # the hub's own stop, recorded after the sync
    last = json.loads(hub_records.pop().payload_json)
    assert last["event"] == "hub_stopped"
    # a test on the first day and every 7th after it, and today's the gateway ran; the rest wear
    days = SCALES["tiny"].wear_days
    kinds = [r.payload["kind"] for r in sessions]
    assert kinds.count("test") == 1 + -(-days // 7) and set(kinds) <= {"test", "wear"}, kinds
    tests = [r.payload for r in sessions if r.payload["kind"] == "test"]
    session = tests[-1]  # today's
    assert all(t["guided_test"]["outcome"] == "complete" for t in tests)
    assert all(r.payload["assessment"] is None for r in sessions if r.payload["kind"] == "wear")
    assert session["model"]["bundle_version"] == bundle.version
    assert session["profile"] == scenario.PATIENT_PROFILE.to_dict()  # set by the gateway
    worn = {r.payload["monitoring"]["day"] for r in sessions if r.payload["kind"] == "wear"}
    assert len(worn) >= days and figures["days_worn"] == len(worn)
    # the bundle's confidence twin ran on the hub: the session says how many frames it doubted
    assert bundle.twin is not None and session["force_confidence"]["assessed_frames"] > 0
    low_share = (
        session["force_confidence"]["low_frames"] / session["force_confidence"]["assessed_frames"]
    )
    assert figures["sessions"][-1]["low_confidence_force_frames"] == round(low_share, 4)
    # 6. every record synced into the clinic store, once, and assigned to the patient
    clinic = ClinicStore(out / "clinic.db")
    try:
        (device_id,) = {r["device_id"] for r in _devices(clinic)}
        assert clinic.records(device_id) == hub_records
        assert [r["patient_code"] for r in _devices(clinic)] == [scenario.PATIENT_CODE]
    finally:
        clinic.close()
    assert figures["records_synced"] == len(hub_records)
    assert figures["flagged_regions"] == sorted(scenario.RESTRICTED)
    # 7. exports written by the web view, and the web view still serving
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    fhir = json.loads((out / "fhir-bundle.json").read_text())
    low = {
        e["resource"]["code"]["coding"][0]["code"]
        for e in fhir["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"].get("interpretation", [{}])[0].get("coding", [{}])[0].get("code") == "L"
    }
    assert low == set(scenario.RESTRICTED)
    rows = (out / "sessions.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(tests)  # header + one per test (wear: by day)
    day_rows = (out / "days.csv").read_text().strip().splitlines()
    assert len(day_rows) == 1 + len(worn)
    assert b"habitual-plot" in (out / "days.html").read_bytes()
    assert stat.S_IMODE((out / "web-login.txt").stat().st_mode) == 0o600
    web = summary["web_view"]
    base = web["url"].split("/patients/")[0]
    assert web["serving"] is True and _get(base + "/healthz") == 200
    assert "cervical demo stop" in stdout and base in stdout


def _devices(clinic: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from ble_gateway.store import devices, patients

    with clinic.engine.connect() as db:
        rows = db.execute(
            select(devices.c.id, patients.c.code).outerjoin(
                patients, devices.c.patient_id == patients.c.id
            )
        ).all()
    return [{"device_id": r.id, "patient_code": r.code} for r in rows]


@pytest.mark.slow
def test_a_rerun_reuses_finished_stages_and_stop_ends_the_web_view(
    demo: tuple[Path, str, dict[str, Any]],
) -> None:
    out, _, first = demo
    run_created = json.loads((out / "run" / "manifest.json").read_text())["created_utc"]
    bundle_version = first["figures"]["bundle_version"]

    r = _demo("--tiny", "--out", str(out), "--port", "0", "--no-serve")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "stopped the earlier run's web" in r.stdout  # it held the clinic store
    second = json.loads((out / "summary.json").read_text())
    statuses = {name: s["status"] for name, s in second["stages"].items()}
    assert statuses == {
        "population": "reused", "dataset": "reused", "training": "reused", "bundle": "reused",
        "hub": "done", "clinic": "done",
    }  # fmt: skip
    assert r.stdout.count("reused in") == 4
    assert json.loads((out / "run" / "manifest.json").read_text())["created_utc"] == run_created
    assert second["figures"]["bundle_version"] == bundle_version
    assert second["web_view"]["serving"] is False

    # a web view left running by a demo is stopped by `cervical demo stop`, and only once
    r = _demo("--tiny", "--out", str(out), "--port", "0")
    assert r.returncode == 0, r.stderr[-4000:]
    url = json.loads((out / "summary.json").read_text())["web_view"]["url"]
    healthz = url.split("/patients/")[0] + "/healthz"
    assert _get(healthz) == 200
    stop = _demo("stop", "--out", str(out))
    assert stop.returncode == 0 and "stopped: web" in stop.stdout
    with pytest.raises(urllib.error.URLError):
        _get(healthz)
    assert "was running" in _demo("stop", "--out", str(out)).stdout


def test_demo_refuses_bad_requests_without_touching_the_folder(tmp_path: Path) -> None:
    from cervical_demo.scales import SCALES
    from cervical_demo.state import LOCK_FILE, DemoState, DemoStateError

    r = _demo("--tiny", "--full", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "exclude each other" in r.stderr
    assert not (tmp_path / "x").exists()
    # a folder holding another scale's demo is refused before anything runs
    out = tmp_path / "out"
    DemoState(out, SCALES["tiny"]).open().close()
    before = (out / "demo-state.json").read_bytes()
    r = _demo("--out", str(out))
    assert r.returncode == 2 and "holds a 'tiny' demo" in r.stderr and "--out" in r.stderr
    assert (out / "demo-state.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == sorted([LOCK_FILE, "demo-state.json"])
    # two demos never write one folder at once
    fd = os.open(out / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DemoStateError, match="another demo is running"):
            DemoState(out, SCALES["tiny"]).open()
    finally:
        os.close(fd)
    (out / "demo-state.json").write_text("{not json")
    with pytest.raises(DemoStateError, match="unreadable"):
        DemoState(out, SCALES["tiny"]).open()


def test_stop_leaves_processes_that_are_not_the_demos_alone(tmp_path: Path) -> None:
    from cervical_demo.processes import PIDS_DIR, stop_recorded

    other = subprocess.Popen(["sleep", "30"])  # a recycled pid now names something else
    try:
        (tmp_path / PIDS_DIR).mkdir()
        (tmp_path / PIDS_DIR / "web.pid").write_text(f"{other.pid}\n")
        (tmp_path / PIDS_DIR / "hub.pid").write_text("not a pid\n")
        assert stop_recorded(tmp_path) == []
        assert other.poll() is None
        assert list((tmp_path / PIDS_DIR).iterdir()) == []
    finally:
        other.kill()
        other.wait()


def test_the_demo_fails_when_the_hub_outcome_differs_from_the_scenario() -> None:
    from cervical_demo import scenario
    from cervical_demo.summary import scenario_mismatch

    def figures(
        flagged: list[str], marks: list[str], missing: list[str], test: str = "complete"
    ) -> dict[str, Any]:
        session = {"flagged": flagged, "insufficient_data": missing, "sensor_marks": marks,
                   "guided_test": test}  # fmt: skip
        return {"flagged_regions": sorted(flagged), "sensor_marks": marks, "sessions": [session],
                "days_worn": 8, "wear_days_in_scenario": 8}  # fmt: skip

    story = sorted(scenario.RESTRICTED)
    assert scenario_mismatch(figures(story, [], [])) is None
    untested = scenario_mismatch(figures([], [], [], test="abandoned"))
    assert untested is not None and "no complete guided test" in untested
    lost = scenario_mismatch(figures([], ["sensor_lost"], list(story)))
    assert lost is not None
    assert "flagged nothing" in lost and "sensor_lost" in lost and story[0] in lost
    extra = scenario_mismatch(figures([*story, "flexion"], [], []))
    assert extra is not None and "flexion" in extra
    unworn = scenario_mismatch(figures(story, [], []) | {"days_worn": 3})
    assert unworn is not None and "3 days of wear synced, not 8" in unworn
