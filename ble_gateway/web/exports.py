"""Exports of a patient's history over a period: CSV of session summaries, a FHIR R4 Bundle of
range-of-motion Observations, and the printable report as PDF (WeasyPrint, from the same HTML the
browser prints).

FHIR (R4, https://hl7.org/fhir/R4/): a ``collection`` Bundle with the Patient (the clinic's
pseudonymous code only), each hub as a Device, and one Observation per direction per assessed
session: value = reached range in degrees (UCUM ``deg``), ``referenceRange.low`` = the wearer's
personal envelope minus the deficit threshold (below it the hub flags a deficit), components for
the envelope, the deficit in degrees and in percent, interpretation L (deficit) or N; and for each
session whose hub checked its forces' confidence, one Observation of the share of its muscle-force
frames the hub trusted (``FORCE_CONFIDENCE_SYSTEM``, UCUM ``%``); and one Observation per day of
wear (``exports_daily``). The codes are local
(``ROM_CODE_SYSTEM``); no standard terminology has one code per combined direction, so a
hospital maps them with a ConceptMap. Resource ids are UUIDv5 of stable identifiers, so the same
export twice yields the same resources.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from ble_gateway.web.daily import PatientDays
from ble_gateway.web.exports_daily import daily_observation
from ble_gateway.web.review import Direction, PatientHistory, SessionRow, confidence_words
from edge_runtime.contracts.rom_assessment import SECTORS

CODE_SYSTEM_BASE = "urn:cervical"
ROM_CODE_SYSTEM = f"{CODE_SYSTEM_BASE}:rom-direction"
PATIENT_SYSTEM = f"{CODE_SYSTEM_BASE}:patient-code"
DEVICE_SYSTEM = f"{CODE_SYSTEM_BASE}:hub-ble-address"
OBSERVATION_SYSTEM = f"{CODE_SYSTEM_BASE}:rom-observation"
FORCE_CONFIDENCE_SYSTEM = f"{CODE_SYSTEM_BASE}:force-confidence"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_NAMESPACE = uuid.UUID("6b1d0000-5c1e-4f6e-9a4b-2f0c3e7a9d10")  # the project's UUID base


def _safe_cell(value: object) -> object:
    """Text a spreadsheet would run as a formula is quoted (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def sessions_csv(history: PatientHistory) -> str:
    """One row per session of the period: its figures, then per direction reached/expected
    range and status, then per muscle group the mean force."""
    groups = history.group_names()
    header = [
        "started_utc",
        "device",
        "session_id",
        "duration_min",
        "usable_min",
        "assessed",
        "flagged",
        "reviewed_by",
        "model_version",
        "out_of_range_frames",
        "low_confidence_force_frames_pct",  # empty: the hub did not check
        "note",
    ]
    for sector in SECTORS:
        header += [f"{sector}_reached_deg", f"{sector}_expected_deg", f"{sector}_status"]
    header += [f"{g}_mean_n" for g in groups]
    address = {d.id: d.address for d in history.devices}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([_safe_cell(h) for h in header])  # group names come from the hub
    for s in history.sessions:
        row: list[object] = [
            s.started_utc.isoformat(),
            address.get(s.device_id, s.device_id),
            s.session_id,
            round(s.duration_s / 60, 2),
            round(s.usable_s / 60, 2),
            int(s.assessed),
            " ".join(s.flagged),
            s.reviewed_by or "",
            s.model_version or "",
            s.out_of_range_frames,
            "" if (low := s.low_confidence_fraction) is None else round(100 * low, 2),
            s.note or "",
        ]
        directions = history.directions.get(s.key, {})
        for sector in SECTORS:
            d = directions.get(sector)
            row += [d.reached_deg, d.expected_deg, d.status] if d else ["", "", ""]
        forces = history.forces.get(s.key, {})
        row += [f.mean_n if (f := forces.get(g)) and f.mean_n is not None else "" for g in groups]
        writer.writerow([_safe_cell(v) for v in row])
    return buf.getvalue()


def _uuid(*parts: object) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '/'.join(map(str, parts)))}"


def _deg(value: float) -> dict[str, Any]:
    return {"value": round(value, 2), "unit": "deg", "system": UCUM, "code": "deg"}


