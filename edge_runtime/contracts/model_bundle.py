"""What a hub checks before it installs a model bundle, in order, stopping at the first failure:

1. signature and file hashes (``verify_bundle``): nothing in the manifest is believed before this;
2. the feature spec parses and fits this software (version, features, transforms);
3. op set: every op and version of ``model.tflite`` exists in every hub runtime;
4. golden vectors: the model, run here, reproduces the signed input -> force pairs within their
   tolerance (this catches a runtime whose int8 kernels differ from the one that signed it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_runtime.contracts.bundle import MANIFEST, MODEL, BundleError, verify_bundle
from edge_runtime.contracts.envelope import EnvelopeError, EnvelopeGrid
from edge_runtime.contracts.feature_spec import FeatureSpec, FeatureSpecError
from edge_runtime.contracts.force_model import ForceModel, check_golden_vectors, runtime_name
from edge_runtime.contracts.record_fields import NAME_PATTERN
from edge_runtime.contracts.tflite_ops import TfliteModelError, check_hub_compatible
from edge_runtime.contracts.training_run import RUN_FORMAT, MuscleEntry, RunError, RunManifest


@dataclass(frozen=True)
class BundleManifest:
    """The signed manifest of a model bundle, its parts validated (``document`` is all of it):
    the hub, the gateway, quantisation and the demo read it through here."""

    bundle_version: str
    spec: FeatureSpec
    muscles: tuple[MuscleEntry, ...]  # () for bundles made before muscles were listed
    envelope: EnvelopeGrid | None  # None only for bundles made before envelopes existed
    gate: Mapping[str, Any]  # the int8 accuracy gate's result ("metrics")
    training: Mapping[str, Any]  # the training run it was made from (provenance)
    document: Mapping[str, Any]

    def muscle_groups(self) -> dict[str, list[int]]:
        """Group -> output indices (a muscle may belong to several groups)."""
        index = {name: j for j, name in enumerate(self.spec.outputs)}
        groups: dict[str, list[int]] = {}
        for m in self.muscles:
            for g in m.groups:
                groups.setdefault(g, []).append(index[m.name])
        return dict(sorted(groups.items()))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: Path) -> BundleManifest:
        try:
            spec = FeatureSpec.from_dict(doc["feature_spec"])
        except (KeyError, TypeError, ValueError, FeatureSpecError) as exc:
            raise BundleError(where, f"feature spec unusable: {exc}") from None
        envelope = None
        if doc.get("envelope") is not None:
            try:
                envelope = EnvelopeGrid.from_dict(doc["envelope"])
            except (EnvelopeError, TypeError, KeyError, ValueError) as exc:
                raise BundleError(where, f"envelope unusable: {exc}") from None
        muscles: tuple[MuscleEntry, ...] = ()
        if "muscles" in doc:
            try:
                muscles = RunManifest.from_dict(
                    {"format": RUN_FORMAT, "feature_spec": doc["feature_spec"],
                     "muscles": doc["muscles"]}, str(where),
                ).muscles  # fmt: skip
            except RunError as exc:
                raise BundleError(where, str(exc).removeprefix(f"{where}: ")) from None
        names = [*spec.outputs, *(g for m in muscles for g in m.groups)]
        odd = [n for n in names if not NAME_PATTERN.fullmatch(n)]
        if odd:  # the hub's records must carry them (record_payloads), so they are checked here
            raise BundleError(where, f"muscle or group names a hub record cannot carry: {odd[:3]}")
        version = doc.get("bundle_version")
        gate, training = doc.get("metrics", {}), doc.get("training", {})
        if (
            not isinstance(version, str)
            or not isinstance(gate, dict)
            or not isinstance(training, dict)
        ):
            raise BundleError(where, "bundle_version, metrics or training of the wrong type")
        return cls(version, spec, muscles, envelope, gate, training, doc)


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    manifest: BundleManifest
    model: bytes
    ops: list[str]
    golden_max_diff_n: float | None  # None when golden vectors were not run here
    runtime: str | None

    @property
    def spec(self) -> FeatureSpec:
        return self.manifest.spec

    @property
    def envelope(self) -> EnvelopeGrid | None:
        return self.manifest.envelope

    @property
    def version(self) -> str:
        return self.manifest.bundle_version


def verify_model_bundle(
    bundle: Path, public_key: Ed25519PublicKey, run_golden: bool = True
) -> VerifiedBundle:
    """Every install check; raises BundleError naming the file and the reason."""
    manifest = BundleManifest.from_dict(verify_bundle(bundle, public_key), bundle / MANIFEST)
    model = (bundle / MODEL).read_bytes()
    try:
        ops = check_hub_compatible(model)
    except TfliteModelError as exc:
        raise BundleError(bundle / MODEL, str(exc)) from exc
    golden_diff, runtime = None, None
    if run_golden:
        if "golden" not in manifest.document:
            raise BundleError(bundle / MANIFEST, "has no golden vectors")
        try:
            golden = manifest.document["golden"]
            golden_diff = check_golden_vectors(ForceModel(model, manifest.spec), golden)
        except (FeatureSpecError, TypeError, KeyError, ValueError) as exc:
            raise BundleError(bundle / MODEL, f"golden-vector check failed: {exc}") from exc
        runtime = runtime_name()
    return VerifiedBundle(bundle, manifest, model, ops, golden_diff, runtime)
