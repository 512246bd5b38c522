"""``cervical quantize`` end to end (onnx2tf in .venv-quant), and a hub's checks of the bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest

from edge_runtime.contracts.accuracy import r2_per_column, varying_columns
from edge_runtime.contracts.bundle import (
    MANIFEST,
    MODEL,
    SIGNATURE,
    TWIN,
    generate_key_pair,
    load_private_key,
    load_public_key,
    write_bundle,
)
from edge_runtime.contracts.bundle_archive import pack_bundle, unpack_bundle
from edge_runtime.contracts.feature_spec import FeatureSpec
from edge_runtime.contracts.force_model import ForceModel
from edge_runtime.contracts.tflite_ops import LITERT, TFLITE_RUNTIME
from edge_runtime.contracts.training_run import RunLayout, RunManifest
from edge_runtime.hub.models import InstallError, ModelSlots
from tests.conftest import QUANT_PYTHON, REPO
from tests.edge_runtime.ble.harness import PROFILE

CERVICAL = str(Path(sys.executable).with_name("cervical"))


def cervical(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CERVICAL, *args], capture_output=True, text=True, timeout=900,
                          check=False)  # fmt: skip


@pytest.fixture(scope="module")
def keys(signing_keys: tuple[Path, Path]) -> tuple[Path, Path]:
    return signing_keys


@pytest.fixture(scope="module")
def bundle(quantized_bundle: Path) -> Path:
    return quantized_bundle


def test_bundle_contents(bundle: Path, learning_run: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert sorted(p.name for p in bundle.iterdir()) == [MANIFEST, SIGNATURE, MODEL, TWIN]
    run_confidence = json.loads((learning_run / "manifest.json").read_text())["confidence"]
    confidence = manifest["confidence"]
    assert confidence["threshold_of_fmax"] == run_confidence["threshold_of_fmax"]
    assert confidence["golden"]["inputs"] == manifest["golden"]["inputs"]
    assert 0 <= confidence["flagged_gate_seen_families_int8"] <= 1
    assert manifest["bundle_version"] == "1.0.0"
    # the default model: int8 weights, activations quantised per frame, float I/O (LiteRT only)
    assert manifest["io_quantisation"] == {"dtype": "float32", "activations": "per-frame"}
    assert manifest["quantisation"]["activations"] == "per-frame"
    assert "FULLY_CONNECTED v12" in manifest["ops"] and "ADD v1" in manifest["ops"]
    assert manifest["hub_runtimes"] == [LITERT]
    assert manifest["envelope"]["format"] == "cervical-envelope-grid/1"
    assert (
        len(manifest["metrics"]["r2_per_muscle"])
        == len(manifest["metrics"]["r2_per_muscle_int8"])
        == 72
    )
    assert len(manifest["golden"]["inputs"]) == 32
    assert manifest["training"]["dataset"]["sha256"]
    assert manifest["quantisation"]["calibration_rows"] >= 5000
    weights = manifest["quantisation"]["weight_rounding"]
    assert weights["method"].startswith("two int8 terms")
    # 13 x 64 is too small for the converter to quantise; 64 x 64 and 64 x 72 are not
    assert weights["layers"] == [{"int8": False}, {"int8": True}, {"int8": True}]
    run_manifest = json.loads((learning_run / "manifest.json").read_text())
    assert manifest["feature_spec"] == run_manifest["feature_spec"]


def test_int8_model_on_litert_matches_float(bundle: Path, learning_run: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    model = ForceModel((bundle / MODEL).read_bytes(), spec)
    assert model.per_frame_int8 and model.input_quantisation is None
    with np.load(learning_run / "heldout_gate.npz") as gate:
        subjects = gate["part"] == 0  # the held-out subjects' part (the family's is judged apart)
        x, y, y_float = gate["x"][subjects], gate["y"][subjects], gate["y_float"][subjects]
    y_int8 = model.forces(x)
    assert (y_int8 >= 0).all()
    r2_int8, r2_float = r2_per_column(y, y_int8), r2_per_column(y, y_float)
    recorded = manifest["metrics"]["r2_per_muscle_int8"]  # keyed by muscle (sorted in JSON)
    np.testing.assert_allclose(r2_int8, [recorded[m] for m in spec.outputs], atol=1e-9)
    assert np.median(r2_float - r2_int8) < 0.01
    # Batch 1 and batched give the same answers (the interpreter is resized between them).
    np.testing.assert_array_equal(model.forces(x[:1]), y_int8[:1])


def test_verify_accepts_and_rejects(bundle: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    _key, pub = keys
    ok = cervical("bundle", "verify", str(bundle), "--pubkey", str(pub))
    assert ok.returncode == 0, ok.stderr
    assert "golden vectors reproduced on ai-edge-litert 2.3" in ok.stdout

    def broken(name: str, change: object) -> Path:
        copy = tmp_path / name
        shutil.copytree(bundle, copy)
        change(copy)  # type: ignore[operator]
        return copy

    def flip_model_byte(b: Path) -> None:
        data = bytearray((b / MODEL).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (b / MODEL).write_bytes(bytes(data))

    other_key = tmp_path / "other.key"
    other_pub = generate_key_pair(other_key)
    cases = {
        "model": (broken("model", flip_model_byte), pub, "model.tflite: SHA-256 differs"),
        "manifest": (broken("manifest", lambda b: (b / MANIFEST).write_text(
            (b / MANIFEST).read_text().replace('"1.0.0"', '"9.9.9"'))), pub,
            "signature does not match"),
        "wrong key": (bundle, other_pub, "signature does not match"),
        "no signature": (broken("nosig", lambda b: (b / SIGNATURE).unlink()), pub,
                         "manifest.sig: missing"),
        "truncated": (broken("trunc", lambda b: (b / MODEL).write_bytes(
            (b / MODEL).read_bytes()[:1000])), pub, "(truncated?)"),
    }  # fmt: skip
    for case, (path, trusted, message) in cases.items():
        r = cervical("bundle", "verify", str(path), "--pubkey", str(trusted))
        assert r.returncode == 2, case
        assert message in r.stderr, (case, r.stderr)


def _resigned(bundle: Path, key: Path, out: Path, model: bytes | None = None,
              golden_shift_n: float = 0.0, envelope: object = "keep",
              twin: bytes | str | None = "keep",
              edit: Callable[[dict[str, Any]], object] | None = None) -> Path:  # fmt: skip
    """The bundle re-signed by the trusted key with a changed payload (``edit`` changes its
    manifest in place): what a faulty converter or a runtime mismatch would produce, which only
    the hub's model checks can catch."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    for field in ("format", "bundle_version", "created_utc", "signing_key_fingerprint", "files"):
        manifest.pop(field)
    manifest["golden"]["forces_n"] = (np.array(manifest["golden"]["forces_n"])
                                      + golden_shift_n).tolist()  # fmt: skip
    if envelope != "keep":
        manifest["envelope"] = envelope
    if edit is not None:
        edit(manifest)
    payload = model if model is not None else (bundle / MODEL).read_bytes()
    files = {MODEL: payload}
    twin_bytes = (bundle / TWIN).read_bytes() if twin == "keep" else twin
    if isinstance(twin_bytes, bytes):
        files[TWIN] = twin_bytes
    return write_bundle(out, files, manifest, load_private_key(key), "2.0.0")


