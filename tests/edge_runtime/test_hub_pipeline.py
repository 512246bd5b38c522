"""The hub end to end with a real signed int8 bundle: replay, bad input, model installs, the
daemon under SIGTERM, and the edge benchmark."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.contracts import hub_records as hr
from edge_runtime.contracts.accuracy import r2_per_column
from edge_runtime.contracts.anthropometrics import Anthropometrics, write_profile
from edge_runtime.contracts.bundle import (
    MODEL,
    load_public_key,
)
from edge_runtime.contracts.confidence import disagreement
from edge_runtime.contracts.force_model import ForceModel
from edge_runtime.contracts.guided_test import TEST_STEPS, GuidedTestError
from edge_runtime.contracts.model_bundle import verify_model_bundle
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.hub.config import load_config
from edge_runtime.hub.forces import ForceFrames
from edge_runtime.hub.models import InstallError, ModelSlots
from edge_runtime.hub.pipeline import HubPipeline
from edge_runtime.hub.storage import HubStore
from edge_runtime.sensors import ImuSource, SensorRole
from edge_runtime.sensors.replay import REPLAY_BUFFER_S
from edge_runtime.sensors.sim import SimSource
from edge_runtime.synthetic import WARMUP_S
from tests.hub_fixtures import protocol_session, resign_bundle, sensor_chunks, write_hub_config

CERVICAL = str(Path(sys.executable).with_name("cervical"))


def cervical(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERVICAL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _run(
    pipeline: HubPipeline, head: ImuRecording, trunk: ImuRecording, chunk_s: float = 0.5,
    at: tuple[float, Any] | None = None,
) -> None:  # fmt: skip
    """Deliver both recordings as a hub would receive them, then close (``at``: (t, f): call f()
    once the recordings reach t s)."""
    for start, role, part in sensor_chunks(head, trunk, chunk_s):
        if at is not None and start >= at[0]:
            at[1]()
            at = None
        pipeline.push(role, part)  # type: ignore[arg-type]
    pipeline.close()


_session = protocol_session


def test_replay_gives_int8_forces_within_the_gate_and_the_expected_flags(
    quantized_bundle: Path,
    signing_keys: tuple[Path, Path],
    learning_run: Path,
    wearer: Anthropometrics,
    tmp_path: Path,
) -> None:
    head, trunk, restricted = _session(quantized_bundle, signing_keys[1], wearer, seed=21)
    checked = verify_model_bundle(quantized_bundle, load_public_key(signing_keys[1]))
    store = HubStore(tmp_path / "hub.db")
    pipeline = HubPipeline(store, checked, wearer)
    seen: list[np.ndarray] = []
    estimates: list[ForceFrames] = []
    estimate = pipeline.estimator.estimate

    def spy(kin: np.ndarray) -> ForceFrames:
        seen.append(kin.copy())
        estimates.append(estimate(kin))
        return estimates[-1]

    pipeline.estimator.estimate = spy  # type: ignore[method-assign]
    progress: list[Any] = []
    pipeline.test_listener = progress.append
    pipeline.start_test()  # the wearer performs the guided test, as the gateway asked
    _run(pipeline, head, trunk)
    sessions = store.records_of_kind("session")
    summary = sessions[0].payload
    assert summary["kind"] == "test" and summary["end_reason"] == "test_finished"
    assert summary["guided_test"]["outcome"] == "complete", summary["guided_test"]
    assert [s.payload["kind"] for s in sessions[1:]] == ["wear"] * (len(sessions) - 1)
    done = [p.step for p in progress if getattr(p, "state", "") == "done"]
    assert done[0] == "calibrate" and sorted(done) == sorted(TEST_STEPS)
    assert progress[-1].outcome == "complete"  # the end told once, last
    assert set(summary["assessment"]["flagged"]) == set(restricted)
    assert summary["calibration"] is not None and summary["format"] == hr.RECORD_FORMAT
    # the same features through the float model: int8 stays within the bundle's gate
    kin = np.concatenate(seen)
    kin = kin[np.isfinite(kin).all(axis=1)]
    from edge_runtime.contracts.feature_spec import feature_matrix

    x = feature_matrix(kin, wearer, checked.spec.features)
    lo, hi = np.array(checked.spec.input_range).T
    inside = ((x >= lo) & (x <= hi)).all(axis=1)  # outside the training range: flagged, not gated
    assert inside.sum() > 1000, inside.sum()
    x = x[inside]
    int8 = pipeline.estimator.model.forces(x)
    float_model = ForceModel(
        (learning_run / "tflite" / "model_float32.tflite").read_bytes(), checked.spec
    )
    reference = float_model.forces(x)
    r2 = r2_per_column(reference, int8)
    varying = reference.std(axis=0) > 1e-3
    tolerance = checked.manifest.gate["tolerance_r2"]
    assert (r2[varying] >= 1 - tolerance).all(), (r2.min(), tolerance)
    gate_mean = checked.manifest.gate["mean_abs_error_int8_vs_float_n"]
    assert np.abs(int8 - reference).mean() <= 3 * gate_mean, (
        np.abs(int8 - reference).mean(),
        gate_mean,
    )
    # stored statistics are those of the forces computed on the frames of trusted forces: the
    # confidence twin's disagreement (contracts.confidence) at the bundle's threshold
    stats = summary["forces"]
    features = feature_matrix(kin, wearer, checked.spec.features)
    all_int8 = pipeline.estimator.model.forces(features)
    twin = pipeline.estimator.twin
    assert twin is not None and checked.manifest.confidence is not None
    low = disagreement(all_int8, twin.model.forces(features), twin.fmax_n) > twin.threshold_of_fmax
    flagged = np.concatenate([e.low_confidence for e in estimates if e.low_confidence is not None])
    assert flagged.sum() == low.sum() and 0 < low.sum() < len(kin)
    # the wear after the test goes on with the test's calibration: sessions add up to the frames
    confidences = [s.payload["force_confidence"] for s in sessions]
    confidence = {
        "assessed_frames": sum(c["assessed_frames"] for c in confidences),
        "low_frames": sum(c["low_frames"] for c in confidences),
        "threshold_of_fmax": confidences[0]["threshold_of_fmax"],
    }
    assert confidence == {
        "assessed_frames": len(kin),
        "low_frames": int(low.sum()),
        "threshold_of_fmax": checked.manifest.confidence.threshold_of_fmax,
    }
    assert sum(s.payload["forces"]["frames"] for s in sessions) == len(kin) - low.sum()
    muscle = checked.spec.outputs[0]
    peak = max(s.payload["forces"]["muscles"][muscle]["peak_n"] for s in sessions)
    assert peak == pytest.approx(all_int8[~low, 0].max(), abs=0.01)
    assert stats["frames"] > 0.9 * (len(kin) - low.sum())  # nearly all in the test itself
    epochs = store.records_of_kind("epoch")
    assert sum(e.payload["frames"] for e in epochs) == len(head.t_s)
    for what in ("assessed_frames", "low_frames"):  # epochs add up to their session
        assert sum(e.payload["force_confidence"][what] for e in epochs) == confidence[what]
    assert sum(e.payload["force_frames"] for e in epochs) == len(kin) - low.sum()
    store.close()


def test_wear_is_never_assessed_and_an_aborted_test_is_abandoned_without_one(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], wearer: Anthropometrics,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The same restricted wearer's protocol: as wear, no assessment (wear never judges range);
    as a test aborted half-way, an abandoned test, no assessment; a second test while one runs,
    or a test against a model without an envelope, refused with nothing changed."""
    head, trunk, _ = _session(quantized_bundle, signing_keys[1], wearer, seed=21)
    checked = verify_model_bundle(quantized_bundle, load_public_key(signing_keys[1]))
    store = HubStore(tmp_path / "hub.db")
    wear = HubPipeline(store, checked, wearer)
    _run(wear, head, trunk)
    (session,) = [r.payload for r in store.records_of_kind("session")]
    assert session["kind"] == "wear" and session["assessment"] is None
    assert session["guided_test"] is None and "guided tests only" in session["assessment_note"]

    store = HubStore(tmp_path / "test.db")
    pipeline = HubPipeline(store, checked, wearer)
    told: list[Any] = []
    pipeline.test_listener = told.append
    pipeline.start_test()
    with pytest.raises(GuidedTestError, match="already running"):
        pipeline.start_test()
    assert pipeline.guided_test_running
    _run(pipeline, head, trunk, at=(WARMUP_S + 12.0, pipeline.abort_test))
    test, after = [r.payload for r in store.records_of_kind("session")]
    assert test["kind"] == "test" and test["end_reason"] == "test_aborted"
    assert test["guided_test"]["outcome"] == "abandoned" and test["assessment"] is None
    assert test["guided_test"]["steps"][0]["step"] == "calibrate"  # it had begun
    assert "Test abandoned (stopped from the phone or computer)" in test["assessment_note"]
    assert after["kind"] == "wear" and after["assessment"] is None
    assert told[-1].outcome == "abandoned" and not pipeline.guided_test_running
    assert pipeline.abort_test() is False  # nothing runs: nothing to abort

    bare = replace(checked, manifest=replace(checked.manifest, envelope=None))
    no_envelope = HubPipeline(HubStore(tmp_path / "n.db"), bare, wearer)
    with pytest.raises(GuidedTestError, match="no motion envelope"):
        no_envelope.start_test()
    assert not no_envelope.guided_test_running


