"""The hub's configuration: one TOML file, read once at start into frozen dataclasses.

Unknown sections and keys are refused (a typo must not silently fall back to a default);
relative paths are relative to the file. Example (``deploy/hub.toml``)::

    [hub]
    database = "/var/lib/cervical/hub.db"
    models = "/var/lib/cervical/models"
    public_key = "/etc/cervical/signing.pub"
    profile = "/etc/cervical/profile.toml"
    max_database_mb = 2000        # optional
    retention_days = 90           # synced records older than this are removed

    [sensors]
    head = "lsm6dso:i2c:1:0x6a"
    trunk = "lsm6dso:i2c:1:0x6b"

    [pipeline]      # PipelineSettings fields
    [calibration]   # CalibrationSettings fields
    [assessment]    # AssessmentConfig fields
    [guided_test]   # GuidedTestSettings fields (timeouts and thresholds of a guided test)
    [ble]           # BleSettings fields (no section or no transport: no BLE service)
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.common.files import read_text
from edge_runtime.common.numbers import is_finite_number
from edge_runtime.contracts.guided_test import GuidedTestSettings
from edge_runtime.contracts.rom_assessment import AssessmentConfig
from edge_runtime.errors import HubError
from edge_runtime.hub.pipeline import PipelineSettings
from edge_runtime.hub.tracking import CalibrationSettings


class ConfigError(HubError, ValueError):
    """A configuration file that cannot be used (names the file, section and key)."""


@dataclass(frozen=True)
class BleSettings:
    """The BLE GATT service (``edge_runtime.ble``)."""

    transport: str = ""  # "hci-socket:0" on a Pi, "tcp-client:HOST:PORT" for the virtual radio
    state_dir: Path = Path("/var/lib/cervical/ble")  # identity and bonds (relative: to the file)
    name: str = "Cervical hub"
    advertising_interval_ms: float = 100.0


@dataclass(frozen=True)
class HubConfig:
    database: Path
    models: Path
    public_key: Path
    profile: Path
    head: str
    trunk: str
    max_database_mb: float | None = None
    retention_days: float = 90.0
    sensor_retry_s: float = 2.0
    realtime: bool = True  # pace replay/sim sources to the wall clock
    replay_speed: float = 1.0  # ... this many times faster (demos, soak tests)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    ble: BleSettings = field(default_factory=BleSettings)

    @property
    def max_database_bytes(self) -> int | None:
        return None if self.max_database_mb is None else int(self.max_database_mb * 1e6)


_HUB_KEYS = {
    "database",
    "models",
    "public_key",
    "profile",
    "max_database_mb",
    "retention_days",
    "sensor_retry_s",
    "realtime",
    "replay_speed",
}
_PATH_KEYS = {"database", "models", "public_key", "profile"}


def _build(cls: Any, values: dict[str, Any], where: str) -> Any:
    """A settings dataclass (every field has a default) from a TOML table: unknown keys and
    values of the wrong type are refused, naming the key; ints are accepted for floats."""
    defaults = cls()
    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {known}")
    converted = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(_finite(f"{where} {key}", v) for v in value)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(_finite(f"{where} {key}", value))
        if isinstance(value, float):
            _finite(f"{where} {key}", value)
        if default is not None and not isinstance(value, type(default)):
            raise ConfigError(f"{where}: {key} = {value!r} should be a {type(default).__name__}")
        converted[key] = value
    try:
        return cls(**converted)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _finite(where: str, value: Any) -> Any:
    """A number must be finite (and fit a float): nan, inf or a 400-digit integer is refused."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if is_finite_number(value):
            return value
        raise ConfigError(f"{where} = {value!r:.40}: not a finite number")
    return value


# the [hub] table's settings beside the paths: (lowest, highest) for numbers, None for flags
_HUB_LIMITS: dict[str, tuple[float, float] | None] = {
    "max_database_mb": (1.0, 1e7),
    "retention_days": (0.0, 36500.0),
    "sensor_retry_s": (0.01, 3600.0),
    "replay_speed": (1e-3, 1000.0),
    "realtime": None,
}


def _hub_settings(hub: dict[str, Any], where: str) -> None:
    for key, limits in _HUB_LIMITS.items():
        if key not in hub:
            continue
        value = hub[key]
        if limits is None:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key} = {value!r:.40} should be true or false")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} = {value!r:.40} should be a number")
        _finite(f"{where} {key}", value)
        if not limits[0] <= value <= limits[1]:
            raise ConfigError(f"{where}: {key} = {value!r} should be in [{limits[0]}, {limits[1]}]")
        hub[key] = float(value)


def load_config(path: Path) -> HubConfig:
    try:
        data = tomllib.loads(read_text(path, ConfigError, max_bytes=1024**2))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    sections = {"hub", "sensors", "pipeline", "calibration", "assessment", "guided_test", "ble"}
    unknown = sorted(set(data) - sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {sorted(sections)}")
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] should be a table of settings")
    hub = dict(data.get("hub", {}))
    sensors = dict(data.get("sensors", {}))
    bad = sorted(set(hub) - _HUB_KEYS)
    if bad:
        raise ConfigError(f"{path} [hub]: unknown key(s) {bad}; known: {sorted(_HUB_KEYS)}")
    missing = sorted(_PATH_KEYS - set(hub))
    if missing:
        raise ConfigError(f"{path} [hub]: missing {missing}")
    if set(sensors) - {"head", "trunk", "rate_hz"} or not {"head", "trunk"} <= set(sensors):
        raise ConfigError(f"{path} [sensors]: needs head and trunk (and optionally rate_hz)")
    for key in _PATH_KEYS:
        hub[key] = (path.parent / str(hub[key])).resolve()
    _hub_settings(hub, f"{path} [hub]")
    calibration = _build(CalibrationSettings, data.get("calibration", {}), f"{path} [calibration]")
    assessment = _build(AssessmentConfig, data.get("assessment", {}), f"{path} [assessment]")
    test = _build(GuidedTestSettings, data.get("guided_test", {}), f"{path} [guided_test]")
    pipeline_values = dict(data.get("pipeline", {}))
    if "rate_hz" in sensors:
        pipeline_values["rate_hz"] = sensors["rate_hz"]
    pipeline = _build(PipelineSettings, pipeline_values, f"{path} [pipeline]")
    pipeline = dataclasses.replace(
        pipeline, calibration=calibration, assessment=assessment, guided_test=test
    )
    ble_values = dict(data.get("ble", {}))
    if "state_dir" in ble_values:
        ble_values["state_dir"] = (path.parent / str(ble_values["state_dir"])).resolve()
    ble = _build(BleSettings, ble_values, f"{path} [ble]")
    try:
        return HubConfig(
            head=str(sensors["head"]),
            trunk=str(sensors["trunk"]),
            pipeline=pipeline,
            ble=ble,
            **hub,
        )
    except TypeError as exc:
        raise ConfigError(f"{path} [hub]: {exc}") from exc
