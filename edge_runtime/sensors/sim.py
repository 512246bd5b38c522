"""``sim:seed=N[,restrict=S1+S2][,ratio=F][,reach=F][,repeats=K][,mag_disturbance_ut=U]
[,rate_hz=R]``: head and trunk IMU signals rendered from a simulated head-on-trunk motion
(``imu_sim``): a warm-up, the calibration (neutral hold, nod) and the range-of-motion
protocol, ``repeats`` times. Both roles of one spec render the same session (same seed), so a
head and a trunk source pair up.

Amplitudes are ``reach`` times a typical adult's active range per direction; a restricted
sector reaches ``ratio`` (default half) of it. The ground truth (``session.neck_rotation``) is
kept on the source.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from edge_runtime.contracts.neck_angles import rotation_from_neck_angles
from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.contracts.rom_assessment import SECTORS
from edge_runtime.imu_sim import SimulatedSession, SimulationSetup, simulate_imus
from edge_runtime.sensors import SensorError, SensorRanges, SensorRole
from edge_runtime.sensors.replay import REPLAY_BUFFER_S, chunked
from edge_runtime.synthetic import WARMUP_S, protocol_angles

# the reference model's personal envelope along each sector's centre (deg, `cervical envelope`
# for the reference body, 54-node grid): the simulated wearer is healthy unless restricted
TYPICAL_RANGE_DEG = {
    "extension": 71.8,
    "extension_right_bend": 55.7,
    "right_bend": 39.0,
    "flexion_right_bend": 55.7,
    "flexion": 48.4,
    "flexion_left_bend": 55.7,
    "left_bend": 39.0,
    "extension_left_bend": 55.7,
    "left_rotation": 62.5,
    "right_rotation": 62.4,
}


@dataclass(frozen=True)
class SimSpec:
    seed: int = 0
    restrict: tuple[str, ...] = ()
    ratio: float = 0.5  # of the range a restricted sector reaches
    reach: float = 0.95
    repeats: int = 1
    mag_disturbance_ut: float = 0.0
    rate_hz: float = 100.0
    setup: SimulationSetup = field(default_factory=SimulationSetup)

    @classmethod
    def parse(cls, text: str) -> SimSpec:
        spec = f"sim:{text}"
        values: dict[str, object] = {}
        for item in filter(None, text.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise SensorError(spec, f"parameter {item!r} needs a value (key=value)")
            try:
                if key == "seed" or key == "repeats":
                    values[key] = int(value)
                elif key in ("reach", "ratio", "mag_disturbance_ut", "rate_hz"):
                    values[key] = float(value)
                elif key == "restrict":
                    values[key] = tuple(filter(None, value.split("+")))
                else:
                    raise SensorError(spec, f"unknown parameter {key!r}")
            except ValueError as exc:
                raise SensorError(spec, f"{key} = {value!r} is not a number") from exc
        parsed = cls(**values)  # type: ignore[arg-type]
        unknown = sorted(set(parsed.restrict) - set(SECTORS))
        if unknown:
            raise SensorError(spec, f"restrict names unknown sectors {unknown}; known: {SECTORS}")
        if not 0 < parsed.reach <= 1.2 or parsed.repeats < 1 or not 20 <= parsed.rate_hz <= 1000:
            raise SensorError(spec, "reach must be in (0, 1.2], repeats >= 1, rate_hz 20-1000")
        if not 0 < parsed.ratio <= 1:
            raise SensorError(spec, f"ratio = {parsed.ratio}: must be in (0, 1]")
        return parsed

    def amplitudes_rad(self) -> dict[str, float]:
        return {
            s: math.radians(
                TYPICAL_RANGE_DEG[s] * self.reach * (self.ratio if s in self.restrict else 1)
            )
            for s in SECTORS
        }


@dataclass(frozen=True, eq=False)
class SimulatedProtocol:
    session: SimulatedSession
    truth_angles_rad: np.ndarray  # (N, 3) contract neck angles
    nod_window_s: tuple[float, float]  # within each repeat, from the protocol's start
    protocol_start_s: tuple[float, ...]  # start of each repeat's protocol (after its warm-up)


@lru_cache(maxsize=4)
def simulate_protocol(spec: SimSpec) -> SimulatedProtocol:
    _, angles, nod_window, _ = protocol_angles(spec.amplitudes_rad())
    if spec.rate_hz != 100.0:  # the protocol is defined at 100 Hz: resample its time axis
        t100 = np.arange(len(angles)) / 100.0
        t = np.arange(0.0, t100[-1], 1.0 / spec.rate_hz)
        angles = np.stack([np.interp(t, t100, angles[:, k]) for k in range(3)], axis=1)
    warmup = np.zeros((int(WARMUP_S * spec.rate_hz), 3))
    pieces: list[np.ndarray] = []
    starts: list[float] = []
    for _ in range(spec.repeats):
        starts.append(sum(len(p) for p in pieces) / spec.rate_hz + WARMUP_S)
        pieces += [warmup, angles]
    truth = np.concatenate(pieces)
    t = np.arange(len(truth)) / spec.rate_hz
    setup = replace(spec.setup, calm_s=WARMUP_S + 3.0, mag_disturbance_ut=spec.mag_disturbance_ut)
    session = simulate_imus(t, rotation_from_neck_angles(truth), setup, seed=spec.seed)
    return SimulatedProtocol(session, truth, nod_window, tuple(starts))


class SimSource:
    def __init__(
        self, spec: SimSpec, role: SensorRole, realtime: bool = False, speed: float = 1.0
    ) -> None:
        self.sim = spec
        self.spec = f"sim:seed={spec.seed}"
        self.ranges = SensorRanges(
            gyr_rad_s=math.radians(spec.setup.errors.gyr_range_deg_s),
            acc_m_s2=spec.setup.errors.acc_range_m_s2,
        )
        self.role, self.realtime, self.speed = role, realtime, speed
        self.pace: float | None = speed if realtime else None
        self.buffer_s = REPLAY_BUFFER_S
        self.protocol = simulate_protocol(spec)

    @classmethod
    def from_spec(
        cls, text: str, role: SensorRole, realtime: bool = False, speed: float = 1.0
    ) -> SimSource:
        return cls(SimSpec.parse(text), role, realtime, speed)

    @property
    def recording(self) -> ImuRecording:
        s = self.protocol.session
        return s.head if self.role == "head" else s.trunk

    def chunks(self) -> Iterator[ImuRecording]:
        yield from chunked(self.recording, 0.5, self.realtime, self.speed, self.buffer_s)

    def close(self) -> None:
        pass