def test_bad_input_is_marked_and_never_crashes_or_loses_records(
    quantized_bundle: Path,
    signing_keys: tuple[Path, Path],
    wearer: Anthropometrics,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    head, trunk, _ = _session(quantized_bundle, signing_keys[1], wearer, seed=5)
    n = len(head.t_s)
    head.gyr_rad_s[3000:3010] = np.nan  # NaN samples
    head.acc_m_s2[3100:3105, 0] = np.inf  # inf samples
    head.gyr_rad_s[3200:3204, 2] = math.radians(2000)  # saturated axis
    t = head.t_s.copy()
    t[3300] = t[3290]  # backwards
    keep = np.ones(n, dtype=bool)
    keep[3400:3420] = False  # dropped samples
    keep[4000:4600] = False  # the head sensor disappears for 6 s and comes back
    head = ImuRecording(t[keep], head.gyr_rad_s[keep], head.acc_m_s2[keep], head.mag_ut[keep])  # type: ignore[index]
    checked = verify_model_bundle(quantized_bundle, load_public_key(signing_keys[1]))
    store = HubStore(tmp_path / "hub.db")
    store.append("event", {"stored": "before"})
    pipeline = HubPipeline(store, checked, wearer)
    _run(pipeline, head, trunk)
    sessions = store.records_of_kind("session")
    assert [s.payload["end_reason"] for s in sessions] == ["sensors_unusable", "end_of_input"]
    reasons = {m["reason"] for s in sessions for m in s.payload["marks"]}
    assert {
        "non_finite_samples",
        "saturated_axis",
        "timestamp_backwards",
        "dropped_samples",
        "sensor_lost",
    } <= reasons
    for name in ("non_finite_samples", "saturated_axis", "sensor_lost"):
        assert caplog.text.count(f"{name} from") == 1  # logged once
    gap = [e.payload for e in store.records_of_kind("event") if "event" in e.payload]
    assert gap and gap[0]["event"] == "sensors_unusable"
    assert gap[0]["to_t_s"] - gap[0]["from_t_s"] == pytest.approx(6.0 - 3.0, abs=0.2)
    assert store.records_after(0, 1)[0].payload == {"stored": "before"}
    assert sessions[1].payload["calibration"] is None  # a new session must calibrate again
    store.close()


def test_a_full_disk_keeps_records_waiting_until_space_returns(
    quantized_bundle: Path,
    signing_keys: tuple[Path, Path],
    wearer: Anthropometrics,
    tmp_path: Path,
) -> None:
    head, trunk, _ = _session(quantized_bundle, signing_keys[1], wearer, seed=9)
    checked = verify_model_bundle(quantized_bundle, load_public_key(signing_keys[1]))
    store = HubStore(tmp_path / "hub.db", max_bytes=60_000)
    filler = 0
    try:
        while True:
            store.append("event", {"pad": "z" * 2000})
            filler += 1
    except Exception:
        pass
    pipeline = HubPipeline(store, checked, wearer)
    _run(pipeline, head, trunk)  # nothing raised
    assert any(r.kind == "session" for r in pipeline.pending)  # waiting, not lost
    store.ack(store.last_seq)  # the gateway synced: retention may now make room
    pipeline.event("hub_stopped")
    assert not pipeline.pending
    kinds = [r.kind for r in store.records_after(filler, 10_000)]
    assert "session" in kinds and kinds[-1] == "event"
    store.close()


def test_model_installs_switch_atomically_self_test_and_roll_back(
    quantized_bundle: Path,
    signing_keys: tuple[Path, Path],
    wearer: Anthropometrics,
    tmp_path: Path,
) -> None:
    key, pub = signing_keys
    slots = ModelSlots(tmp_path / "models", load_public_key(pub))
    with pytest.raises(InstallError, match="no model installed"):
        slots.active()
    slots.install(quantized_bundle, wearer)
    assert slots.current_slot == "slot-a"
    with pytest.raises(InstallError, match="not newer"):
        slots.install(quantized_bundle, wearer)
    v2 = resign_bundle(quantized_bundle, key, tmp_path / "v2", "2.0.0")
    slots.install(v2, wearer)
    assert slots.current_slot == "slot-b"
    assert slots.active().version == "2.0.0"
    # a tampered bundle is refused before anything changes
    bad = tmp_path / "bad"
    shutil.copytree(resign_bundle(quantized_bundle, key, tmp_path / "v3", "3.0.0"), bad)
    (bad / MODEL).write_bytes((bad / MODEL).read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(InstallError, match="refused"):
        slots.install(bad, wearer)
    assert slots.current_slot == "slot-b"

    def failing(bundle: object, profile: object) -> None:
        raise RuntimeError("forces not finite on this hub")

    with pytest.raises(InstallError, match="rolled back to slot-b"):
        slots.install(tmp_path / "v3", wearer, test=failing)
    assert slots.current_slot == "slot-b" and slots.active().version == "2.0.0"
    slots.install(quantized_bundle, wearer, force=True)  # a lower version, forced
    assert slots.active().version == "1.0.0"
    # the running slot corrupted on disk: the hub falls back to the other verified slot
    current = tmp_path / "models" / str(slots.current_slot)
    (current / MODEL).write_bytes(b"corrupt")
    assert slots.active().version == "2.0.0"


def test_daemon_runs_sim_sensors_and_stops_cleanly_on_sigterm(
    quantized_bundle: Path,
    signing_keys: tuple[Path, Path],
    wearer: Anthropometrics,
    tmp_path: Path,
) -> None:
    config = write_hub_config(
        tmp_path,
        quantized_bundle,
        signing_keys[1],
        wearer,
        "sim:seed=3",
        "sim:seed=3",
        realtime=True,
    )
    proc = subprocess.Popen(
        [CERVICAL, "edge", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if (tmp_path / "hub.db").exists():
            with HubStore(tmp_path / "hub.db") as store:
                if store.records_of_kind("epoch"):
                    break
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "hub stopped cleanly" in stderr
    with HubStore(tmp_path / "hub.db") as store:
        events = [r.payload["event"] for r in store.records_of_kind("event")]
        assert events == ["hub_started", "hub_stopped"]
        assert store.records_of_kind("session")[0].payload["end_reason"] == "end_of_input"
        assert store.integrity() == "ok"


def test_replay_cli_and_refusals(
    quantized_bundle: Path,
    signing_keys: tuple[Path, Path],
    wearer: Anthropometrics,
    tmp_path: Path,
) -> None:
    head, trunk, restricted = _session(quantized_bundle, signing_keys[1], wearer, seed=33)
    head.write_csv(tmp_path / "head.csv")
    trunk.write_csv(tmp_path / "trunk.csv")
    write_profile(wearer, tmp_path / "profile.toml")
    args = [
        "edge",
        "replay",
        "--head",
        str(tmp_path / "head.csv"),
        "--trunk",
        str(tmp_path / "trunk.csv"),
        "--bundle",
        str(quantized_bundle),
        "--profile",
        str(tmp_path / "profile.toml"),
        "--db",
        str(tmp_path / "hub.db"),
        "--pubkey",
        str(signing_keys[1]),
    ]
    r = cervical(*args, "--guided-test")
    assert r.returncode == 0, r.stderr
    assert "x real time" in r.stdout and restricted[0] in r.stdout
    assert r.stdout.count("\ntest ") + r.stdout.startswith("test ") == 1
    args[args.index("--db") + 1] = str(tmp_path / "wear.db")
    r = cervical(*args)  # the same motion as wear: never judged
    assert r.returncode == 0 and "flagged: none" in r.stdout and "test " not in r.stdout
    assert "wear " in r.stdout and "guided tests only" in r.stdout
    other = tmp_path / "other.key"
    from edge_runtime.contracts.bundle import generate_key_pair

    wrong = generate_key_pair(other)
    r = cervical(*[str(wrong) if a == str(signing_keys[1]) else a for a in args])
    assert r.returncode == 2 and "signature" in r.stderr
    (tmp_path / "bad.csv").write_text("t_s,gyr_x\n0,1\n")
    r = cervical(*[str(tmp_path / "bad.csv") if a.endswith("head.csv") else a for a in args])
    assert r.returncode == 2 and "bad.csv" in r.stderr and "header" in r.stderr
    r = cervical(
        "edge",
        "orientation",
        "--recording",
        str(tmp_path / "head.csv"),
        "--out",
        str(tmp_path / "q.csv"),
    )
    assert r.returncode == 0 and "9D" in r.stdout
    q = np.loadtxt(tmp_path / "q.csv", delimiter=",", skiprows=1)
    assert q.shape == (len(head.t_s), 5)
    np.testing.assert_allclose(np.linalg.norm(q[:, 1:], axis=1), 1.0, atol=1e-6)


def test_bench_edge_json(quantized_bundle: Path, signing_keys: tuple[Path, Path]) -> None:
    r = cervical(
        "bench",
        "edge",
        "--bundle",
        str(quantized_bundle),
        "--pubkey",
        str(signing_keys[1]),
        "--seconds",
        "60",
        "--repeats",
        "1",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    assert {"realtime_factor", "us_per_frame", "peak_rss_mb"} <= set(figures)
    assert figures["realtime_factor"] > 1 and 20 < figures["peak_rss_mb"] < 2000


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from edge_runtime.hub.config import ConfigError, load_config

    path = tmp_path / "hub.toml"
    base = (
        '[hub]\ndatabase = "a.db"\nmodels = "m"\npublic_key = "k.pub"\nprofile = "p.toml"\n'
        '[sensors]\nhead = "sim:seed=1"\ntrunk = "sim:seed=1"\n'
    )
    path.write_text(base + "[pipeline]\nepoch_seconds = 5\n")
    with pytest.raises(ConfigError, match="epoch_seconds"):
        load_config(path)
    path.write_text(base + "[calibration]\nnod_min_deg = 'big'\n")
    with pytest.raises(ConfigError, match="nod_min_deg"):
        load_config(path)
    path.write_text(base + "[assessment]\nmin_deficit_deg = 15\n")
    cfg = load_config(path)
    assert cfg.pipeline.assessment.min_deficit_deg == 15.0 and cfg.database == tmp_path / "a.db"
    assert replace(cfg, realtime=False).realtime is False
    assert cfg.replay_speed == 1.0
    for bad in ("'fast'", "0", "-2", "true", "5000"):
        path.write_text(base.replace("[sensors]", f"replay_speed = {bad}\n[sensors]"))
        with pytest.raises(ConfigError, match="replay_speed"):
            load_config(path)
    path.write_text(base.replace("[sensors]", "replay_speed = 20\n[sensors]"))
    assert load_config(path).replay_speed == 20.0


class _StarvedSource:
    """A paced sim source whose reader is starved once (a busy hub: a sync, a model install)."""

    def __init__(self, source: ImuSource, after_chunks: int, stall_s: float) -> None:
        self.inner, self.after, self.stall_s = source, after_chunks, stall_s
        self.spec, self.ranges = source.spec, source.ranges
        self.pace, self.buffer_s = source.pace, source.buffer_s

    def chunks(self) -> Iterator[ImuRecording]:
        for k, chunk in enumerate(self.inner.chunks()):
            if k == self.after:
                time.sleep(self.stall_s)  # the reader thread gets no CPU
            yield chunk

    def close(self) -> None:
        self.inner.close()


def _starved_run(
    bundle: Path, pub: Path, wearer: Anthropometrics, tmp: Path, stall_s: float, monkeypatch: Any
) -> dict[str, Any]:
    from edge_runtime.hub import daemon

    speed = 10.0  # the demo's pace: 1 s of wall clock is 10 s of the sensors' time
    config = load_config(
        write_hub_config(tmp, bundle, pub, wearer, "sim:seed=3", "sim:seed=3", True,
                         replay_speed=speed)
    )  # fmt: skip
    opened = daemon.open_source

    def open_source(spec: str, role: SensorRole, realtime: bool, pace: float) -> ImuSource:
        source = opened(spec, role, realtime, pace)
        return _StarvedSource(source, 20, stall_s) if role == "head" else source

    monkeypatch.setattr(daemon, "open_source", open_source)
    asyncio.run(daemon.run_hub(config))
    with HubStore(config.database) as store:
        sessions = [r.payload for r in store.records_of_kind("session")]
    assert len(sessions) >= 1
    return sessions[0]


@pytest.mark.parametrize("stall_s", [0.5, 4.0])
def test_a_starved_reader_loses_nothing_within_its_buffer_and_is_lost_beyond_it(
    quantized_bundle: Path,
    signing_keys: tuple[Path, Path],
    wearer: Anthropometrics,
    tmp_path: Path,
    monkeypatch: Any,
    stall_s: float,
) -> None:
    """The head's reader gets no CPU for ``stall_s`` while the trunk's goes on. At 10x, 0.5 s is
    5 s of the trunk's samples ahead (a sensor lost at once by the old rule, which compared the
    two sensors' data), within the replay's 32 s buffer: every sample arrives, no frame is
    marked. 4 s is 40 s of samples, more than the replay holds: the head is reported lost."""
    session = _starved_run(
        quantized_bundle, signing_keys[1], wearer, tmp_path, stall_s, monkeypatch
    )
    reasons = {m["reason"] for m in session["marks"]}
    if stall_s < REPLAY_BUFFER_S / 10:
        assert not reasons & {"sensor_lost", "dropped_samples", "timestamp_jump"}, reasons
        assert session["end_reason"] == "end_of_input"
        assert session["frames"] == len(SimSource.from_spec("seed=3", "head").recording.t_s)
    else:
        assert {"sensor_lost", "dropped_samples"} <= reasons
