"""``replay:PATH``: a recording-format CSV played back as a sensor, in chunks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from edge_runtime.contracts.recording import ImuRecording, RecordingError
from edge_runtime.sensors import SensorError, SensorRanges

CHUNK_S = 0.5


class ReplaySource:
    def __init__(
        self, path: str | Path, realtime: bool = False, chunk_s: float = CHUNK_S, speed: float = 1.0
    ) -> None:
        self.spec = f"replay:{path}"
        self.ranges = SensorRanges()
        try:
            self.recording = ImuRecording.read_csv(Path(path))
        except RecordingError as exc:
            raise SensorError(self.spec, str(exc)) from exc
        self.realtime, self.chunk_s, self.speed = realtime, chunk_s, speed

    def chunks(self) -> Iterator[ImuRecording]:
        yield from chunked(self.recording, self.chunk_s, self.realtime, self.speed)

    def close(self) -> None:
        pass


def chunked(
    rec: ImuRecording, chunk_s: float, realtime: bool, speed: float = 1.0
) -> Iterator[ImuRecording]:
    """Split a recording into chunks of ``chunk_s`` worth of samples (by count, so bad timestamps
    pass through untouched); ``realtime`` sleeps so chunks arrive at the recording's pace, or
    ``speed`` times faster (two paced sources stay in step; unpaced ones race each other)."""
    n = len(rec.t_s)
    try:
        step = max(1, round(chunk_s * rec.rate_hz))
    except RecordingError:
        step = max(1, n)
    started = time.monotonic()
    for i in range(0, n, step):
        sl = slice(i, min(n, i + step))
        if realtime:
            due = started + sl.stop / step * chunk_s / speed
            time.sleep(max(0.0, due - time.monotonic()))
        yield ImuRecording(
            t_s=rec.t_s[sl],
            gyr_rad_s=rec.gyr_rad_s[sl],
            acc_m_s2=rec.acc_m_s2[sl],
            mag_ut=None if rec.mag_ut is None else rec.mag_ut[sl],
        )
