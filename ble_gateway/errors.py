"""The gateway's errors: one base, so a front end catches the gateway's refusals once.

::

    GatewayError                anything the gateway refuses or cannot do, in words
    ├── HubNotFoundError        no hub advertising (LookupError)
    ├── HubRefusedError         the hub said no (a bond it needs, a bundle it rejects)
    ├── LinkLostError           the link kept dropping: gave up after the retry policy
    ├── BondLostError           the hub no longer knows this gateway (also a bleak BleakError)
    ├── ClinicStoreError        the clinic store refused a record (names the device and seq)
    ├── AccountError            a user name or password refused (ValueError)
    ├── LoginThrottledError     too many failed sign-ins
    ├── ReviewError             a request the review cannot answer (ValueError)
    │   └── NotFoundError       an unknown patient, device or session (LookupError)
    ├── NotSignedInError        a web view route asked for without a session
    └── CsrfError               a form posted without the session's CSRF token

The payloads shared with the hub have their own base, ``edge_runtime.contracts.errors.
ContractError``. Command-line front ends catch ``USER_ERRORS``: both bases and ``OSError``.
"""

from __future__ import annotations

from edge_runtime.contracts.errors import ContractError


class GatewayError(Exception):
    """Base of the gateway's errors (module docstring)."""


class HubNotFoundError(GatewayError, LookupError):
    """No hub (or not the one asked for) advertised within the time given."""


USER_ERRORS: tuple[type[Exception], ...] = (GatewayError, ContractError, OSError)
