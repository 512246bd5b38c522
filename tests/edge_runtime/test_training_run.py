"""The training run's layout and manifest: one definition read by training, evaluation,
quantisation and the demo; a manifest of another shape is refused naming what is wrong."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.contracts.training_run import RUN_FORMAT, RunError, RunLayout, RunManifest
from tests.edge_runtime.test_feature_spec import make_spec


def _document() -> dict[str, Any]:
    spec = replace(make_spec(2), outputs=("a", "b"))
    return {
        "format": RUN_FORMAT,
        "feature_spec": spec.to_dict(),
        "muscles": [
            {"name": "a", "fmax_n": 100.0, "groups": ["flexion"]},
            {"name": "b", "fmax_n": 200.0, "groups": []},
        ],
    }


def test_the_layout_names_every_file_once(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    names = [layout.manifest, layout.metrics, layout.weights, layout.onnx, layout.calibration,
             layout.gate, layout.tflite_int8, layout.tflite_float32]  # fmt: skip
    assert len({p.name for p in names}) == len(names)
    with pytest.raises(RunError, match="not a training run"):
        layout.require()
    layout.manifest.write_text(json.dumps(_document()))
    with pytest.raises(RunError, match=r"missing \['model.onnx'\]"):
        layout.require(layout.onnx)
    manifest = RunManifest.read(layout)
    assert manifest.fmax_n == (100.0, 200.0) and manifest.muscles[0].groups == ("flexion",)


def test_the_dataset_and_settings_are_read_through_the_contract() -> None:
    doc = _document()
    doc["config"] = {"seed": 3}
    doc["dataset"] = {"sha256": "ab" * 32, "path": "/data/d", "config": {"n_subjects": 60}}
    manifest = RunManifest.from_dict(doc)
    assert manifest.train_config == {"seed": 3} and manifest.dataset_path == "/data/d"
    assert manifest.dataset_sha256 == "ab" * 32 and manifest.dataset_config["n_subjects"] == 60
    assert [m.to_dict() for m in manifest.muscles] == doc["muscles"]
    doc["dataset"] = {"sha256": 5}
    broken = RunManifest.from_dict(doc)
    with pytest.raises(RunError, match=r"dataset\.sha256 is missing or not a string"):
        _ = broken.dataset_sha256
    with pytest.raises(RunError, match=r"dataset\.config is not an object"):
        _ = broken.dataset_config
    del doc["config"]
    with pytest.raises(RunError, match="config is missing"):
        _ = RunManifest.from_dict(doc).train_config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="cervical-run/0"), "format"),
        (lambda d: d.update(muscles="a"), "muscles must list"),
        (lambda d: d["muscles"].reverse(), r"muscles\[0\] is not 'a'"),
        (lambda d: d["muscles"][1].update(fmax_n=float("nan")), r"muscles\[1\]"),
        (lambda d: d["muscles"][1].update(fmax_n=True), r"muscles\[1\]"),
        (lambda d: d.update(feature_spec=[]), "feature_spec unusable"),
    ],
)
def test_a_manifest_of_another_shape_is_refused(change: object, message: str) -> None:
    doc = _document()
    change(doc)  # type: ignore[operator]
    with pytest.raises(RunError, match=message):
        RunManifest.from_dict(doc)


def test_a_bundle_manifest_reads_its_parts_and_refuses_inconsistent_muscles(
    tmp_path: Path,
) -> None:
    from edge_runtime.contracts.bundle import BundleError
    from edge_runtime.contracts.model_bundle import BundleManifest

    doc = _document() | {"bundle_version": "1.2.3", "metrics": {"passed": True}, "training": {}}
    manifest = BundleManifest.from_dict(doc, tmp_path / "manifest.json")
    assert manifest.bundle_version == "1.2.3" and manifest.gate["passed"] is True
    assert manifest.muscle_groups() == {"flexion": [0]} and manifest.envelope is None
    doc["muscles"][0]["name"] = "b"
    with pytest.raises(BundleError, match=r"manifest.json: muscles\[0\] is not 'a'"):
        BundleManifest.from_dict(doc, tmp_path / "manifest.json")
    doc["muscles"][0]["name"] = "a"
    doc["muscles"][0]["groups"] = ["$\\foo$"]
    with pytest.raises(BundleError, match="names a hub record cannot carry"):
        BundleManifest.from_dict(doc, tmp_path / "manifest.json")
    with pytest.raises(BundleError, match="feature spec unusable"):
        BundleManifest.from_dict({"feature_spec": "x"}, tmp_path / "manifest.json")