def _observation(
    s: SessionRow, d: Direction, address: str, patient_url: str, device_url: str
) -> dict[str, Any]:
    label = d.sector.replace("_", " ")
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [
            {"system": OBSERVATION_SYSTEM, "value": f"{address}/{s.session_id}/{d.sector}"}
        ],
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "exam", "display": "Exam"}]}],
        "code": {
            "coding": [
                {
                    "system": ROM_CODE_SYSTEM,
                    "code": d.sector,
                    "display": f"Cervical active range of motion, {label}",
                }
            ],
            "text": f"Cervical active range of motion, {label}",
        },
        "subject": {"reference": patient_url},
        "effectiveDateTime": s.started_utc.isoformat(),
        "device": {"reference": device_url},
        "valueQuantity": _deg(d.reached_deg),
        "referenceRange": [
            {
                "low": _deg(max(d.expected_deg - d.threshold_deg, 0.0)),
                "text": (
                    f"Personal motion envelope {d.expected_deg:.1f} deg; a deficit is flagged "
                    f"from {d.threshold_deg:.0f} deg below it"
                ),
            }
        ],
        "component": [
            {
                "code": {
                    "coding": [
                        {
                            "system": ROM_CODE_SYSTEM,
                            "code": "envelope",
                            "display": "Personal envelope",
                        }
                    ]
                },
                "valueQuantity": _deg(d.expected_deg),
            },
            {
                "code": {
                    "coding": [{"system": ROM_CODE_SYSTEM, "code": "deficit", "display": "Deficit"}]
                },
                "valueQuantity": _deg(d.deficit_deg),
            },
            {
                "code": {
                    "coding": [
                        {
                            "system": ROM_CODE_SYSTEM,
                            "code": "deficit-percent",
                            "display": "Deficit (percent of envelope)",
                        }
                    ]
                },
                "valueQuantity": {
                    "value": round(d.deficit_pct, 2),
                    "unit": "%",
                    "system": UCUM,
                    "code": "%",
                },
            },
        ],
    }
    if d.status == "insufficient_data":
        obs["note"] = [{"text": "Too little valid data in this session to judge a deficit."}]
    else:
        code, display = ("L", "Low") if d.status == "deficit" else ("N", "Normal")
        obs["interpretation"] = [
            {"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}
        ]
    return obs


def _confidence_observation(
    s: SessionRow, low_fraction: float, address: str, patient_url: str, device_url: str
) -> dict[str, Any]:
    display = "Share of the session's muscle-force estimates the hub trusted"
    return {
        "resourceType": "Observation",
        "identifier": [
            {"system": OBSERVATION_SYSTEM, "value": f"{address}/{s.session_id}/force-confidence"}
        ],
        "status": "final",
        "code": {
            "coding": [
                {"system": FORCE_CONFIDENCE_SYSTEM, "code": "trusted-frames", "display": display}
            ],
            "text": display,
        },
        "subject": {"reference": patient_url},
        "effectiveDateTime": s.started_utc.isoformat(),
        "device": {"reference": device_url},
        "valueQuantity": {
            "value": round(100 * (1 - low_fraction), 2),
            "unit": "%",
            "system": UCUM,
            "code": "%",
        },
        "note": [{"text": confidence_words(low_fraction)}],
    }


def fhir_bundle(
    history: PatientHistory, generated: datetime | None = None, days: PatientDays | None = None
) -> dict[str, Any]:
    """The FHIR R4 Bundle (module docstring) of the period's assessed sessions and days."""
    generated = generated or datetime.now(UTC)
    patient_url = _uuid("patient", history.code)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": PATIENT_SYSTEM, "value": history.code}],
            },
        }
    ]
    device_url: dict[int, str] = {}
    address: dict[int, str] = {}
    for d in history.devices:
        device_url[d.id], address[d.id] = _uuid("device", d.address), d.address
        device: dict[str, Any] = {
            "resourceType": "Device",
            "identifier": [{"system": DEVICE_SYSTEM, "value": d.address}],
            "deviceName": [{"name": "Cervical neck-motion hub", "type": "user-friendly-name"}],
            "patient": {"reference": patient_url},
        }
        if d.model_version:
            device["version"] = [{"value": d.model_version}]
        entries.append({"fullUrl": device_url[d.id], "resource": device})
    for s in history.assessed:
        for sector in SECTORS:
            direction = history.directions[s.key].get(sector)
            if direction is None:
                continue
            obs = _observation(
                s, direction, address[s.device_id], patient_url, device_url[s.device_id]
            )
            entries.append(
                {"fullUrl": _uuid("observation", obs["identifier"][0]["value"]), "resource": obs}
            )
    for s in history.sessions:
        if s.low_confidence_fraction is not None:
            obs = _confidence_observation(
                s, s.low_confidence_fraction, address[s.device_id], patient_url,
                device_url[s.device_id],
            )  # fmt: skip
            entries.append(
                {"fullUrl": _uuid("observation", obs["identifier"][0]["value"]), "resource": obs}
            )
    for day in days.days if days else ():
        identifier = f"{history.code}/{day.day.isoformat()}"
        obs = daily_observation(day, days.judgements[day.day], patient_url, identifier)  # type: ignore[union-attr]
        entries.append({"fullUrl": _uuid("observation", "daily", identifier), "resource": obs})
    return {
        "resourceType": "Bundle",
        "identifier": {
            "system": "urn:ietf:rfc:3986",
            "value": _uuid("bundle", history.code, history.period.label, generated.isoformat()),
        },
        "type": "collection",
        "timestamp": generated.isoformat(timespec="seconds"),
        "entry": entries,
    }


def report_pdf(html: str) -> bytes:
    """The report's HTML (self-contained: inline CSS and SVG) as PDF."""
    import weasyprint  # type: ignore[import-untyped]  # heavy: imported for this export only

    return bytes(weasyprint.HTML(string=html).write_pdf())
