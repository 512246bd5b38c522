"""IMU sources behind one small protocol, chosen by a spec string (``open_source``):

* ``lsm6dso:i2c:BUS:ADDRESS`` / ``lsm6dso:spi:BUS:CS`` - an ST LSM6DSO on the Pi's bus, register
  level, FIFO with sensor timestamps (``lsm6dso.py``); ``+lis3mdl:i2c:BUS:ADDRESS[:axes=..]
  [:offset=X,Y,Z]`` after it adds an ST LIS3MDL magnetometer (``lis3mdl.py``);
* ``replay:PATH.csv`` - a recording in the recording format (``replay.py``);
* ``sim:seed=N,...`` - head and trunk signals rendered from a simulated head-on-trunk motion,
  with the ground truth kept (``sim.py``).

A source yields chunks (``ImuRecording``: hub-clock seconds, sensor axes, SI units) until it ends;
a source that loses its sensor raises ``SensorError`` from ``chunks`` and can be opened again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.errors import HubError

SensorRole = Literal["head", "trunk"]


class SensorError(HubError):
    """A sensor that cannot be opened or stopped answering (names the source spec)."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(f"sensor {spec}: {reason}")
        self.spec, self.reason = spec, reason


@dataclass(frozen=True)
class SensorRanges:
    """Full-scale ranges: a sample at (or beyond) them is saturated."""

    gyr_rad_s: float = math.radians(2000.0)
    acc_m_s2: float = 16 * 9.80665


class ImuSource(Protocol):
    spec: str
    ranges: SensorRanges
    # source seconds per wall second: 1 for a live sensor, the replay speed for a paced replay,
    # None for a source read as fast as it goes (its arrival times say nothing)
    pace: float | None
    # how long (source seconds) the source holds samples while its reader is stalled: a
    # stall shorter than this loses no sample (the LSM6DSO FIFO, a paced replay's chunk queue)
    buffer_s: float

    def chunks(self) -> Iterator[ImuRecording]:
        """Blocking: successive chunks of samples, in time order as the sensor delivered them."""
        ...

    def close(self) -> None: ...


def open_source(
    spec: str, role: SensorRole, realtime: bool = False, speed: float = 1.0
) -> ImuSource:
    """The source a spec string names; ``role`` picks the sensor of a simulated pair.
    ``realtime`` paces replay and simulation to the wall clock (the daemon), ``speed`` times
    faster than it; off, they run as fast as they are read (replay and tests)."""
    kind, _, rest = spec.partition(":")
    if kind == "replay":
        from edge_runtime.sensors.replay import ReplaySource

        return ReplaySource(rest, realtime=realtime, speed=speed)
    if kind == "sim":
        from edge_runtime.sensors.sim import SimSource

        return SimSource.from_spec(rest, role, realtime=realtime, speed=speed)
    if kind == "lsm6dso":
        from edge_runtime.sensors.lsm6dso import Lsm6dsoSource

        return Lsm6dsoSource.from_spec(rest)
    raise SensorError(
        spec, "unknown source kind; use lsm6dso:i2c:1:0x6a, replay:PATH or sim:seed=N"
    )
