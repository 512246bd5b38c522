"""Model installs on the hub: two slots, an atomic switch, a self-test and automatic rollback.

Layout under the models directory::

    slot-a/  slot-b/       two bundle copies (manifest.json, manifest.sig, model.tflite)
    current -> slot-a      symbolic link, replaced atomically (rename) on every switch

An install (1) verifies the offered bundle completely (signature, hashes, feature spec, op set,
golden vectors on this hub's runtime) and refuses a version that is not newer than the one
running unless forced; (2) copies it into the idle slot, fsyncs it and verifies the copy again;
(3) switches ``current`` to it; (4) self-tests the verified copy for what the daemon needs
(the envelope for this wearer, and a forward pass of plausible neck motion giving finite,
non-negative forces, and finite ones from the confidence twin where there is one). A failed
self-test switches ``current`` back, so the hub never runs an unverified model and never ends
up without the one it had.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_runtime.contracts.anthropometrics import Anthropometrics
from edge_runtime.contracts.bundle import (
    BundleError,
    bundle_files,
    parse_bundle_version,
)
from edge_runtime.contracts.feature_spec import feature_matrix
from edge_runtime.contracts.model_bundle import VerifiedBundle, verify_model_bundle
from edge_runtime.errors import HubError
from edge_runtime.hub.forces import ForceEstimator

log = logging.getLogger(__name__)
SLOTS = ("slot-a", "slot-b")
CURRENT = "current"


class InstallError(HubError):
    """A bundle was not installed (the running model is unchanged); names why."""


def parse_version(version: object) -> tuple[int, ...]:
    try:
        return parse_bundle_version(version)
    except ValueError as exc:
        raise InstallError(str(exc)) from exc


def self_test(bundle: VerifiedBundle, profile: Anthropometrics) -> None:
    """What the daemon needs from a bundle, run once: raises InstallError naming the failure."""
    if bundle.envelope is None:
        raise InstallError("self-test: the bundle carries no motion envelope")
    envelope, _ = bundle.envelope.for_subject(profile)
    if not np.isfinite(envelope.planar_radius_rad).all():
        raise InstallError("self-test: the envelope for this wearer is not finite")
    t = np.linspace(0, 2 * np.pi, 50)
    kin = np.zeros((50, 9))
    kin[:, 0], kin[:, 3], kin[:, 6] = 0.4 * np.sin(t), 0.4 * np.cos(t), -0.4 * np.sin(t)
    estimator = ForceEstimator.for_bundle(bundle, profile)
    forces = estimator.estimate(kin).forces
    if not np.isfinite(forces).all() or (forces < 0).any():
        raise InstallError("self-test: the model gives non-finite or negative forces")
    if estimator.twin is not None:
        twin = estimator.twin.model.forces(feature_matrix(kin, profile, bundle.spec.features))
        if not np.isfinite(twin).all():
            raise InstallError("self-test: the confidence twin gives non-finite forces")


class ModelSlots:
    def __init__(self, root: Path, public_key: Ed25519PublicKey) -> None:
        self.root, self.key = root, public_key
        root.mkdir(parents=True, exist_ok=True)

    @property
    def current_slot(self) -> str | None:
        link = self.root / CURRENT
        return os.readlink(link) if link.is_symlink() else None

    def active(self) -> VerifiedBundle:
        """The running bundle, verified again (a hub never trusts its disk). If the current slot
        fails and the other holds a valid bundle, switch back to it."""
        slot = self.current_slot
        if slot is None:
            raise InstallError(f"{self.root}: no model installed (cervical edge install)")
        try:
            return verify_model_bundle(self.root / slot, self.key)
        except BundleError as exc:
            other = next(s for s in SLOTS if s != slot)
            try:
                fallback = verify_model_bundle(self.root / other, self.key)
            except BundleError:
                raise InstallError(
                    f"the installed model is unusable ({exc}); no other slot holds a valid bundle"
                ) from exc
            log.error("installed model unusable (%s); switched back to %s", exc, other)
            self._switch(other)
            return fallback

    def install(
        self,
        bundle: Path,
        profile: Anthropometrics,
        force: bool = False,
        test: Callable[[VerifiedBundle, Anthropometrics], None] = self_test,
    ) -> VerifiedBundle:
        try:
            offered = verify_model_bundle(bundle, self.key)
        except BundleError as exc:
            raise InstallError(f"refused: {exc}") from exc
        new_version = offered.version
        previous = self.current_slot
        if previous is not None and not force:
            try:
                running = verify_model_bundle(self.root / previous, self.key, run_golden=False)
                old = running.version
                if parse_version(new_version) <= parse_version(old):
                    raise InstallError(
                        f"refused: version {new_version} is not newer than the "
                        f"installed {old} (use --force to install it anyway)"
                    )
            except BundleError:
                log.warning("the installed bundle no longer verifies; installing over it")
        slot = next(s for s in SLOTS if s != previous)
        self._copy(bundle, slot)
        try:
            installed = verify_model_bundle(self.root / slot, self.key)
        except BundleError as exc:
            raise InstallError(f"the copy in {slot} does not verify: {exc}") from exc
        self._switch(slot)
        try:
            test(installed, profile)  # the verified copy that `current` now names
        except Exception as exc:  # any failure of the new model: go back to the old one
            if previous is not None:
                self._switch(previous)
            else:
                (self.root / CURRENT).unlink(missing_ok=True)
            raise InstallError(
                f"self-test of version {new_version} failed ({exc}); "
                + (f"rolled back to {previous}" if previous else "no model installed")
            ) from exc
        log.info("installed bundle version %s in %s", new_version, slot)
        return installed

    def _copy(self, bundle: Path, slot: str) -> None:
        staging = self.root / f".{slot}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in bundle_files(bundle):
            shutil.copyfile(bundle / name, staging / name)
            with open(staging / name, "rb") as f:
                os.fsync(f.fileno())
        target = self.root / slot
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        _fsync_dir(self.root)

    def _switch(self, slot: str) -> None:
        tmp = self.root / f".{CURRENT}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(slot, tmp)
        os.replace(tmp, self.root / CURRENT)
        _fsync_dir(self.root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
