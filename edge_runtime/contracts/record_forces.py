"""The force parts of the hub's records (``record_payloads``): statistics per muscle and group,
and how far the hub trusted them (format 2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from edge_runtime.contracts.hub_records import RECORD_FORMAT_1
from edge_runtime.contracts.record_fields import Fields

FORCE_PERCENTILES: tuple[int, ...] = (50, 90, 99)


@dataclass(frozen=True)
class ForceStats:
    """One series' force statistics over the usable frames of trusted forces (N; None where
    there were none)."""

    mean_n: float | None
    peak_n: float | None
    percentiles_n: tuple[float | None, ...]  # at FORCE_PERCENTILES

    def to_dict(self) -> dict[str, float | None]:
        d = {"mean_n": self.mean_n, "peak_n": self.peak_n}
        return d | {
            f"p{q}_n": v for q, v in zip(FORCE_PERCENTILES, self.percentiles_n, strict=True)
        }

    def percentile_n(self, q: int) -> float | None:
        return self.percentiles_n[FORCE_PERCENTILES.index(q)]

    @classmethod
    def read(cls, f: Fields) -> ForceStats:
        stats = cls(
            f.number("mean_n", 0.0, optional=True),
            f.number("peak_n", 0.0, optional=True),
            tuple(f.number(f"p{q}_n", 0.0, optional=True) for q in FORCE_PERCENTILES),
        )
        f.done()
        return stats


@dataclass(frozen=True)
class ForceSummary:
    frames: int
    muscles: Mapping[str, ForceStats]
    groups: Mapping[str, ForceStats]

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "muscles": {n: s.to_dict() for n, s in self.muscles.items()},
            "groups": {n: s.to_dict() for n, s in self.groups.items()},
        }

    @classmethod
    def read(cls, f: Fields) -> ForceSummary:
        series = {}
        for what in ("muscles", "groups"):
            series[what] = {
                n: ForceStats.read(Fields(f.record, s, f.key(f"{what}.{n}")))
                for n, s in f.mapping(what).items()
            }
        summary = cls(f.count("frames"), series["muscles"], series["groups"])
        f.done()
        return summary


@dataclass(frozen=True)
class ForceConfidence:
    """How far the hub trusted a span's forces (``contracts.confidence``): of the
    ``assessed_frames`` that had forces, ``low_frames`` scored above ``threshold_of_fmax`` and
    were left out of the force statistics beside it, which cover the other frames."""

    assessed_frames: int
    low_frames: int
    threshold_of_fmax: float

    @property
    def low_fraction(self) -> float:
        return self.low_frames / self.assessed_frames if self.assessed_frames else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, f: Fields, trusted_frames: int) -> ForceConfidence:
        """``trusted_frames``: the frames of the force statistics beside it, which must be the
        assessed frames less the low ones."""
        assessed, low = f.count("assessed_frames"), f.count("low_frames")
        if low > assessed:
            raise f.fail("low_frames", low, f"more than the {assessed} assessed frames")
        if assessed - low != trusted_frames:
            raise f.fail(
                "assessed_frames", assessed,
                f"less low_frames ({low}) is not the {trusted_frames} frames of the forces",
            )  # fmt: skip
        threshold = f.number("threshold_of_fmax", 0.0)
        f.done()
        return cls(assessed, low, threshold)


def read_confidence(f: Fields, version: str, trusted_frames: int) -> ForceConfidence | None:
    """Format 2's ``force_confidence`` (null: the model had no confidence twin); format 1
    records have none."""
    if version == RECORD_FORMAT_1:
        return None
    sub = f.sub("force_confidence", optional=True)
    return None if sub is None else ForceConfidence.read(sub, trusted_frames)
