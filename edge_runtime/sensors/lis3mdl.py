"""ST LIS3MDL 3-axis magnetometer beside an LSM6DSO, register level: the hub's heading over
hours of wear.

Without a magnetometer nothing observes the rotation about the vertical, and a 6-axis hub trusts
a calibration's neck angles for only ``six_axis_trust_s`` (``hub.tracking``); with one, VQF's 9D
filter holds the heading for whole sessions (``cervical bench wear-drift``: axial p95 4.3 deg
after 30 min of free-living wear, against 175 deg without).

Spec: after the LSM6DSO's, ``+lis3mdl:i2c:BUS:ADDRESS`` (address 0x1c or 0x1e), with optional
``:axes=...`` (the magnetometer's axes in the LSM6DSO's, e.g. ``axes=-y+x+z`` when the board
mounts it turned; default ``+x+y+z``) and ``:offset=X,Y,Z`` (the board's hard-iron field in µT,
subtracted; ``cervical edge mag-offset`` measures it from a recording turned through many
orientations). Example: ``lsm6dso:i2c:1:0x6a+lis3mdl:i2c:1:0x1c:offset=12.5,-3.0,40.1``.

The chip has no FIFO and no sample timestamps: it runs continuously at 80 Hz (ultra-high
performance on every axis, ±4 gauss: the earth's field is 25-65 µT), and the LSM6DSO source reads
its latest value each time it reads its own FIFO (every 50 ms). The IMU samples between two
magnetometer reads get the field interpolated between them, on the hub's clock: VQF follows the
field with a 4 s time constant, so that tens of milliseconds of latency are of no consequence.
Register map and scale: LIS3MDL datasheet DocID024204 rev 6.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_runtime.sensors import SensorError
from edge_runtime.sensors.buses import RegisterBus

FloatArray = npt.NDArray[np.float64]

WHO_AM_I = 0x0F
WHO_AM_I_VALUE = 0x3D
CTRL_REG1, CTRL_REG2, CTRL_REG3, CTRL_REG4, CTRL_REG5 = 0x20, 0x21, 0x22, 0x23, 0x24
STATUS_REG = 0x27
OUT_X_L = 0x28
I2C_AUTO_INCREMENT = 0x80  # the sub-address's MSB: a multi-byte read walks the registers

CTRL_REG1_VALUE = (0b11 << 5) | (0b111 << 2)  # OM = ultra-high performance (XY), DO = 80 Hz
CTRL_REG2_SOFT_RST = 0x04
CTRL_REG2_VALUE = 0b00 << 5  # FS = +-4 gauss
CTRL_REG3_VALUE = 0b00  # MD = continuous conversion
CTRL_REG4_VALUE = 0b11 << 2  # OMZ = ultra-high performance (Z), little-endian output
CTRL_REG5_VALUE = 0x40  # BDU: the 6 output bytes come from one sample
STATUS_ZYXDA = 0x08
UT_PER_LSB = 100.0 / 6842.0  # 6842 LSB/gauss at +-4 gauss; 1 gauss = 100 µT
RANGE_UT = 400.0


@dataclass(frozen=True)
class MagnetometerSettings:
    """Where the magnetometer is and how its axes and hard-iron field map onto the IMU's."""

    bus: int
    address: int
    axes: FloatArray  # (3, 3): IMU axes from magnetometer axes
    offset_ut: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def parse(cls, text: str) -> MagnetometerSettings:
        """``i2c:BUS:ADDRESS[:axes=+x+y+z][:offset=X,Y,Z]`` (module docstring)."""
        spec = f"lis3mdl:{text}"
        parts = text.split(":")
        if len(parts) < 3 or parts[0] != "i2c":
            raise SensorError(spec, "expected lis3mdl:i2c:BUS:ADDRESS[:axes=..][:offset=X,Y,Z]")
        try:
            bus, address = int(parts[1]), int(parts[2], 0)
        except ValueError as exc:
            raise SensorError(spec, f"bus and address must be numbers ({exc})") from exc
        axes, offset = np.eye(3), (0.0, 0.0, 0.0)
        for option in parts[3:]:
            key, sep, value = option.partition("=")
            if key == "axes" and sep:
                axes = _axes(spec, value)
            elif key == "offset" and sep:
                offset = _offset(spec, value)
            else:
                raise SensorError(spec, f"unknown option {option!r} (axes=..., offset=X,Y,Z)")
        return cls(bus, address, axes, offset)


