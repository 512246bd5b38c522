"""Broken and hostile files given to the hub's readers and commands: each refused with a
message naming the file and what is wrong, exit 2, nothing written, never a hang or a
traceback, never wrong output reported as success."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.recording import ImuRecording, RecordingError, check_same_time_base
from edge_runtime.hub.storage import HubStore, StorageError

CERVICAL = str(Path(sys.executable).with_name("cervical"))
HEADER = "t_s,gyr_x,gyr_y,gyr_z,acc_x,acc_y,acc_z"


def recording(n: int = 400, t0: float = 0.0, seed: int = 0) -> ImuRecording:
    rng = np.random.default_rng(seed)
    t = t0 + np.arange(n) / 100.0
    gyr = 0.3 * np.sin(np.outer(t, [1.0, 1.3, 0.7])) + rng.normal(0, 0.01, (n, 3))
    acc = np.tile([0.0, 0.0, 9.81], (n, 1)) + rng.normal(0, 0.05, (n, 3))
    return ImuRecording(t, gyr, acc)


def csv_file(tmp_path: Path, name: str = "rec.csv", rec: ImuRecording | None = None) -> Path:
    path = tmp_path / name
    (rec or recording()).write_csv(path)
    return path


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERVICAL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe" + HEADER.encode("utf-16-le"), "not UTF-8"),
        (HEADER.encode() + b"\n", "0 sample"),
        (HEADER.encode() + b"\n0,0,0,0,0,0,9.8\n0.01,1e300,0,0,0,0,9.8\n", "beyond 1000"),
        (HEADER.encode() + b"\n0,0,0,0,0,0,9.8\n0.01,inf,0,0,0,0,9.8\n", "beyond"),
        (HEADER.encode() + b"\n0,0,0\x00,0,0,0,9.8\n0.01,0,0,0,0,0,9.8\n", "NUL"),
        (b"", "empty file"),
    ],
)
def test_a_broken_recording_is_refused_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message) as caught:
        ImuRecording.read_csv(path)
    assert "broken.csv" in str(caught.value)


def test_shuffled_rows_are_refused_and_a_glitch_is_kept(tmp_path: Path) -> None:
    rec = recording()
    order = np.random.default_rng(1).permutation(len(rec.t_s))
    shuffled = ImuRecording(rec.t_s[order], rec.gyr_rad_s[order], rec.acc_m_s2[order])
    with pytest.raises(RecordingError, match="out of time order"):
        ImuRecording.read_csv(csv_file(tmp_path, rec=shuffled))
    t = rec.t_s.copy()
    t[[100, 101]] = t[[101, 100]]  # one reversed pair: a sensor glitch, for the hub to mark
    glitch = ImuRecording(t, rec.gyr_rad_s, rec.acc_m_s2)
    assert len(ImuRecording.read_csv(csv_file(tmp_path, "g.csv", glitch)).t_s) == len(t)


def test_devices_folders_and_missing_files_are_refused_at_once(tmp_path: Path) -> None:
    for path, message in ((Path("/dev/zero"), "not a regular file"), (tmp_path, "is a folder"),
                          (tmp_path / "nope.csv", "cannot read")):  # fmt: skip
        with pytest.raises(RecordingError, match=message):
            ImuRecording.read_csv(path)


def test_two_sensors_on_different_clocks_are_refused() -> None:
    check_same_time_base(recording(), recording(t0=5.0))
    with pytest.raises(RecordingError, match="not one session's clock"):
        check_same_time_base(recording(), recording(t0=-1e9))


def test_a_foreign_sqlite_file_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(StorageError, match="database of something else"):
        HubStore(path)
    assert path.read_bytes() == before


def test_orientation_refuses_to_overwrite_its_input_or_write_onto_a_folder(tmp_path: Path) -> None:
    source = csv_file(tmp_path)
    before = source.read_bytes()
    r = run("edge", "orientation", "--recording", str(source), "--out", str(source))
    assert r.returncode == 2 and "is the input file" in r.stderr
    assert source.read_bytes() == before
    folder = tmp_path / "folder"
    folder.mkdir()
    r = run("edge", "orientation", "--recording", str(source), "--out", str(folder))
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*.tmp"))
    r = run("edge", "orientation", "--recording", "/dev/zero", "--out", str(tmp_path / "q.csv"),
            timeout=60)  # fmt: skip
    assert r.returncode == 2 and "not a regular file" in r.stderr
    r = run("edge", "orientation", "--recording", str(source), "--out", str(tmp_path / "n/q.csv"))
    assert r.returncode == 0 and (tmp_path / "n/q.csv").exists()


def test_profiles_and_hub_configurations_that_are_not_text_are_refused(tmp_path: Path) -> None:
    from edge_runtime.contracts.anthropometrics import read_profile
    from edge_runtime.contracts.errors import InvalidAnthropometricsError
    from edge_runtime.hub.config import ConfigError, load_config

    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'sex = "female"\nstature_m = \xff\n')
    with pytest.raises(InvalidAnthropometricsError, match="not UTF-8"):
        read_profile(bad)
    with pytest.raises(ConfigError, match=r"bad\.toml:2: not UTF-8"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(Path("/dev/zero"))


def test_numbers_too_large_or_not_finite_are_refused_everywhere(tmp_path: Path) -> None:
    """What the fuzzing found at scale: a 400-digit integer (math.isfinite overflows on it),
    nan or inf in a TOML number, a hub setting of the wrong type."""
    from cervical_demo.fuzz import HUB_TOML
    from edge_runtime.contracts.anthropometrics import read_profile
    from edge_runtime.contracts.errors import InvalidAnthropometricsError
    from edge_runtime.contracts.record_payloads import RecordError, parse_record
    from edge_runtime.contracts.rom_assessment import AssessmentConfig, AssessmentError
    from edge_runtime.hub.config import ConfigError, load_config

    huge = 10**400
    profile = tmp_path / "profile.toml"
    lines = ['sex = "female"', f"stature_m = {huge}", "body_mass_kg = 60", "neck_length_m = 0.1",
             "shoulder_width_m = 0.36", "head_mass_kg = 4"]  # fmt: skip
    profile.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidAnthropometricsError, match="stature_m"):
        read_profile(profile)
    with pytest.raises(AssessmentError, match="min_deficit_deg"):
        AssessmentConfig(min_deficit_deg=huge)
    event = ('{"format": "cervical-hub-record/1", "event": "sensors_unusable", '
             f'"from_t_s": {huge}, "to_t_s": 1}}')  # fmt: skip
    with pytest.raises(RecordError, match="from_t_s"):
        parse_record("event", event)
    base = HUB_TOML
    for change, message in (
        (("rate_hz = 100.0", "rate_hz = nan"), "rate_hz = nan: not a finite number"),
        (("rate_hz = 100.0", f"rate_hz = {huge}"), "not a finite number"),
        (("retention_days = 90", 'retention_days = "x"'), "retention_days = 'x' should be a num"),
        (("retention_days = 90", "retention_days = inf"), "retention_days"),
        (("[hub]", "ble = 3\n[hub]"), r"\[ble\] should be a table"),
    ):
        (tmp_path / "hub.toml").write_text(base.replace(*change))
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "hub.toml")


def test_a_signed_model_the_runtime_cannot_prepare_is_refused(
    quantized_bundle: Path, signing_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A re-signed bundle whose model's bytes were damaged (what a faulty build with the signing
    key would ship): LiteRT's RuntimeError at prepare time becomes a BundleError."""
    import random

    from cervical_demo.fuzz import Seed, make_case
    from edge_runtime.contracts.bundle import BundleError, load_public_key
    from edge_runtime.contracts.model_bundle import verify_model_bundle

    key, pub = signing_keys
    seed = Seed(quantized_bundle, {"model.tflite": "binary"}, resign_key=key)
    refusals = []
    for i in range(40):
        case = make_case(seed, tmp_path / f"case-{i}", random.Random(f"prepare-{i}"))
        try:
            verify_model_bundle(case, load_public_key(pub))
        except BundleError as exc:
            refusals.append(str(exc))
    assert sum("TFLite runtime cannot" in m for m in refusals) >= 3  # 8 with these seeds
    assert all("model.tflite" in m for m in refusals)
