"""What the clinic store derives from synced records so the web view reads columns, not JSON.

The records are the source of truth; these rows are a cache of them. ``DERIVED_VERSION`` names
the cache's shape: a store whose cache is of another version drops and rebuilds it from the
records when opened (clinician data such as reviews lives elsewhere and is never dropped).

One function per record kind turns a hub record (the ``cervical-hub-record/1`` payloads of
``edge_runtime.contracts.hub_records``) into rows; a payload that cannot be read derives
nothing (it stays verbatim in ``records``) and is logged once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.contracts.errors import ContractError
from edge_runtime.contracts.gatt import SyncRecord
from edge_runtime.contracts.hub_records import RECORD_FORMAT
from edge_runtime.contracts.rom_assessment import RomAssessment

log = logging.getLogger(__name__)
DERIVED_VERSION = 2


@dataclass
class DerivedRows:
    """Rows for the derived tables, keyed like them (``device_id`` filled in by the store)."""

    sessions: list[dict[str, Any]] = field(default_factory=list)
    directions: list[dict[str, Any]] = field(default_factory=list)
    forces: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: DerivedRows) -> None:
        self.sessions += other.sessions
        self.directions += other.directions
        self.forces += other.forces
        self.epochs += other.epochs


def derive(device_id: int, batch: list[SyncRecord]) -> DerivedRows:
    rows = DerivedRows()
    for r in batch:
        if r.kind not in ("session", "epoch"):
            continue
        try:
            payload: dict[str, Any] = json.loads(r.payload_json)
            if payload.get("format") != RECORD_FORMAT:
                raise ValueError(f"format {payload.get('format')!r}")
            if r.kind == "epoch":
                rows.epochs.append(_epoch_row(device_id, r, payload))
            elif r.session_id:
                rows.extend(_session_rows(device_id, r, payload))
        except (ValueError, TypeError, KeyError, ContractError) as exc:
            log.warning(
                "device %d seq %d: %s record not derived (%s)", device_id, r.seq, r.kind, exc
            )
    return rows


def _usable_fraction(p: dict[str, Any]) -> float:
    frames = int(p.get("frames") or 0)
    return int(p.get("usable_frames") or 0) / frames if frames else 0.0


def _epoch_row(device_id: int, r: SyncRecord, p: dict[str, Any]) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "seq": r.seq,
        "session_id": r.session_id,
        "start_s": p.get("start_s"),
        "end_s": p.get("end_s"),
        "usable_fraction": _usable_fraction(p),
    }


def _session_rows(device_id: int, r: SyncRecord, p: dict[str, Any]) -> DerivedRows:
    key = {"device_id": device_id, "session_id": r.session_id}
    usable = _usable_fraction(p)
    duration_s = float(p.get("duration_s") or 0.0)
    raw = p.get("assessment")
    assessment = RomAssessment.from_dict(raw) if raw else None
    out = DerivedRows()
    out.sessions.append(
        {
            **key,
            "seq": r.seq,
            "started_utc": p.get("started_utc") or r.t_utc,
            "duration_s": duration_s,
            "usable_s": duration_s * usable,
            "usable_fraction": usable,
            "end_reason": p.get("end_reason"),
            "assessed": assessment is not None,
            "flagged": " ".join(assessment.flagged) if assessment else "",
            "insufficient": " ".join(assessment.insufficient) if assessment else "",
            "model_version": (p.get("model") or {}).get("bundle_version"),
            "out_of_range_frames": int((p.get("out_of_range") or {}).get("frames") or 0),
            "note": p.get("assessment_note"),
        }
    )
    if assessment is not None:
        threshold = assessment.config.min_deficit_deg
        out.directions += [
            {
                **key,
                "sector": s.sector,
                "status": s.status,
                "expected_deg": s.expected_deg,
                "reached_deg": s.reached_deg,
                "ratio": s.ratio,
                "deficit_deg": s.deficit_deg,
                "deficit_pct": s.deficit_pct,
                "threshold_deg": threshold,
            }
            for s in assessment.sectors
        ]
    groups: dict[str, dict[str, Any]] = (p.get("forces") or {}).get("groups") or {}
    out.forces += [
        {
            **key,
            "muscle_group": name,
            "mean_n": g.get("mean_n"),
            "peak_n": g.get("peak_n"),
            "p90_n": g.get("p90_n"),
        }
        for name, g in groups.items()
    ]
    return out
