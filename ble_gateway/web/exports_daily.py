"""Exports of a patient's days of wear (``web.daily``): CSV, and FHIR R4 Observations that go
into the patient's bundle beside the test Observations (``web.exports``).

FHIR: per day worn, one Observation (local code ``DAILY_CODE_SYSTEM`` ``daily-wear``,
``effectivePeriod`` = the wearer's local day) whose ``valueQuantity`` is the hours worn, with
components for movements per hour, the share of wear in sustained flexion, each direction's
habitual range (p50, p95 of the day's excursions, deg) and each muscle group's mean share of
capacity (%); a day judged a change carries interpretation ``A`` (abnormal: a *change*, not a
deficit) and a note naming the directions and the change in degrees. Local codes, like the
test Observations'; a hospital maps them with a ConceptMap.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from ble_gateway.web.daily import PatientDays
from edge_runtime.contracts.daily import HABITUAL_QUANTILES, DayFigures, DayJudgement
from edge_runtime.contracts.wear_monitoring import DIRECTIONS, LOAD_LEVELS

DAILY_CODE_SYSTEM = "urn:cervical:daily-monitoring"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _pct(v: float | None) -> float | str:
    return "" if v is None else round(100 * v, 2)


def _num(v: float | None, digits: int = 1) -> float | str:
    return "" if v is None else round(v, digits)


def days_csv(days: PatientDays) -> str:
    """One row per day worn: wear, activity, habitual range per direction, load per group and
    the judgement against the baseline."""
    groups = days.groups
    lo, hi = (f"p{100 * q:.0f}" for q in HABITUAL_QUANTILES)
    header = ["day", "sessions", "wear_h", "movements_per_h", f"speed_{lo}_deg_s",
              f"speed_{hi}_deg_s", "sustained_flexion_pct"]  # fmt: skip
    for d in DIRECTIONS:
        header += [f"{d}_excursions", f"{d}_{lo}_deg", f"{d}_{hi}_deg"]
    for g in groups:
        header += [f"{g}_mean_capacity_pct"]
        header += [f"{g}_above_{100 * lv:.0f}pct_time_pct" for lv in LOAD_LEVELS]
    header += ["judgement", "changed_directions"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for day in days.days:
        j = days.judgements[day.day]
        row: list[object] = [
            day.day.isoformat(), day.sessions, round(day.wear_s / 3600, 3),
            _num(day.movements_per_hour), _num(day.speed_deg_s(HABITUAL_QUANTILES[0]), 0),
            _num(day.speed_deg_s(HABITUAL_QUANTILES[1]), 0),
            _pct(day.flexed_s / day.wear_s if day.wear_s else None),
        ]  # fmt: skip
        for d in DIRECTIONS:
            row += [day.excursions(d), *(_num(day.range_deg(d, q)) for q in HABITUAL_QUANTILES)]
        for g in groups:
            row += [_pct(day.load_share_mean(g))]
            row += [_pct(day.load_fraction_above(g, lv)) for lv in LOAD_LEVELS]
        changed = [f"{c.direction} {c.change_deg:+.0f}" for c in j.directions if c.flagged]
        row += ["change" if changed else j.status, "; ".join(changed)]
        writer.writerow(row)  # (every cell a number or one of our own names: nothing to quote)
    return buf.getvalue()


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": round(value, 2), "unit": unit, "system": UCUM, "code": code}


def _component(code: str, display: str, quantity: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": DAILY_CODE_SYSTEM, "code": code, "display": display}]},
        "valueQuantity": quantity,
    }


def daily_observation(
    day: DayFigures, judgement: DayJudgement, patient_url: str, identifier: str
) -> dict[str, Any]:
    """A day worn as one FHIR Observation (module docstring)."""
    components = []
    if (per_hour := day.movements_per_hour) is not None:
        components.append(_component("movements-per-hour", "Head movements per hour",
                                     _quantity(per_hour, "/h", "/h")))  # fmt: skip
    if day.wear_s:
        components.append(_component(
            "sustained-flexion", "Share of wear in sustained neck flexion",
            _quantity(100 * day.flexed_s / day.wear_s, "%", "%"),
        ))  # fmt: skip
    for d in DIRECTIONS:
        for q in HABITUAL_QUANTILES:
            value = day.range_deg(d, q)
            if value is not None:
                label = f"Habitual range, {d.replace('_', ' ')}, p{100 * q:.0f}"
                components.append(_component(f"{d}-p{100 * q:.0f}", label,
                                             _quantity(value, "deg", "deg")))  # fmt: skip
    for g in day.groups:
        share = day.load_share_mean(g)
        if share is not None:
            label = f"Mean load of the {g.replace('_', ' ')} muscles, share of capacity"
            components.append(_component(f"load-{g}", label, _quantity(100 * share, "%", "%")))
    display = "Daily neck monitoring: hours worn"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": DAILY_CODE_SYSTEM, "value": identifier}],
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "activity", "display": "Activity"}]}],
        "code": {
            "coding": [{"system": DAILY_CODE_SYSTEM, "code": "daily-wear", "display": display}],
            "text": display,
        },
        "subject": {"reference": patient_url},
        "effectivePeriod": {
            "start": day.day.isoformat(),
            "end": (day.day + timedelta(days=1)).isoformat(),
        },
        "valueQuantity": _quantity(day.wear_s / 3600, "h", "h"),
        "component": components,
    }
    if judgement.flagged:
        changes = ", ".join(
            f"{c.direction.replace('_', ' ')} {c.change_deg:+.0f} deg (threshold "
            f"{c.threshold_deg:.0f})"
            for c in judgement.directions
            if c.flagged
        )
        obs["interpretation"] = [
            {"coding": [{"system": INTERPRETATION, "code": "A", "display": "Abnormal"}]}
        ]
        obs["note"] = [
            {"text": f"Change in habitual range against the wearer's baseline: {changes}. "
                     "A change in ordinary life, not a deficit (deficits come from guided tests)."}
        ]  # fmt: skip
    return obs
