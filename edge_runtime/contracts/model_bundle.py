"""What a hub checks before it installs a model bundle, in order, stopping at the first failure:

1. signature and file hashes (``verify_bundle``): nothing in the manifest is believed before this;
2. the feature spec parses and fits this software (version, features, transforms);
3. op set: every op and version of ``model.tflite`` exists in every hub runtime the manifest
   lists (``hub_runtimes``; a model that quantises its activations per frame needs LiteRT), and
   this hub's own runtime is one of them;
4. golden vectors: the model, run here, reproduces the signed input -> force pairs within their
   tolerance (this catches a runtime whose int8 kernels differ from the one that signed it);
5. the confidence twin, where the manifest has a ``confidence`` section: ``twin.tflite`` is
   signed, made for this very ``model.tflite`` (its SHA-256), passes the same op-set check and
   reproduces its own golden vectors on the force model's golden inputs. A twin without the
   section, or a section without the twin, is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_runtime.contracts.bundle import MANIFEST, MODEL, TWIN, BundleError, verify_bundle
from edge_runtime.contracts.envelope import EnvelopeError, EnvelopeGrid
from edge_runtime.contracts.feature_spec import FeatureSpec, FeatureSpecError
from edge_runtime.contracts.force_model import (
    ForceModel,
    check_golden_vectors,
    installed_runtime,
    runtime_name,
)
from edge_runtime.contracts.record_fields import NAME_PATTERN
from edge_runtime.contracts.tflite_ops import HUB_RUNTIMES, TfliteModelError, check_hub_compatible
from edge_runtime.contracts.training_run import RUN_FORMAT, MuscleEntry, RunError, RunManifest


@dataclass(frozen=True)
class BundleConfidence:
    """The confidence twin's section: a frame is flagged when the largest |force - twin force|
    over the muscles exceeds ``threshold_of_fmax`` of that muscle's Fmax."""

    threshold_of_fmax: float
    flag_rate: float  # of the validation frames, where the threshold was chosen
    force_model_sha256: str  # the model.tflite the twin was made beside
    golden: Mapping[str, Any]  # the twin's outputs on the force model's golden inputs

    @classmethod
    def from_dict(cls, doc: object, where: Path) -> BundleConfidence:
        if not isinstance(doc, Mapping):
            raise BundleError(where, "confidence is not an object")
        threshold, rate = doc.get("threshold_of_fmax"), doc.get("flag_rate")
        sha, golden = doc.get("force_model_sha256"), doc.get("golden")
        numbers_ok = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (threshold, rate)
        )
        if not numbers_ok or not 0 < float(threshold) < 10 or not 0 < float(rate) < 1:  # type: ignore[arg-type]
            raise BundleError(where, f"confidence threshold {threshold!r} / flag rate {rate!r}")
        if not isinstance(sha, str) or len(sha) != 64 or not isinstance(golden, Mapping):
            raise BundleError(where, "confidence names no force model SHA-256 or golden vectors")
        return cls(float(threshold), float(rate), sha, golden)  # type: ignore[arg-type]


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
    confidence: BundleConfidence | None = None  # None: a bundle without a confidence twin
    # the runtimes its models run on (bundles made before the list: every one, as checked then)
    hub_runtimes: tuple[str, ...] = HUB_RUNTIMES

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
        confidence = None
        if doc.get("confidence") is not None:
            confidence = BundleConfidence.from_dict(doc["confidence"], where)
            if not muscles:  # its threshold is a share of each muscle's Fmax
                raise BundleError(where, "a confidence section but no muscles with their Fmax")
        runtimes = doc.get("hub_runtimes", list(HUB_RUNTIMES))
        if (
            not isinstance(runtimes, list)
            or not runtimes
            or any(r not in HUB_RUNTIMES for r in runtimes)
        ):
            raise BundleError(where, f"hub_runtimes {runtimes!r}: a list from {list(HUB_RUNTIMES)}")
        return cls(version, spec, muscles, envelope, gate, training, doc, confidence,
                   tuple(runtimes))  # fmt: skip


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    manifest: BundleManifest
    model: bytes
    ops: list[str]
    golden_max_diff_n: float | None  # None when golden vectors were not run here
    runtime: str | None
    twin: bytes | None = None  # the confidence twin (manifest.confidence says how to use it)

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
        ops = check_hub_compatible(model, manifest.hub_runtimes)
    except TfliteModelError as exc:
        raise BundleError(bundle / MODEL, str(exc)) from exc
    golden_diff, runtime = None, None
    if run_golden:
        if installed_runtime() not in manifest.hub_runtimes:
            raise BundleError(
                bundle / MODEL,
                f"runs on {list(manifest.hub_runtimes)}, and this machine has "
                f"{installed_runtime()}: install one of those (ai-edge-litert: the 'edge' "
                "extra)",
            )
        if "golden" not in manifest.document:
            raise BundleError(bundle / MANIFEST, "has no golden vectors")
        try:
            golden = manifest.document["golden"]
            golden_diff = check_golden_vectors(ForceModel(model, manifest.spec), golden)
        except (FeatureSpecError, TypeError, KeyError, ValueError) as exc:
            raise BundleError(bundle / MODEL, f"golden-vector check failed: {exc}") from exc
        runtime = runtime_name()
    twin = _verified_twin(bundle, manifest, model, run_golden)
    return VerifiedBundle(bundle, manifest, model, ops, golden_diff, runtime, twin)


def _verified_twin(
    bundle: Path, manifest: BundleManifest, model: bytes, run_golden: bool
) -> bytes | None:
    """Step 5 (module docstring): the twin's bytes, or None for a bundle without one."""
    listed = TWIN in manifest.document.get("files", {})
    confidence = manifest.confidence
    if confidence is None:
        if listed:
            raise BundleError(bundle / TWIN, "a confidence twin without a confidence section")
        return None
    if not listed:
        raise BundleError(bundle / MANIFEST, f"a confidence section but no signed {TWIN}")
    if confidence.force_model_sha256 != hashlib.sha256(model).hexdigest():
        raise BundleError(bundle / TWIN, f"made beside another force model than this {MODEL}")
    twin = (bundle / TWIN).read_bytes()
    try:
        check_hub_compatible(twin, manifest.hub_runtimes)
    except TfliteModelError as exc:
        raise BundleError(bundle / TWIN, str(exc)) from exc
    if run_golden:
        inputs = manifest.document.get("golden", {}).get("inputs")
        if confidence.golden.get("inputs") != inputs:
            raise BundleError(bundle / TWIN, "golden inputs differ from the force model's")
        try:
            check_golden_vectors(ForceModel(twin, manifest.spec), confidence.golden)
        except (FeatureSpecError, TypeError, KeyError, ValueError) as exc:
            raise BundleError(bundle / TWIN, f"golden-vector check failed: {exc}") from exc
    return twin
