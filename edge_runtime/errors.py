"""The hub's errors: one base, so a front end catches the hub's refusals once.

::

    HubError                    anything the hub refuses or cannot do, in words
    ├── ConfigError             a hub.toml that cannot be used (ValueError)
    ├── SensorError             a sensor that cannot be opened or stopped answering
    ├── CalibrationError        a neutral hold or nod that does not calibrate (ValueError)
    ├── StorageError            the record store refused (a bad ACK, a corrupt file)
    │   └── StorageFullError    the disk or the store's cap is full
    ├── InstallError            a model bundle that fails the install checks
    └── IdentityError           a BLE identity file that cannot be used (ValueError)

The data contracts the hub shares with the host have their own base,
``edge_runtime.contracts.errors.ContractError`` (a bad recording, bundle, profile, payload).
Front ends catch ``USER_ERRORS``: both bases and ``OSError``.
"""

from __future__ import annotations

from edge_runtime.contracts.errors import ContractError


class HubError(Exception):
    """Base of the hub's errors (module docstring)."""


USER_ERRORS: tuple[type[Exception], ...] = (HubError, ContractError, OSError)
