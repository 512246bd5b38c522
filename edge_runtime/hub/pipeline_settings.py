"""The hub pipeline's settings (the hub configuration's ``[pipeline]`` table, with the
calibration, assessment and guided-test tables inside)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_runtime.contracts.guided_test import GuidedTestSettings
from edge_runtime.contracts.rom_assessment import AssessmentConfig
from edge_runtime.hub.tracking import CalibrationSettings


@dataclass(frozen=True)
class PipelineSettings:
    rate_hz: float = 100.0
    epoch_s: float = 10.0
    lost_s: float = 1.0  # silent this long past its buffer: lost (frames filled and marked)
    break_s: float = 3.0  # unusable this long: the session ends
    max_session_s: float = 1800.0
    max_pending_records: int = 2000
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    assessment: AssessmentConfig = field(default_factory=AssessmentConfig)
    guided_test: GuidedTestSettings = field(default_factory=GuidedTestSettings)
    timezone: str = ""  # IANA name of the wearer's days (daily monitoring); "": the hub's own

    def __post_init__(self) -> None:
        self.zone()  # an unknown zone is refused when the settings are made

    def zone(self) -> tzinfo | None:
        """The zone of the wearer's days (None: the hub's local zone)."""
        if not self.timezone:
            return None
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone = {self.timezone!r}: not a known time zone") from None