def test_a_bundle_whose_confidence_twin_is_missing_tampered_or_foreign_is_refused(
    bundle: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    cases: dict[str, tuple[Path, str]] = {}
    cases["missing"] = (
        _resigned(bundle, key, tmp_path / "missing", twin=None),
        "a confidence section but no signed twin.tflite",
    )
    cases["foreign"] = (
        _resigned(
            bundle,
            key,
            tmp_path / "foreign",
            edit=lambda m: m["confidence"].update(force_model_sha256="0" * 64),
        ),
        "made beside another force model",
    )
    cases["golden"] = (
        _resigned(
            bundle,
            key,
            tmp_path / "golden",
            edit=lambda m: m["confidence"]["golden"].update(
                forces_n=(np.array(m["confidence"]["golden"]["forces_n"]) + 5.0).tolist()
            ),
        ),
        "twin.tflite: golden-vector check failed",
    )
    cases["unannounced"] = (
        _resigned(bundle, key, tmp_path / "unannounced", edit=lambda m: m.pop("confidence")),
        "a confidence twin without a confidence section",
    )
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    (tampered / TWIN).write_bytes((tampered / TWIN).read_bytes()[:-8] + b"\0" * 8)
    cases["tampered"] = (tampered, "twin.tflite: SHA-256 differs")
    for name, (candidate, message) in cases.items():
        r = cervical("bundle", "verify", str(candidate), "--pubkey", str(pub))
        assert r.returncode == 2 and message in r.stderr, (name, r.stderr)
    # the hub refuses it the same way, and the running model stays
    slots = ModelSlots(tmp_path / "models", load_public_key(pub))
    slots.install(bundle, PROFILE)
    for name, (candidate, message) in cases.items():
        with pytest.raises(InstallError, match="refused") as refused:
            slots.install(candidate, PROFILE, force=True)
        assert message in str(refused.value), name
        assert slots.active().version == "1.0.0", name
    # the twin travels: packed for transfer and unpacked whole
    unpacked = tmp_path / "unpacked"
    unpack_bundle(pack_bundle(bundle), unpacked, 10**8)
    assert (unpacked / TWIN).read_bytes() == (bundle / TWIN).read_bytes()


def test_hub_rejects_signed_bundles_whose_model_checks_fail(
    bundle: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from ai_edge_litert import schema_py_generated as schema

    key, pub = keys
    golden = _resigned(bundle, key, tmp_path / "golden", golden_shift_n=5.0)
    r = cervical("bundle", "verify", str(golden), "--pubkey", str(pub))
    assert r.returncode == 2 and "golden-vector check failed" in r.stderr, r.stderr
    # The same model with FULLY_CONNECTED declared as v15 (which LiteRT 2.3 lacks).
    model = schema.ModelT.InitFromPackedBuf((bundle / MODEL).read_bytes(), 0)
    for oc in model.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == 9:
            oc.version = 15
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    ops = _resigned(bundle, key, tmp_path / "ops", model=bytes(builder.Output()))
    r = cervical("bundle", "verify", str(ops), "--pubkey", str(pub))
    assert r.returncode == 2
    assert "ai-edge-litert 2.3: FULLY_CONNECTED v15 needs a newer runtime" in r.stderr
    # A manifest that claims the fallback runtime for the per-frame model (its v12 is too new
    # there), or names a runtime nobody measured
    claims = {
        "fallback": ([LITERT, TFLITE_RUNTIME], "tflite-runtime 2.14: FULLY_CONNECTED v12 needs"),
        "unknown": (["onnxruntime 1.23"], "hub_runtimes ['onnxruntime 1.23']: a list from"),
    }
    for name, (runtimes, message) in claims.items():
        claimed = _resigned(bundle, key, tmp_path / name,
                            edit=lambda m, r=runtimes: m.update(hub_runtimes=r))  # fmt: skip
        r = cervical("bundle", "verify", str(claimed), "--pubkey", str(pub))
        assert r.returncode == 2 and message in r.stderr, (name, r.stderr)
    grid = json.loads((bundle / MANIFEST).read_text())["envelope"]
    grid["axial_left_rad"] = np.negative(grid["axial_left_rad"]).tolist()
    envelope = _resigned(bundle, key, tmp_path / "envelope", envelope=grid)
    r = cervical("bundle", "verify", str(envelope), "--pubkey", str(pub))
    assert r.returncode == 2 and "envelope unusable" in r.stderr and "axial_left_rad" in r.stderr


def test_bundle_envelope_is_personal(bundle: Path, keys: tuple[Path, Path]) -> None:
    from edge_runtime.contracts.anthropometrics import Anthropometrics
    from edge_runtime.contracts.bundle import load_public_key
    from edge_runtime.contracts.model_bundle import verify_model_bundle

    checked = verify_model_bundle(bundle, load_public_key(keys[1]), run_golden=False)
    assert checked.envelope is not None
    base = {"sex": "male", "stature_m": 1.76, "head_mass_kg": 4.3, "neck_length_m": 0.1078,
            "shoulder_width_m": 0.4157}  # fmt: skip
    light, clamped = checked.envelope.for_subject(Anthropometrics(**base, body_mass_kg=45.0))
    strong, _ = checked.envelope.for_subject(Anthropometrics(**base, body_mass_kg=85.52))
    assert clamped == []
    rotation = [e.plane_totals_deg()["axial_rotation"] for e in (light, strong)]
    assert rotation[0] < rotation[1] - 2.0  # weaker muscles hold less rotation
    _, clamped = checked.envelope.for_subject(Anthropometrics(**base, body_mass_kg=120.0))
    assert clamped == ["body_mass_kg"]


def test_gate_failure_writes_no_bundle(
    learning_run: Path, keys: tuple[Path, Path], envelope_grid_file: Path, tmp_path: Path
) -> None:
    if not QUANT_PYTHON.is_file():
        pytest.skip(f"{QUANT_PYTHON} absent: run `make venv-quant`")
    out = tmp_path / "never"
    # An impossible tolerance (int8 would have to beat float by 1 in R² on every muscle).
    args = ["-m", "quantization.pipeline", "--run", str(learning_run), "--out", str(out),
            "--key", str(keys[0]), "--tolerance", "-1", "--family-tolerance", "1000",
            "--rmse-tolerance", "100", "--envelope", str(envelope_grid_file)]  # fmt: skip
    r = subprocess.run([str(QUANT_PYTHON), *args], capture_output=True, text=True, timeout=900,
                       check=False, cwd=REPO)  # fmt: skip
    assert r.returncode == 2
    # every muscle whose force varies on the held-out subjects is judged, and fails
    with np.load(learning_run / "heldout_gate.npz") as z:
        fmax = np.array(RunManifest.read(RunLayout(learning_run)).fmax_n)
        varying = int(varying_columns(z["y"][z["part"] == 0], fmax).sum())
    assert varying > 50
    assert "accuracy gate failed" in r.stderr and f"for {varying} muscle(s)" in r.stderr
    assert "(held-out subjects)" in r.stderr and "(held-out family circumduction)" not in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".never*"))
    # the same on the held-out family alone: named as the family's
    args[args.index("--tolerance") + 1] = "1000"
    args[args.index("--family-tolerance") + 1] = "-1"
    r = subprocess.run([str(QUANT_PYTHON), *args], capture_output=True, text=True, timeout=900,
                       check=False, cwd=REPO)  # fmt: skip
    assert r.returncode == 2 and "accuracy gate failed" in r.stderr
    assert "(held-out family circumduction)" in r.stderr and "(held-out subjects)" not in r.stderr
    assert not out.exists()


