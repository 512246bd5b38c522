"""A training run directory (``cervical train`` writes it): its files and the core of its
manifest, one definition for training (the writer), evaluation, quantisation and the demo.

::

    runs/r1/
      manifest.json        RunManifest: format, feature spec, muscles (Fmax, groups), the
                           architecture, configuration, dataset fingerprint, splits, history
      metrics.json         per-muscle metrics on held-out subjects and the held-out family
      weights.pt           float weights (torch), with the feature order they were trained on
      model.onnx           the float network for the conversion toolchain
      calibration.npy      >= MIN_CALIBRATION_ROWS standardised training inputs (int8 ranges)
      heldout_gate.npz     held-out frames for the int8 gate (part 0 subjects, 1 family)
      tflite/              model_int8.tflite (the int8 model it gated) and model_float32.tflite,
                           written by quantisation
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.common.files import read_text
from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.feature_spec import FeatureSpec, FeatureSpecError

RUN_FORMAT = "cervical-run/1"
# int8 calibration needs this many training inputs to see the tails of every feature
MIN_CALIBRATION_ROWS = 5000
MAX_MANIFEST_BYTES = 256 * 1024**2
MAX_FMAX_N = 1e5  # far above any neck muscle's maximum isometric force (a few hundred N)


class RunError(ContractError, ValueError):
    """A run directory or manifest that is not what ``cervical train`` writes (names which)."""


@dataclass(frozen=True)
class RunLayout:
    """Where each file of a run lies."""

    path: Path

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def weights(self) -> Path:
        return self.path / "weights.pt"

    @property
    def onnx(self) -> Path:
        return self.path / "model.onnx"

    @property
    def twin_weights(self) -> Path:
        """The confidence twin: a second network whose disagreement flags untrusted frames."""
        return self.path / "twin_weights.pt"

    @property
    def twin_onnx(self) -> Path:
        return self.path / "twin.onnx"

    @property
    def calibration(self) -> Path:
        return self.path / "calibration.npy"

    @property
    def gate(self) -> Path:
        return self.path / "heldout_gate.npz"

    @property
    def tflite_dir(self) -> Path:
        return self.path / "tflite"

    @property
    def tflite_int8(self) -> Path:
        return self.tflite_dir / "model_int8.tflite"

    @property
    def tflite_float32(self) -> Path:
        return self.tflite_dir / "model_float32.tflite"

    def require(self, *files: Path) -> None:
        """RunError naming what is missing (a run made by an older version, or interrupted)."""
        if not self.manifest.is_file():
            raise RunError(
                f"{self.path} is not a training run: no {self.manifest.name} "
                "(make one with `cervical train`)"
            )
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise RunError(f"{self.path} is not a complete training run: missing {missing}")


@dataclass(frozen=True)
class MuscleEntry:
    name: str
    fmax_n: float
    groups: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fmax_n": self.fmax_n, "groups": list(self.groups)}


# Every motion family a dataset can hold (host_training.simulation.motions draws them): a
# run's held-out family and the families a gate or benchmark asks for are names from this list.
MOTION_FAMILIES = ("single_plane", "diagonal", "circumduction", "hold", "random_smooth",
                   "point_to_point", "oscillation", "sway_hold", "multi_axis", "box")  # fmt: skip


@dataclass(frozen=True)
class RunManifest:
    """The manifest's parts every reader relies on, validated; ``document`` is all of it."""

    spec: FeatureSpec
    muscles: tuple[MuscleEntry, ...]
    document: Mapping[str, Any]

    @property
    def fmax_n(self) -> tuple[float, ...]:
        return tuple(m.fmax_n for m in self.muscles)

    @property
    def train_config(self) -> Mapping[str, Any]:
        """The training settings the run was made with (``TrainConfig`` as a dict)."""
        return self._object("config")

    @property
    def dataset_sha256(self) -> str:
        """The fingerprint of the dataset the run was trained on."""
        return self._text(self._object("dataset"), "sha256", "dataset")

    @property
    def dataset_path(self) -> str:
        """Where that dataset was when the run was trained."""
        return self._text(self._object("dataset"), "path", "dataset")

    @property
    def dataset_config(self) -> Mapping[str, Any]:
        """What the dataset simulated (subjects, motion set, anchors, ...)."""
        config = self._object("dataset").get("config")
        if not isinstance(config, Mapping):
            raise RunError("run manifest: dataset.config is not an object")
        return config

    @property
    def confidence(self) -> Mapping[str, Any] | None:
        """The confidence twin's section (architecture, threshold as a share of Fmax, the
        validation flag rate it was chosen for); None for a run without a twin."""
        section = self.document.get("confidence")
        if section is None:
            return None
        threshold = section.get("threshold_of_fmax") if isinstance(section, Mapping) else None
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not (0 <= threshold < 10)
        ):
            raise RunError("run manifest: confidence.threshold_of_fmax is not a share of Fmax")
        return section

    def split_subjects(self, split: str) -> tuple[int, ...]:
        """The subject ids of one split: ``train``, ``val`` or ``test``."""
        ids = self._object("splits").get(split)
        if (
            split not in ("train", "val", "test")
            or not isinstance(ids, list)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            raise RunError(f"run manifest: splits.{split} is not a list of subject ids")
        return tuple(ids)

    def _object(self, key: str) -> Mapping[str, Any]:
        value = self.document.get(key)
        if not isinstance(value, Mapping):
            raise RunError(f"run manifest: {key} is missing or not an object")
        return value

    @staticmethod
    def _text(section: Mapping[str, Any], key: str, where: str) -> str:
        value = section.get(key)
        if not isinstance(value, str):
            raise RunError(f"run manifest: {where}.{key} is missing or not a string")
        return value

    @property
    def heldout_family(self) -> str | None:
        """The motion family the run never trained on (None in a manifest without splits)."""
        splits = self.document.get("splits")
        family = splits.get("heldout_family") if isinstance(splits, Mapping) else None
        return family if isinstance(family, str) else None

    @classmethod
    def read(cls, layout: RunLayout) -> RunManifest:
        layout.require()
        path = layout.manifest
        try:
            doc = json.loads(read_text(path, RunError, MAX_MANIFEST_BYTES))
        except RecursionError:
            raise RunError(f"{path}: not a run manifest (nested too deeply)") from None
        except ValueError as exc:
            if isinstance(exc, RunError):
                raise
            raise RunError(f"{path}: not JSON ({exc})") from None
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, doc: object, where: str = "run manifest") -> RunManifest:
        if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise RunError(f"{where}: format {found!r}, expected {RUN_FORMAT!r}")
        try:
            spec = FeatureSpec.from_dict(doc["feature_spec"])
        except (KeyError, TypeError, ValueError, FeatureSpecError) as exc:
            raise RunError(f"{where}: feature_spec unusable ({exc})") from None
        muscles = doc.get("muscles")
        if not isinstance(muscles, list) or len(muscles) != len(spec.outputs):
            raise RunError(f"{where}: muscles must list the {len(spec.outputs)} outputs")
        entries = []
        for i, (m, name) in enumerate(zip(muscles, spec.outputs, strict=True)):
            ok = isinstance(m, dict) and m.get("name") == name
            fmax = m.get("fmax_n") if ok else None
            groups = m.get("groups", []) if ok else None
            if (not ok or isinstance(fmax, bool) or not isinstance(fmax, int | float)
                    or not 0 < fmax < MAX_FMAX_N or not isinstance(groups, list)
                    or not all(isinstance(g, str) for g in groups)):  # fmt: skip
                raise RunError(f"{where}: muscles[{i}] is not {name!r} with its fmax_n and groups")
            entries.append(MuscleEntry(name, float(fmax), tuple(groups)))
        return cls(spec, tuple(entries), doc)
