"""The hub's persistent Bluetooth identity: a random static address, an IRK and the pairing
passkey, created once (``state_dir/identity.json``, mode 0600) and kept across restarts, beside
the bonds (``state_dir/bonds.json``, bumble's JSON key store).

The passkey is the hub's secret for LE Secure Connections passkey entry: the hub has no display,
so it is printed on the hub's label (``cervical edge ble-identity`` shows it) and the clinician
or patient types it on the phone or PC once, when pairing. Bumble's default IRK is all zeros
(anyone could resolve the hub's private addresses); this one is random.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from bumble.hci import Address

from edge_runtime.common.atomic import write_atomic
from edge_runtime.errors import HubError

IDENTITY_FILE = "identity.json"
BONDS_FILE = "bonds.json"


class IdentityError(HubError, ValueError):
    """An identity file that cannot be used (names the file)."""


def random_static_address() -> Address:
    raw = bytearray(secrets.token_bytes(6))
    raw[5] |= 0xC0  # the two most significant bits of a static random address are 1
    if (raw[:5] == bytes(5) and raw[5] & 0x3F == 0) or raw == bytearray(b"\xff" * 6):
        return random_static_address()  # all-zero or all-one random parts are forbidden
    return Address(bytes(raw), Address.RANDOM_DEVICE_ADDRESS)


@dataclass(frozen=True)
class BleIdentity:
    address: Address
    irk: bytes
    passkey: int  # 0..999999, shown as six digits

    @property
    def passkey_text(self) -> str:
        return f"{self.passkey:06d}"

    @classmethod
    def load_or_create(cls, state_dir: Path) -> BleIdentity:
        path = state_dir / IDENTITY_FILE
        if path.exists():
            try:
                data = json.loads(path.read_text())
                identity = cls(
                    Address(data["address"], Address.RANDOM_DEVICE_ADDRESS),
                    bytes.fromhex(data["irk"]),
                    int(data["passkey"]),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise IdentityError(f"{path}: not a usable BLE identity: {exc}") from exc
            if len(identity.irk) != 16 or not 0 <= identity.passkey <= 999_999:
                raise IdentityError(f"{path}: IRK must be 16 bytes and the passkey six digits")
            return identity
        identity = cls(random_static_address(), secrets.token_bytes(16), secrets.randbelow(10**6))
        data = {
            "address": str(identity.address).removesuffix("/P"),
            "irk": identity.irk.hex(),
            "passkey": identity.passkey,
        }
        write_atomic(path, json.dumps(data), mode=0o600, durable=True)  # a secret
        return identity
