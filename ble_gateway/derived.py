"""What the clinic store derives from synced records so the web view reads columns, not JSON.

The records are the source of truth; these rows are a cache of them. ``DERIVED_VERSION`` names
the cache's shape: a store whose cache is of another version drops and rebuilds it from the
records when opened (clinician data such as reviews lives elsewhere and is never dropped).

Every synced record is read through its typed payload (``edge_runtime.contracts.record_payloads``)
on arrival. One that does not read (a hub with a bug, a corrupted store, a hostile device) is
*quarantined*: kept verbatim in ``records`` (the hub's copy may be gone), listed with its reason
in ``quarantine`` and shown to clinicians as "records that could not be read"; it derives
nothing, and never blocks the records after it or any page.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from edge_runtime.contracts.gatt import SyncRecord
from edge_runtime.contracts.record_payloads import (
    EpochRecord,
    ForceConfidence,
    RecordError,
    SessionRecord,
    parse_record,
)

log = logging.getLogger(__name__)
DERIVED_VERSION = 6  # 4: the forces' low-confidence share; 5: the session's kind; 6: days


@dataclass
class DerivedRows:
    """Rows for the derived tables, keyed like them (``device_id`` filled in by the store)."""

    sessions: list[dict[str, Any]] = field(default_factory=list)
    directions: list[dict[str, Any]] = field(default_factory=list)
    forces: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    monitoring: list[dict[str, Any]] = field(default_factory=list)  # wear sessions' blocks
    quarantine: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: DerivedRows) -> None:
        self.sessions += other.sessions
        self.directions += other.directions
        self.forces += other.forces
        self.epochs += other.epochs
        self.monitoring += other.monitoring
        self.quarantine += other.quarantine


def derive(device_id: int, batch: list[SyncRecord]) -> DerivedRows:
    rows = DerivedRows()
    for r in batch:
        try:
            record = parse_record(r.kind, r.payload_json)
            if isinstance(record, SessionRecord | EpochRecord) and not r.session_id:
                raise RecordError(r.kind, "session_id", "missing (the record has no session)")
        except RecordError as exc:
            log.warning("device %d seq %d: quarantined (%s)", device_id, r.seq, exc)
            rows.quarantine.append(
                {"device_id": device_id, "seq": r.seq, "kind": r.kind, "reason": str(exc)[:500]}
            )
            continue
        if isinstance(record, EpochRecord):
            rows.epochs.append(_epoch_row(device_id, r, record))
        elif isinstance(record, SessionRecord):
            rows.extend(_session_rows(device_id, r, record))
    return rows


def _epoch_row(device_id: int, r: SyncRecord, p: EpochRecord) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "seq": r.seq,
        "session_id": r.session_id,
        "start_s": p.start_s,
        "end_s": p.end_s,
        "usable_fraction": p.usable_fraction,
        "low_confidence_fraction": _low_fraction(p.confidence),
    }


def _low_fraction(confidence: ForceConfidence | None) -> float | None:
    """None where nothing was checked (no twin, or no frame had forces)."""
    return None if confidence is None or not confidence.assessed_frames else confidence.low_fraction


def _session_rows(device_id: int, r: SyncRecord, p: SessionRecord) -> DerivedRows:
    key = {"device_id": device_id, "session_id": r.session_id}
    assessment = p.assessment
    out = DerivedRows()
    out.sessions.append(
        {
            **key,
            "seq": r.seq,
            # one form (UTC, seconds) so that the store orders and filters them as text
            "started_utc": p.started.astimezone(UTC).isoformat(timespec="seconds"),
            "duration_s": p.duration_s,
            "usable_s": p.duration_s * p.usable_fraction,
            "usable_fraction": p.usable_fraction,
            "end_reason": p.end_reason,
            "assessed": assessment is not None,
            "flagged": " ".join(assessment.flagged) if assessment else "",
            "insufficient": " ".join(assessment.insufficient) if assessment else "",
            "model_version": p.bundle_version,
            "out_of_range_frames": p.out_of_range.frames,
            "low_confidence_fraction": _low_fraction(p.confidence),
            "note": p.assessment_note,
            "kind": p.kind,
        }
    )
    if p.monitoring is not None:
        out.monitoring.append(
            {**key, "day": p.monitoring.day, "block": json.dumps(p.monitoring.to_dict())}
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
    out.forces += [
        {
            **key,
            "muscle_group": name,
            "mean_n": g.mean_n,
            "peak_n": g.peak_n,
            "p90_n": g.percentile_n(90),
        }
        for name, g in p.forces.groups.items()
    ]
    return out
