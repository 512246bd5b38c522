"""``replay:PATH``: a recording-format CSV played back as a sensor, in chunks."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from edge_runtime.contracts.recording import ImuRecording, RecordingError
from edge_runtime.sensors import SensorError, SensorRanges

log = logging.getLogger(__name__)
CHUNK_S = 0.5
# a paced replay stands in for a sensor with a buffer: 64 chunks of 0.5 s; a reader stalled
# longer loses the oldest chunks, as a sensor's FIFO in continuous mode overwrites its oldest
REPLAY_BUFFER_S = 32.0


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
        self.pace: float | None = speed if realtime else None
        self.buffer_s = REPLAY_BUFFER_S

    def chunks(self) -> Iterator[ImuRecording]:
        yield from chunked(self.recording, self.chunk_s, self.realtime, self.speed, self.buffer_s)

    def close(self) -> None:
        pass


def chunked(
    rec: ImuRecording,
    chunk_s: float,
    realtime: bool,
    speed: float = 1.0,
    buffer_s: float = REPLAY_BUFFER_S,
) -> Iterator[ImuRecording]:
    """Split a recording into chunks of ``chunk_s`` worth of samples (by count, so bad timestamps
    pass through untouched); ``realtime`` sleeps so chunks arrive at the recording's pace, or
    ``speed`` times faster (two paced sources stay in step; unpaced ones race each other). A
    paced reader that falls more than ``buffer_s`` (recording seconds) behind loses the chunks
    that no longer fit, oldest first, as a sensor's FIFO does; a shorter stall loses nothing."""
    n = len(rec.t_s)
    try:
        step = max(1, round(chunk_s * rec.rate_hz))
    except RecordingError:
        step = max(1, n)
    started = time.monotonic()
    overflowed = 0
    for i in range(0, n, step):
        sl = slice(i, min(n, i + step))
        if realtime:
            due = started + sl.stop / step * chunk_s / speed
            late_s = (time.monotonic() - due) * speed
            if late_s > buffer_s + chunk_s:  # overwritten while nobody read
                overflowed += 1
                continue
            if overflowed:
                log.warning("replay: reader stalled past the buffer; %d chunk(s) lost", overflowed)
                overflowed = 0
            time.sleep(max(0.0, due - time.monotonic()))
        yield ImuRecording(
            t_s=rec.t_s[sl],
            gyr_rad_s=rec.gyr_rad_s[sl],
            acc_m_s2=rec.acc_m_s2[sl],
            mag_ut=None if rec.mag_ut is None else rec.mag_ut[sl],
        )
