"""From two sensors' sample streams to paired frames on one grid, with every defect flagged.

Each sensor's samples (hub-clock timestamps) are placed on a common grid at the hub rate
(index = round((t - t0) * rate)). What can go wrong, and what happens:

* a sample missing (dropped by the bus, a FIFO overrun): the frame is filled with NaN, DROPPED;
  a gap of more than ``jump_s`` also marks TIME_JUMP on the frame where data resumes;
* a timestamp that repeats or goes backwards: the sample is discarded, TIME_REVERSED on the
  next frame; after ``rebase_s`` of nothing but backwards samples (the sensor's clock was reset)
  its clock is re-anchored to continue where it left off;
* NaN/inf values: NON_FINITE; an axis at full scale: SATURATED (values kept, frame not used);
* a sensor that is *silent* (below): the frames it can no longer deliver are filled,
  SENSOR_LOST, and its samples that arrive later for those frames are discarded.

Silence is judged in time, never by how far the other sensor's data has run ahead (a reader
that stalls while the other goes on is not a lost sensor):

* by the sensor's own timestamps: a gap of more than ``lost_s`` between two of its samples is
  marked SENSOR_LOST as well as DROPPED;
* by arrival (``Arrival``: when the reader took each chunk, on the source's time scale, so a
  replay at 10x counts ten source seconds per wall second): a sensor that has delivered nothing
  for longer than its buffer (``buffer_s``: the LSM6DSO FIFO, the replay's chunk queue) plus
  ``lost_s`` has lost samples for good; the frames older than its buffer are filled. A stall
  shorter than the buffer loses nothing: the buffered samples arrive late and are paired.
  Chunks without arrival times (offline replays, unpaced sources) are judged by timestamps
  only;
* a sensor more than ``max_lag_s`` of frames behind the other is lost whatever the clocks say
  (bounds the memory of frames waiting for their pair).

Gaps are kept as counts until taken, so a long outage costs no memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.hub_records import (
    DROPPED,
    NON_FINITE,
    SATURATED,
    SENSOR_LOST,
    TIME_JUMP,
    TIME_REVERSED,
)
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.sensors import SensorRanges, SensorRole

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
SATURATION_FRACTION = 0.999


@dataclass(frozen=True, eq=False)
class SensorFrames:
    gyr_rad_s: FloatArray  # (n, 3), NaN where missing
    acc_m_s2: FloatArray
    mag_ut: FloatArray  # (n, 3), NaN where missing or absent


@dataclass(frozen=True, eq=False)
class FrameBlock:
    index0: int  # grid index of the first frame
    t_s: FloatArray  # (n,) grid times on the hub clock
    head: SensorFrames
    trunk: SensorFrames
    flags: npt.NDArray[np.uint16]  # (n,) hub_records flag bits

    def __len__(self) -> int:
        return len(self.t_s)

    def slice(self, start: int, stop: int) -> FrameBlock:
        def cut(s: SensorFrames) -> SensorFrames:
            return SensorFrames(
                s.gyr_rad_s[start:stop], s.acc_m_s2[start:stop], s.mag_ut[start:stop]
            )

        return FrameBlock(
            self.index0 + start,
            self.t_s[start:stop],
            cut(self.head),
            cut(self.trunk),
            self.flags[start:stop],
        )


@dataclass(frozen=True)
class Arrival:
    """When a reader took a chunk from its source, and how long that source holds samples."""

    at_s: float  # monotonic wall clock times the source's pace (source seconds)
    buffer_s: float  # a reader stalled this long (source seconds) loses no sample


@dataclass
class _Segment:
    count: int
    data: FloatArray | None  # (count, 9): gyr, acc, mag; None: a gap
    flags: npt.NDArray[np.uint16]


@dataclass
class SensorGrid:
    """One sensor's samples on the grid, waiting to be paired."""

    role: SensorRole
    ranges: SensorRanges
    rate_hz: float
    rebase_s: float = 2.0
    jump_s: float = 0.5
    lost_s: float = 1.0  # a gap this long in the sensor's own timestamps is a loss
    next_index: int = 0  # grid index the next pushed sample should land on
    offset_s: float = 0.0  # added to this sensor's timestamps (re-anchoring)
    has_magnetometer: bool = False
    _segments: list[_Segment] = field(default_factory=list)
    _pending_flags: int = 0
    _reversed_run: int = 0
    _lost_until: int = 0  # frames filled as lost: samples for them arrive late, are discarded
    last_arrival_s: float | None = None  # source seconds (``Arrival``) of its latest chunk
    buffer_s: float = 0.0

    @property
    def available(self) -> int:
        return sum(s.count for s in self._segments)

    def push(self, chunk: ImuRecording, t0_s: float) -> None:
        """Place a chunk's samples on the grid. A clock that stays behind for ``rebase_s`` (the
        sensor reset its counter) is re-anchored at the sample where that becomes clear (so the
        outcome does not depend on chunking), as if its samples had kept coming in real time."""
        if len(chunk.t_s) == 0:
            return
        found = self._rebase_point(chunk, t0_s)
        if found is None:
            self._place(chunk, t0_s)
            return
        at, discarded = found
        self._place(_cut(chunk, 0, at), t0_s)
        raw = float(chunk.t_s[at])
        # the discarded samples came in real time: they become a gap, keeping the two sensors
        # aligned with each other
        expected = t0_s + (self.next_index + discarded) / self.rate_hz
        log.warning(
            "%s sensor: its clock went back %.3f s and stayed there; re-anchored",
            self.role,
            expected - raw - self.offset_s,
        )
        self.offset_s = expected - raw
        self._reversed_run = 0
        if discarded:  # a gap the hub made, not a silence of the sensor
            self._append_gap(discarded, DROPPED)
            self.next_index += discarded
            if discarded > self.jump_s * self.rate_hz:
                self._pending_flags |= TIME_JUMP
        self.push(_cut(chunk, at, len(chunk.t_s)), t0_s)

    def _indices(
        self, chunk: ImuRecording, t0_s: float
    ) -> tuple[FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Grid index of each sample, which to keep (strictly after everything before it), and
        which arrived late for frames already filled as lost."""
        t = chunk.t_s + self.offset_s
        with np.errstate(invalid="ignore"):
            idx = np.where(np.isfinite(t), np.round((t - t0_s) * self.rate_hz), -np.inf)
        running = np.maximum.accumulate(np.concatenate([[self.next_index - 1], idx]))[:-1]
        late = (idx < self._lost_until) & np.isfinite(idx)
        return idx, idx > running, late

    def _rebase_point(self, chunk: ImuRecording, t0_s: float) -> tuple[int, int] | None:
        """The sample at which ``rebase_s`` of consecutive backwards samples is reached, and
        how many were discarded before it."""
        _, keep, late = self._indices(chunk, t0_s)
        backwards = ~keep & ~late & np.isfinite(chunk.t_s)
        limit = self.rebase_s * self.rate_hz
        run = self._reversed_run
        for k in range(len(backwards)):
            run = run + 1 if backwards[k] else 0
            if run > limit:
                return k, run - 1
        self._reversed_run = run
        return None

    def _place(self, chunk: ImuRecording, t0_s: float) -> None:
        if len(chunk.t_s) == 0:
            return
        mag = chunk.mag_ut
        if mag is not None:
            self.has_magnetometer = True
        else:
            mag = np.full((len(chunk.t_s), 3), np.nan)
        values = np.concatenate([chunk.gyr_rad_s, chunk.acc_m_s2, mag], axis=1)
        idx, keep, late = self._indices(chunk, t0_s)
        if late.any():  # the frames they belong to are already out as SENSOR_LOST
            values, idx, keep = values[~late], idx[~late], keep[~late]
        kept_idx = idx[keep].astype(np.int64)
        kept = values[keep]
        # a discarded sample marks the next kept one (or the next chunk's first)
        positions = np.flatnonzero(keep)
        after = np.searchsorted(positions, np.flatnonzero(~keep))
        if kept_idx.size == 0:
            if (~keep).any():
                self._pending_flags |= TIME_REVERSED
            return
        sample_flags = self._sample_flags(kept)
        if after.size:
            marked = after[after < len(kept)]
            sample_flags[marked] |= TIME_REVERSED
            if (after >= len(kept)).any():
                self._pending_flags |= TIME_REVERSED
        previous = np.concatenate([[self.next_index - 1], kept_idx[:-1]])
        gaps = kept_idx - previous - 1
        start = 0
        for j in np.flatnonzero(gaps > 0):
            self._append_data(kept[start:j], sample_flags[start:j])
            silent = gaps[j] > self.lost_s * self.rate_hz  # by its own clock
            self._append_gap(int(gaps[j]), DROPPED | (SENSOR_LOST if silent else 0))
            if gaps[j] > self.jump_s * self.rate_hz:
                self._pending_flags |= TIME_JUMP
            start = int(j)
        self._append_data(kept[start:], sample_flags[start:])
        self.next_index = int(kept_idx[-1]) + 1

    def _sample_flags(self, values: FloatArray) -> npt.NDArray[np.uint16]:
        flags = np.zeros(len(values), dtype=np.uint16)
        core = values[:, :6]
        flags[~np.isfinite(core).all(axis=1)] |= NON_FINITE
        if self.has_magnetometer:
            flags[~np.isfinite(values[:, 6:]).all(axis=1)] |= NON_FINITE
        with np.errstate(invalid="ignore"):
            sat = (np.abs(core[:, :3]) >= SATURATION_FRACTION * self.ranges.gyr_rad_s).any(axis=1)
            sat |= (np.abs(core[:, 3:]) >= SATURATION_FRACTION * self.ranges.acc_m_s2).any(axis=1)
        flags[sat] |= SATURATED
        return flags

    def _append_data(self, values: FloatArray, flags: npt.NDArray[np.uint16]) -> None:
        if len(values):
            flags = flags.copy()
            flags[0] |= self._pending_flags
            self._pending_flags = 0
            self._segments.append(_Segment(len(values), values, flags))

    def _append_gap(self, count: int, flag: int) -> None:
        flags = np.full(count, flag, dtype=np.uint16)
        self._segments.append(_Segment(count, None, flags))

    def fill_lost(self, count: int) -> None:
        """The sensor is lost for the next ``count`` frames: fill them; late samples for them
        will be discarded (they land below ``next_index``)."""
        self._append_gap(count, SENSOR_LOST | DROPPED)
        self.next_index += count
        self._lost_until = self.next_index

    def take(self, n: int) -> tuple[FloatArray, npt.NDArray[np.uint16]]:
        data = np.full((n, 9), np.nan)
        flags = np.zeros(n, dtype=np.uint16)
        pos = 0
        while pos < n:
            seg = self._segments[0]
            k = min(seg.count, n - pos)
            if seg.data is not None:
                data[pos : pos + k] = seg.data[:k]
                seg.data = seg.data[k:]
            flags[pos : pos + k] = seg.flags[:k]
            seg.flags, seg.count = seg.flags[k:], seg.count - k
            if seg.count == 0:
                self._segments.pop(0)
            pos += k
        return data, flags


class FramePairer:
    """Pairs the head and trunk grids into frames (module docstring)."""

    def __init__(
        self,
        rate_hz: float,
        head: SensorRanges,
        trunk: SensorRanges,
        lost_s: float = 1.0,
        max_lag_s: float = 60.0,
    ) -> None:
        self.rate_hz, self.lost_s = rate_hz, lost_s
        self.max_lag_frames = max(1, round(max_lag_s * rate_hz))
        self.grids = {
            "head": SensorGrid("head", head, rate_hz, lost_s=lost_s),
            "trunk": SensorGrid("trunk", trunk, rate_hz, lost_s=lost_s),
        }
        self.t0_s: float | None = None
        self.emitted = 0
        self.now_s: float | None = None  # the latest arrival (source seconds)
        self._first_arrival_s: float | None = None

    def push(self, role: SensorRole, chunk: ImuRecording, arrival: Arrival | None = None) -> None:
        if arrival is not None:
            grid = self.grids[role]
            grid.buffer_s = arrival.buffer_s
            if len(chunk.t_s):
                grid.last_arrival_s = arrival.at_s
            self.now_s = arrival.at_s if self.now_s is None else max(self.now_s, arrival.at_s)
            if self._first_arrival_s is None:
                self._first_arrival_s = arrival.at_s
        if self.t0_s is None:
            finite = chunk.t_s[np.isfinite(chunk.t_s)]
            if finite.size == 0:
                return
            self.t0_s = float(finite[0])
        self.grids[role].push(chunk, self.t0_s)

    def silent_s(self, role: SensorRole) -> float | None:
        """How long the sensor has delivered nothing (source seconds; None: not known)."""
        if self.now_s is None:
            return None
        since = self.grids[role].last_arrival_s
        if since is None:
            since = self._first_arrival_s
        return None if since is None else self.now_s - since

    def _frames_lost(self, role: SensorRole, lag: int, flush: bool) -> int:
        """How many of the ``lag`` frames the other sensor has beyond this one are lost."""
        if flush:
            return lag
        grid = self.grids[role]
        if lag > self.max_lag_frames:
            return lag
        silent = self.silent_s(role)
        if silent is None or silent <= grid.buffer_s + self.lost_s:
            return 0
        return max(0, lag - round(grid.buffer_s * self.rate_hz))  # the buffer may still come

    def take(self, max_frames: int | None = None, flush: bool = False) -> FrameBlock | None:
        """The frames both sensors have delivered (all of them with ``flush``)."""
        head, trunk = self.grids["head"], self.grids["trunk"]
        for a, b in ((head, trunk), (trunk, head)):
            lag = b.available - a.available
            lost = self._frames_lost(a.role, lag, flush) if lag > 0 else 0
            if lost:
                a.fill_lost(lost)
        n = min(head.available, trunk.available)
        if max_frames is not None:
            n = min(n, max_frames)
        if n == 0 or self.t0_s is None:
            return None
        h, hf = head.take(n)
        tr, tf = trunk.take(n)
        index0 = self.emitted
        self.emitted += n
        t = self.t0_s + (index0 + np.arange(n)) / self.rate_hz
        return FrameBlock(
            index0=index0,
            t_s=t,
            head=SensorFrames(h[:, :3], h[:, 3:6], h[:, 6:]),
            trunk=SensorFrames(tr[:, :3], tr[:, 3:6], tr[:, 6:]),
            flags=(hf | tf).astype(np.uint16),
        )

    @property
    def has_magnetometers(self) -> bool:
        return self.grids["head"].has_magnetometer and self.grids["trunk"].has_magnetometer


def _cut(chunk: ImuRecording, start: int, stop: int) -> ImuRecording:
    mag = None if chunk.mag_ut is None else chunk.mag_ut[start:stop]
    return ImuRecording(
        chunk.t_s[start:stop], chunk.gyr_rad_s[start:stop], chunk.acc_m_s2[start:stop], mag
    )