def test_quantize_refuses_bad_input(
    learning_run: Path, keys: tuple[Path, Path], envelope_grid_file: Path, tmp_path: Path
) -> None:
    env = ("--envelope", str(envelope_grid_file))
    r = cervical("quantize", "--run", str(learning_run), "--out", str(tmp_path / "b"),
                 "--key", str(keys[1]), *env)  # fmt: skip
    assert r.returncode == 2 and "not a PEM private key" in r.stderr
    r = cervical("quantize", "--run", str(tmp_path), "--out", str(tmp_path / "b"),
                 "--key", str(keys[0]), *env)  # fmt: skip
    assert r.returncode == 2 and "is not a training run: no manifest.json" in r.stderr
    r = cervical("quantize", "--run", str(learning_run), "--out", str(learning_run),
                 "--key", str(keys[0]), *env)  # fmt: skip
    assert r.returncode == 2 and "already exists" in r.stderr
    bad = tmp_path / "grid.json"
    grid = json.loads(envelope_grid_file.read_text())
    grid["planar_radius_rad"] = "wide"
    bad.write_text(json.dumps(grid))
    r = cervical("quantize", "--run", str(learning_run), "--out", str(tmp_path / "b"),
                 "--key", str(keys[0]), "--envelope", str(bad))  # fmt: skip
    assert r.returncode == 2 and "planar_radius_rad" in r.stderr
    # the gate asked for a family the run trained on, or for a family that does not exist
    base = ("quantize", "--run", str(learning_run), "--out", str(tmp_path / "b"),
            "--key", str(keys[0]), *env)  # fmt: skip
    r = cervical(*base, "--gate-family", "diagonal")
    assert r.returncode == 2 and "was trained on 'diagonal'" in r.stderr
    assert "--heldout-family diagonal" in r.stderr
    r = cervical(*base, "--gate-family", "cartwheel")
    assert r.returncode == 2 and "motion family 'cartwheel' does not exist" in r.stderr
    r = cervical(*base, "--activations", "int4")
    assert (
        r.returncode == 2 and "--activations 'int4': one of ['per-frame', 'calibrated']" in r.stderr
    )
    assert not (tmp_path / "b").exists()