def _axes(spec: str, text: str) -> FloatArray:
    found = re.fullmatch(r"([+-][xyz])([+-][xyz])([+-][xyz])", text)
    if not found or len({g[1] for g in found.groups()}) != 3:
        raise SensorError(spec, f"axes={text!r}: give each of x, y, z once with a sign (+x-y-z)")
    out = np.zeros((3, 3))
    for row, signed in enumerate(found.groups()):
        out[row, "xyz".index(signed[1])] = 1.0 if signed[0] == "+" else -1.0
    return out


def _offset(spec: str, text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and abs(v) < RANGE_UT for v in values):
        raise SensorError(spec, f"offset={text!r}: three numbers in µT, each within ±{RANGE_UT:g}")
    return (values[0], values[1], values[2])


class Lis3mdl:
    """The chip on a ``RegisterBus``: configured at open, read on demand."""

    def __init__(self, bus: RegisterBus, settings: MagnetometerSettings, spec: str) -> None:
        self.bus, self.settings, self.spec = bus, settings, spec
        try:
            who = bus.read(WHO_AM_I, 1)[0]
            if who != WHO_AM_I_VALUE:
                raise SensorError(spec, f"WHO_AM_I is 0x{who:02x}, a LIS3MDL answers 0x3d")
            bus.write(CTRL_REG2, CTRL_REG2_SOFT_RST)
            for register, value in (
                (CTRL_REG2, CTRL_REG2_VALUE),
                (CTRL_REG1, CTRL_REG1_VALUE),
                (CTRL_REG4, CTRL_REG4_VALUE),
                (CTRL_REG5, CTRL_REG5_VALUE),
                (CTRL_REG3, CTRL_REG3_VALUE),
            ):
                bus.write(register, value)
        except OSError as exc:
            raise SensorError(spec, f"no answer on the bus ({exc})") from exc
        self.last_ut: FloatArray | None = None

    def read_ut(self) -> FloatArray | None:
        """The latest field in the IMU's axes (µT), hard iron removed; the previous one when the
        chip has no new sample; None before its first."""
        try:
            if self.bus.read(STATUS_REG, 1)[0] & STATUS_ZYXDA:
                raw = self.bus.read(OUT_X_L | I2C_AUTO_INCREMENT, 6)
                counts = np.frombuffer(raw, dtype="<i2").astype(np.float64)
                field = self.settings.axes @ (counts * UT_PER_LSB)
                self.last_ut = field - np.asarray(self.settings.offset_ut)
        except OSError as exc:
            raise SensorError(self.spec, f"magnetometer stopped answering ({exc})") from exc
        return self.last_ut

    def close(self) -> None:
        self.bus.close()


def hard_iron_offset_ut(mag_ut: FloatArray, min_spread_ut: float = 20.0) -> FloatArray:
    """The centre of the sphere the field readings lie on (least squares): a board's own field,
    which turns with the sensor while the earth's does not. The readings must come from many
    orientations (turn the sensor through every direction): ``min_spread_ut`` is the least
    spread of readings per axis accepted."""
    m = np.asarray(mag_ut, dtype=np.float64)
    m = m[np.isfinite(m).all(axis=1)]
    if len(m) < 10:
        raise ValueError(f"{len(m)} finite magnetometer readings; at least 10 are needed")
    spread = m.max(axis=0) - m.min(axis=0)
    if (spread < min_spread_ut).any():
        raise ValueError(
            "the readings span "
            + ", ".join(f"{s:.0f}" for s in spread)
            + f" µT per axis (at least {min_spread_ut:g} each is needed): turn the sensor "
            "through many more orientations"
        )
    # |m - c|^2 = r^2  <=>  2 m.c + (r^2 - |c|^2) = |m|^2 : linear in (c, k)
    a = np.hstack([2 * m, np.ones((len(m), 1))])
    solution, *_ = np.linalg.lstsq(a, (m**2).sum(axis=1), rcond=None)
    return np.asarray(solution[:3])
