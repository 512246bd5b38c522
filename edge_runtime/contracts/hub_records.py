"""What the hub stores and syncs: record kinds, per-frame quality flags and the names of the
spans they mark. One definition for the hub (writer) and the gateway and web view (readers).

Every record payload carries ``format``; a reader refuses formats it does not know. Hubs write
``RECORD_FORMAT``; readers also read every format in ``READABLE_FORMATS``, since hubs in the
field keep their stores across updates (format 1: before the hub scored its confidence in the
forces; its records read with no confidence figures. Formats 1 and 2: before guided tests; their
sessions read with no kind, assessed as every session then was. Formats 1 to 3: before daily
monitoring; their wear sessions read with no monitoring block).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

RECORD_FORMAT_1 = "cervical-hub-record/1"
RECORD_FORMAT_2 = "cervical-hub-record/2"  # + force confidence in epoch and session records
RECORD_FORMAT_3 = "cervical-hub-record/3"  # + a session's kind (wear or test) and its test result
RECORD_FORMAT = "cervical-hub-record/4"  # + a wear session's daily-monitoring block
READABLE_FORMATS = (RECORD_FORMAT_1, RECORD_FORMAT_2, RECORD_FORMAT_3, RECORD_FORMAT)
# the kinds of stored record (their order is the wire code in the GATT record frames)
RECORD_KINDS: tuple[str, ...] = ("epoch", "session", "calibration", "event", "model")

# per-frame quality flags (bits); a frame with any of the first five is not used for results
DROPPED = 1 << 0  # no sample from a sensor for this frame (filled, not measured)
NON_FINITE = 1 << 1  # a NaN/inf value in a sample
SATURATED = 1 << 2  # an axis at the sensor's full-scale range
TIME_REVERSED = 1 << 3  # a sample whose timestamp went backwards or repeated (discarded)
SENSOR_LOST = 1 << 4  # a sensor sent nothing for longer than the hub waits
UNCALIBRATED = 1 << 5  # before the neutral hold and nod calibrated the segment axes
OUT_OF_RANGE = 1 << 6  # model inputs outside the training range (forces kept, marked)
TIME_JUMP = 1 << 7  # a sample's timestamp jumped ahead (the frames between are DROPPED)

FLAG_NAMES: dict[int, str] = {
    DROPPED: "dropped_samples",
    NON_FINITE: "non_finite_samples",
    SATURATED: "saturated_axis",
    TIME_REVERSED: "timestamp_backwards",
    SENSOR_LOST: "sensor_lost",
    UNCALIBRATED: "uncalibrated",
    OUT_OF_RANGE: "inputs_out_of_training_range",
    TIME_JUMP: "timestamp_jump",
}
INVALID = DROPPED | NON_FINITE | SATURATED | SENSOR_LOST
FlagArray = npt.NDArray[np.uint16]


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


def flag_spans(flags: FlagArray, t_s: npt.NDArray[np.float64]) -> Iterator[dict[str, Any]]:
    """Contiguous spans of each flag: ``{"reason", "start_s", "end_s", "frames"}``, ``end_s`` the
    last flagged frame's time."""
    for bit, name in FLAG_NAMES.items():
        on = (flags & bit) != 0
        if not on.any():
            continue
        edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
        for start, stop in zip(
            np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True
        ):
            yield {
                "reason": name,
                "start_s": round(float(t_s[start]), 3),
                "end_s": round(float(t_s[stop - 1]), 3),
                "frames": int(stop - start),
            }
