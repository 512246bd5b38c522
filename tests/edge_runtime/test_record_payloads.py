"""The hub's record payloads: one typed definition per kind, checked against golden files (a
change of the wire shape must be deliberate: a new RECORD_FORMAT and new goldens, the old ones
kept and still read), validated on construction and on reading, every refusal naming the record
and the key."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ble_gateway.web.synthetic import (
    CALIBRATION,
    epoch_payload,
    session_payload,
    wear_session_payload,
)
from cervical_demo.fuzz_cases import json_paths
from edge_runtime.contracts.hub_records import RECORD_FORMAT_1, RECORD_FORMAT_2, RECORD_FORMAT_3
from edge_runtime.contracts.record_payloads import (
    RECORD_TYPES,
    CalibrationRecord,
    EventRecord,
    HubRecord,
    Mark,
    ModelRecord,
    RecordError,
    SessionRecord,
    parse_record,
)

GOLDEN = Path(__file__).parent / "golden"


def examples(with_confidence: bool = True) -> dict[str, HubRecord]:
    """One record of each kind; ``with_confidence=False``: as a format 1 hub made them."""
    rng = np.random.default_rng(7)
    started = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    return {
        "epoch": epoch_payload(rng, 20.0, with_confidence),
        "session": session_payload(3, 10, rng, started, "2026.11.24.120000", with_confidence),
        "calibration": CalibrationRecord(CALIBRATION, ("the nod was too small (4.0 deg)",)),
        "event": EventRecord("sensors_unusable", {"from_t_s": 12.5, "to_t_s": 40.0}),
        "model": ModelRecord("2026.11.24.120000"),
    }


def wear_example() -> SessionRecord:
    started = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    return wear_session_payload(np.random.default_rng(3), started, "2026.11.24.120000", 0.4, 600)


@pytest.mark.parametrize("kind", [*sorted(RECORD_TYPES), "session_wear"])
def test_every_kind_matches_its_golden_file_and_reads_back(kind: str) -> None:
    record = wear_example() if kind == "session_wear" else examples()[kind]
    golden = json.loads((GOLDEN / f"record_{kind}.json").read_text())
    kind = record.KIND
    assert record.to_dict() == golden
    assert parse_record(kind, json.dumps(golden)) == record
    assert parse_record(kind, record.to_json()).to_dict() == golden


@pytest.mark.parametrize("old", [1, 2, 3])
@pytest.mark.parametrize("kind", sorted(RECORD_TYPES))
def test_older_formats_still_read_as_they_were(kind: str, old: int) -> None:
    """Hubs in the field keep their format 1 to 3 stores: every kind still reads, as it was
    (format 1 with no force confidence; formats 1 and 2 with no session kind or test; none of
    them with a monitoring block)."""
    golden = json.loads((GOLDEN / f"record_{kind}.format-{old}.json").read_text())
    assert golden["format"] == (RECORD_FORMAT_1, RECORD_FORMAT_2, RECORD_FORMAT_3)[old - 1]
    record = parse_record(kind, json.dumps(golden))
    now = examples(with_confidence=old >= 2)[kind].to_dict()
    newer = {"format", "monitoring"} | ({"kind", "guided_test"} if old < 3 else set())
    assert {k: v for k, v in record.to_dict().items() if k not in newer} == {
        k: v for k, v in now.items() if k not in newer
    }
    assert getattr(record, "monitoring", None) is None
    if kind == "session":  # no format before 4 has a monitoring block
        with pytest.raises(RecordError, match="monitoring: unknown key"):
            parse_record(kind, json.dumps({**golden, "monitoring": None}))
    if old == 3:
        return
    assert getattr(record, "kind", None) is None and getattr(record, "guided_test", None) is None
    if old == 1:
        assert getattr(record, "confidence", None) is None
        if "force_confidence" in now:  # a format 1 record has no such key
            with pytest.raises(RecordError, match="force_confidence: unknown key"):
                parse_record(kind, json.dumps({**golden, "force_confidence": None}))
    if kind == "session":  # nor has a format 1 or 2 session a kind
        with pytest.raises(RecordError, match="kind: unknown key"):
            parse_record(kind, json.dumps({**golden, "kind": "wear"}))


def test_the_confidence_must_agree_with_the_force_statistics_beside_it() -> None:
    session = examples()["session"]
    assert isinstance(session, SessionRecord) and session.confidence is not None
    assert 0 < session.confidence.low_fraction < 0.2
    payload = session.to_dict()
    payload["force_confidence"]["low_frames"] += 1
    with pytest.raises(RecordError, match=r"force_confidence.assessed_frames: .* is not the"):
        parse_record("session", json.dumps(payload))
    payload["force_confidence"]["low_frames"] = payload["force_confidence"]["assessed_frames"] + 1
    with pytest.raises(RecordError, match="more than the"):
        parse_record("session", json.dumps(payload))
    payload["force_confidence"] = None  # a model without a twin: no confidence, still a record
    payload["forces"]["frames"] = session.usable_frames
    assert parse_record("session", json.dumps(payload)).confidence is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("session", lambda p: p.pop("end_reason"), "session record: end_reason: missing"),
        ("session", lambda p: p.update(usable=1), "session record: usable: unknown key"),
        ("session", lambda p: p["forces"]["groups"]["flexion"].update(mean_n="x"),
         "forces.groups.flexion.mean_n: 'x': not a number"),
        ("session", lambda p: p.update(started_utc="2026-11-24T09:30:00"), "has no UTC offset"),
        ("session", lambda p: p["profile"].update(head_mass_kg=40.0), "profile: anthropometrics"),
        ("session", lambda p: p.update(format="cervical-hub-record/5"), "format"),
        ("session", lambda p: p.pop("kind"), "session record: kind: missing"),
        ("session", lambda p: p.update(kind="nap"), "kind: 'nap': not one of"),
        ("session", lambda p: p.update(kind="wear"), "a wear session has no test result"),
        ("session", lambda p: p.update(kind="wear", guided_test=None),
         "a wear session carries no range-of-motion assessment"),
        ("session", lambda p: p.update(guided_test=None), "a test session needs test result"),
        ("session", lambda p: p["guided_test"].update(outcome="abandoned"),
         "missing: \\[\\]: contradicts the outcome 'abandoned'"),
        ("session", lambda p: p["guided_test"].update(outcome="incomplete", missing=["flexion"]),
         "an incomplete test carries no range-of-motion assessment"),
        ("session", lambda p: p["guided_test"]["steps"][1].update(step="yoga"),
         "guided_test.steps\\[1\\].step: 'yoga': not one of"),
        ("session", lambda p: p["guided_test"]["settings"].update(step_timeout_s=-1),
         "must be > 0"),
        ("session", lambda p: p.pop("force_confidence"), "force_confidence: missing"),
        ("session", lambda p: p.update(monitoring=wear_example().monitoring.to_dict()),  # type: ignore[union-attr]
         "only a wear session carries a monitoring block"),
        ("session_wear", lambda p: p.update(monitoring=None),
         "a wear session needs its monitoring block"),
        ("session_wear", lambda p: p["monitoring"].update(day="2026-13-01"), "not an ISO date"),
        ("session_wear", lambda p: p["monitoring"]["excursions"].update(flexion=[1, -2]),
         "monitoring.excursions.flexion: -2: not a count"),
        ("session_wear", lambda p: p["monitoring"]["load"]["flexion"].update(above_s=[1.0]),
         "monitoring.load.flexion.above_s: .*1 values, not 3"),
        ("epoch", lambda p: p["force_confidence"].update(threshold_of_fmax=-1), "below 0"),
        ("epoch", lambda p: p.update(usable_frames=10**6), "more than the 1000 frames"),
        ("epoch", lambda p: p["angles"].update(min_deg=[1.0]), "angles.min_deg"),
        ("event", lambda p: p.update(event="\x1b[31mred"), "not printable"),
        ("event", lambda p: p.pop("to_t_s"), "event record: to_t_s: missing"),
        ("calibration", lambda p: p.update(trunk_axes=[[1, 0, 0]]), "not 3 axes"),
        ("model", lambda p: p.update(bundle_version=3), "bundle_version: 3: not a string"),
    ],
)  # fmt: skip
def test_a_bad_payload_is_refused_naming_the_record_and_key(
    kind: str, change: Any, message: str
) -> None:
    record = wear_example() if kind == "session_wear" else examples()[kind]
    payload = record.to_dict()
    change(payload)
    with pytest.raises(RecordError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_record(record.KIND, json.dumps(payload))


def test_construction_validates_like_reading() -> None:
    with pytest.raises(RecordError, match="event: 'sync_done'"):
        EventRecord("sync_done")
    with pytest.raises(RecordError, match="not finite"):
        EventRecord("sensors_unusable", {"from_t_s": math.nan, "to_t_s": 1.0})
    epoch = examples()["epoch"]
    with pytest.raises(RecordError, match="marks"):
        type(epoch)(**{**epoch.__dict__, "marks": (Mark("bogus", 0.0, 1.0, 3),)})


def _mutations() -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    )  # fmt: skip
    return st.recursive(
        leaf,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=6,
    )


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([*sorted(RECORD_TYPES), "session_wear"]),
    where=st.integers(0, 10**6),
    value=_mutations(),
    delete=st.booleans(),
)
def test_any_mutation_reads_or_is_refused_with_a_record_error(
    kind: str, where: int, value: Any, delete: bool
) -> None:
    """Fuzzing: one value anywhere in a valid payload replaced (or removed) never raises
    anything but RecordError, and what reads back is finite JSON."""
    example = wear_example() if kind == "session_wear" else examples()[kind]
    kind, payload = example.KIND, example.to_dict()
    paths = json_paths(payload)[1:]
    path = paths[where % len(paths)]
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    try:
        text = json.dumps(payload)
    except (ValueError, TypeError):
        return
    try:
        record = parse_record(kind, text)
    except RecordError:
        return
    json.dumps(record.to_dict(), allow_nan=False)
