"""What a hub checks before it installs a model bundle, in order, stopping at the first failure:

1. signature and file hashes (``verify_bundle``): nothing in the manifest is believed before this;
2. the feature spec parses and fits this software (version, features, transforms);
3. op set: every op and version of ``model.tflite`` exists in every hub runtime;
4. golden vectors: the model, run here, reproduces the signed input -> force pairs within their
   tolerance (this catches a runtime whose int8 kernels differ from the one that signed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_runtime.contracts.bundle import MANIFEST, MODEL, BundleError, verify_bundle
from edge_runtime.contracts.envelope import EnvelopeError, EnvelopeGrid
from edge_runtime.contracts.feature_spec import FeatureSpec, FeatureSpecError
from edge_runtime.contracts.force_model import ForceModel, check_golden_vectors, runtime_name
from edge_runtime.contracts.tflite_ops import TfliteModelError, check_hub_compatible


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    manifest: dict[str, Any]
    spec: FeatureSpec
    model: bytes
    ops: list[str]
    golden_max_diff_n: float | None  # None when golden vectors were not run here
    runtime: str | None
    envelope: EnvelopeGrid | None  # None only for bundles made before envelopes existed


def verify_model_bundle(
    bundle: Path, public_key: Ed25519PublicKey, run_golden: bool = True
) -> VerifiedBundle:
    """Every install check; raises BundleError naming the file and the reason."""
    manifest = verify_bundle(bundle, public_key)
    try:
        spec = FeatureSpec.from_dict(manifest["feature_spec"])
    except (KeyError, FeatureSpecError) as exc:
        raise BundleError(bundle / MANIFEST, f"feature spec unusable: {exc}") from exc
    envelope = None
    if manifest.get("envelope") is not None:
        try:
            envelope = EnvelopeGrid.from_dict(manifest["envelope"])
        except EnvelopeError as exc:
            raise BundleError(bundle / MANIFEST, f"envelope unusable: {exc}") from exc
    model = (bundle / MODEL).read_bytes()
    try:
        ops = check_hub_compatible(model)
    except TfliteModelError as exc:
        raise BundleError(bundle / MODEL, str(exc)) from exc
    golden_diff, runtime = None, None
    if run_golden:
        if "golden" not in manifest:
            raise BundleError(bundle / MANIFEST, "has no golden vectors")
        try:
            golden_diff = check_golden_vectors(ForceModel(model, spec), manifest["golden"])
        except FeatureSpecError as exc:
            raise BundleError(bundle / MODEL, f"golden-vector check failed: {exc}") from exc
        runtime = runtime_name()
    return VerifiedBundle(bundle, manifest, spec, model, ops, golden_diff, runtime, envelope)