def test_bench_model_runtime_json(bundle: Path, learning_run: Path) -> None:
    r = cervical("bench", "model-runtime", "--run", str(learning_run), "--repeats", "1",
                 "--batch", "32", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    # the run's files are those of whichever quantisation ran last
    assert figures["int8_activations"] in ("per-frame", "calibrated")
    for name in ("int8", "float32"):
        assert figures[f"{name}_invoke_batch1_us"] > 0
        assert figures[f"{name}_invoke_batched_us"] > 0
    assert figures["int8_bytes"] < figures["float32_bytes"]


def test_a_calibrated_bundle_is_full_integer_and_runs_on_both_runtimes(
    calibrated_bundle: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest = json.loads((calibrated_bundle / MANIFEST).read_text())
    assert manifest["io_quantisation"]["dtype"] == "int8"
    assert manifest["io_quantisation"]["activations"] == "calibrated"
    assert manifest["ops"] == ["RESHAPE v1", "FULLY_CONNECTED v4"]
    assert manifest["hub_runtimes"] == [LITERT, TFLITE_RUNTIME]
    rounding = manifest["quantisation"]["weight_rounding"]
    assert rounding["method"].startswith("adaptive") and len(rounding["layers"]) == 3  # 64 x 64
    for layer in rounding["layers"]:
        assert layer["output_mse_chosen"] <= layer["output_mse_nearest"]
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    model = ForceModel((calibrated_bundle / MODEL).read_bytes(), spec)
    assert model.dtype == np.int8 and not model.per_frame_int8
    ok = cervical("bundle", "verify", str(calibrated_bundle), "--pubkey", str(keys[1]))
    assert ok.returncode == 0, ok.stderr
    # made for the fallback runtime alone: a LiteRT hub says what it has and what is needed
    fallback = _resigned(calibrated_bundle, keys[0], tmp_path / "fallback",
                         edit=lambda m: m.update(hub_runtimes=[TFLITE_RUNTIME]))  # fmt: skip
    r = cervical("bundle", "verify", str(fallback), "--pubkey", str(keys[1]))
    assert r.returncode == 2
    assert "runs on ['tflite-runtime 2.14'], and this machine has ai-edge-litert 2.3" in r.stderr


def test_per_frame_int8_beats_calibrated_int8_on_the_unseen_family(
    bundle: Path, calibrated_bundle: Path, learning_run: Path
) -> None:
    """Both models of one run against its float network on the held-out family's frames: the
    per-frame model's forces stay closer to float (its activations are not held to the range
    the training inputs gave each tensor)."""
    spec = FeatureSpec.from_dict(json.loads((bundle / MANIFEST).read_text())["feature_spec"])
    with np.load(learning_run / "heldout_gate.npz") as gate:
        family = gate["part"] == 1
        x, y_float = gate["x"][family], gate["y_float"][family]
    errors = {}
    for name, b in (("per-frame", bundle), ("calibrated", calibrated_bundle)):
        y = ForceModel((b / MODEL).read_bytes(), spec).forces(x)
        errors[name] = float(np.sqrt(np.mean((y - y_float) ** 2)))
    assert errors["per-frame"] < errors["calibrated"], errors


def test_simulated_int8_matches_the_converted_model(
    calibrated_bundle: Path, learning_run: Path
) -> None:
    """The quantisation-aware fine-tuning's simulation of int8 (learning.qat), on the network
    with the weights the pipeline rounded (quantization.rounding), against the real full-integer
    model onnx2tf made and LiteRT runs: the same grid, so they differ by rounding only."""
    import torch

    from host_training.learning.qat import activation_ranges, int8_forward
    from host_training.learning.run import load_run
    from quantization.rounding import read_mlp, round_adaptively

    run = load_run(learning_run)
    calib = np.load(learning_run / "calibration.npy")
    rounded, _ = round_adaptively(read_mlp(learning_run / "model.onnx"), calib)
    linears = [m for m in run.network if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for linear, layer in zip(linears, rounded, strict=True):
            linear.weight.copy_(torch.from_numpy(layer.weight))
    model = ForceModel((calibrated_bundle / MODEL).read_bytes(), run.spec)
    assert model.input_quantisation is not None and model.output_quantisation is not None
    x = run.spec.model_inputs(np.load(learning_run / "heldout_gate.npz")["x"][:2000])
    with torch.inference_mode():
        simulated = int8_forward(
            run.network, torch.from_numpy(x), activation_ranges(run.network, calib)
        )
        plain = run.network(torch.from_numpy(x)).numpy()
    real = model.output_quantisation.dequantise(
        model.invoke_standardised(model.input_quantisation.quantise(x))
    )
    step = model.output_quantisation.scale
    sim_error = np.abs(simulated.numpy() - real) / step
    float_error = np.abs(plain - real) / step
    assert np.median(sim_error) <= 1.0 and np.quantile(sim_error, 0.99) <= 4.0
    assert sim_error.mean() < float_error.mean()  # closer to the real int8 than the float net is


def test_the_per_frame_model_is_simulated_exactly_enough(bundle: Path, learning_run: Path) -> None:
    """``quantization.two_term``'s simulation of the per-frame model against the one LiteRT
    runs: far closer to it than the float network is, and the int8 weights LiteRT holds are
    the two terms' integers."""
    from ai_edge_litert.interpreter import Interpreter

    from quantization.rounding import forward, nearest_integers, read_mlp
    from quantization.two_term import simulate, split

    spec = FeatureSpec.from_dict(json.loads((bundle / MANIFEST).read_text())["feature_spec"])
    layers = read_mlp(learning_run / "model.onnx")
    two_term = split(layers)
    x = spec.model_inputs(np.load(learning_run / "heldout_gate.npz")["x"][:2000])
    real = ForceModel((bundle / MODEL).read_bytes(), spec).invoke_standardised(x)
    sim_rms = np.sqrt(np.mean((simulate(two_term, x) - real) ** 2))
    float_rms = np.sqrt(np.mean((forward(layers, x) - real) ** 2))
    assert sim_rms < 0.25 * float_rms, (sim_rms, float_rms)
    interpreter = Interpreter(model_content=(bundle / MODEL).read_bytes())
    interpreter.allocate_tensors()
    held = sorted(
        interpreter.get_tensor(d["index"]).astype(np.int64).sum()
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["shape"]) == 2
    )
    expected = sorted(
        nearest_integers(w).astype(np.int64).sum()
        for layer in two_term
        if layer.rest is not None
        for w in (layer.main, layer.rest)
    )
    assert held == expected


def test_assess_marker_session_end_to_end(
    bundle: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A TRC session with right rotation held to 40% of the envelope, through `cervical assess`."""
    import pyarrow.parquet as pq

    from edge_runtime.contracts.anthropometrics import write_profile
    from edge_runtime.contracts.bundle import load_public_key
    from edge_runtime.contracts.model_bundle import verify_model_bundle
    from edge_runtime.contracts.rom_assessment import SECTORS
    from edge_runtime.synthetic import protocol_angles, sector_limit_rad
    from host_training.model.markers import write_trc
    from host_training.model.personalise import reference_anthropometrics
    from tests.host_training.model.test_markers import MAP_TOML, synthetic_markers

    profile = reference_anthropometrics()
    grid = verify_model_bundle(bundle, load_public_key(keys[1]), run_golden=False).envelope
    assert grid is not None
    envelope, _ = grid.for_subject(profile)
    reach = {s: 0.97 for s in SECTORS} | {"right_rotation": 0.4}
    t, angles, _, _ = protocol_angles(
        {s: reach[s] * sector_limit_rad(envelope, s) for s in SECTORS}
    )
    markers = synthetic_markers(t, angles)
    markers["HB"][1500:1510] = np.nan  # a 0.1 s marker gap, filled
    write_trc(tmp_path / "session.trc", t, markers)
    (tmp_path / "map.toml").write_text(MAP_TOML)
    write_profile(profile, tmp_path / "p.toml")
    args = ["assess", "--markers", str(tmp_path / "session.trc"), "--markers-map",
            str(tmp_path / "map.toml"), "--bundle", str(bundle), "--pubkey", str(keys[1]),
            "--profile", str(tmp_path / "p.toml"), "--out"]  # fmt: skip
    r = cervical(*args, str(tmp_path / "report"))
    assert r.returncode == 0, r.stderr
    assert "flagged: right_rotation" in r.stdout and "Test complete" in r.stdout
    report = tmp_path / "report"
    assert json.loads((report / "guided_test.json").read_text())["outcome"] == "complete"
    assessment = json.loads((report / "assessment.json").read_text())
    assert assessment["flagged"] == ["right_rotation"]
    rot = next(s for s in assessment["sectors"] if s["sector"] == "right_rotation")
    assert rot["deficit_pct"] == pytest.approx(60.0, abs=1.0)
    table = pq.read_table(report / "forces.parquet")
    assert table.num_rows == len(t) and sum(c.endswith("_n") for c in table.column_names) == 72
    forces = np.stack([table[c].to_numpy() for c in table.column_names if c.endswith("_n")], 1)
    assert np.isfinite(forces).all() and forces.min() >= 0
    gaps = json.loads((report / "markers.json").read_text())
    assert next(g for g in gaps["markers"] if g["marker"] == "HB")["filled"] == 1
    for png in ("forces.png", "assessment.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG"
    # free-living motion of the same wearer (smooth motion on every axis, no test): no deficit
    rng = np.random.default_rng(3)
    free_t = np.arange(0, 40, 0.01)
    free = sum(
        np.radians(rng.uniform(5, 25, 3))
        * np.sin(2 * np.pi * rng.uniform(0.05, 0.6, 3) * free_t[:, None] + rng.uniform(0, 6, 3))
        for _ in range(4)
    )
    write_trc(tmp_path / "free.trc", free_t, synthetic_markers(free_t, free))
    free_args = [str(tmp_path / "free.trc") if a.endswith("session.trc") else a for a in args]
    r = cervical(*free_args, str(tmp_path / "free"))
    assert r.returncode == 0, r.stderr
    assert "flagged: none" in r.stdout and "Test incomplete" in r.stdout
    assert not (tmp_path / "free" / "assessment.json").exists()
    assert json.loads((tmp_path / "free" / "guided_test.json").read_text())["missing"]
    assert "daily monitoring" in r.stdout and "habitual range p95" in r.stdout
    figures = json.loads((tmp_path / "free" / "monitoring.json").read_text())["figures"]
    assert figures["wear_min"] == pytest.approx(40 / 60, abs=0.01)  # 40 s, every frame a posture
    assert any(v["p95"] for v in figures["habitual_range_deg"].values())
    assert all(0 < v < 100 for v in figures["load_mean_capacity_pct"].values())
    # nothing is overwritten, and an untrusted key stops everything
    r = cervical(*args, str(report))
    assert r.returncode == 2 and "already exists" in r.stderr
    other = generate_key_pair(tmp_path / "other.key")
    bad = [a if a != str(keys[1]) else str(other) for a in args]
    r = cervical(*bad, str(tmp_path / "report2"))
    assert r.returncode == 2 and "signature" in r.stderr and not (tmp_path / "report2").exists()
