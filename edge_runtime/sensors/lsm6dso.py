"""ST LSM6DSO 6-axis IMU on the Pi's I2C (smbus2) or SPI (spidev) bus, register level.

Spec: ``lsm6dso:i2c:BUS:ADDRESS`` (address 0x6a or 0x6b) or ``lsm6dso:spi:BUS:CS``.

Samples come from the chip's FIFO, not from polling the output registers: the FIFO batches
gyroscope and accelerometer at 104 Hz with a timestamp word per batch (25 µs ticks of the chip's
own clock, trimmed by ``INTERNAL_FREQ_FINE``), so every sample carries the time it was taken
however late the hub reads it. Ranges: ±2000 deg/s (a fast head turn peaks at ~350 deg/s) and
±16 g. The FIFO holds 512 words, three per sample (gyroscope, accelerometer, timestamp): a
reader may stall ~1.6 s without losing a sample (``buffer_s``). A FIFO overrun (a longer stall)
is reported: its lost samples become a gap that downstream marks as dropped. Register map and
scale factors: LSM6DSO datasheet DS12140 rev 3.

No magnetometer: fusion runs 6D on this sensor alone, and the hub trusts a calibration's heading
for only ``six_axis_trust_s`` (``hub.tracking``). An LIS3MDL beside it (``+lis3mdl:...`` after the
spec, ``lis3mdl.py``) gives each sample the magnetic field too, and fusion runs 9D.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.sensors import SensorError, SensorRanges
from edge_runtime.sensors.buses import I2cBus, RegisterBus, SpiBus
from edge_runtime.sensors.lis3mdl import Lis3mdl, MagnetometerSettings

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]

# registers (DS12140 section 9)
FIFO_CTRL3, FIFO_CTRL4 = 0x09, 0x0A
WHO_AM_I = 0x0F
CTRL1_XL, CTRL2_G, CTRL3_C = 0x10, 0x11, 0x12
CTRL10_C = 0x19
FIFO_STATUS1 = 0x3A
INTERNAL_FREQ_FINE = 0x63
FIFO_DATA_OUT_TAG = 0x78
WHO_AM_I_VALUE = 0x6C

# settings: 104 Hz, +-16 g, +-2000 dps, FIFO continuous, timestamp every batch
ODR_104_HZ = 0b0100
CTRL1_XL_VALUE = (ODR_104_HZ << 4) | (0b01 << 2)  # FS_XL = 01: +-16 g
CTRL2_G_VALUE = (ODR_104_HZ << 4) | (0b11 << 2)  # FS_G = 11: +-2000 dps
CTRL3_C_BDU_IF_INC = 0x44
CTRL3_C_SW_RESET = 0x01
CTRL10_C_TIMESTAMP_EN = 0x20
FIFO_CTRL3_VALUE = (ODR_104_HZ << 4) | ODR_104_HZ  # batch gyro and accel at 104 Hz
FIFO_CTRL4_VALUE = (0b01 << 6) | 0b110  # timestamp every batch, continuous mode
FIFO_STATUS2_OVR_LATCHED = 0x08

TAG_GYRO, TAG_ACC, TAG_TIMESTAMP = 0x01, 0x02, 0x04
GYR_RAD_S_PER_LSB = math.radians(0.070)  # 70 mdps/LSB at +-2000 dps
ACC_M_S2_PER_LSB = 0.488e-3 * 9.80665  # 0.488 mg/LSB at +-16 g
TIMESTAMP_HZ = 40_000.0  # nominal; trimmed by INTERNAL_FREQ_FINE (0.15% per LSB)
WORD_BYTES = 7  # tag + 6 data bytes
MAX_WORDS_PER_READ = 4  # I2C block reads carry at most 32 bytes
FIFO_WORDS = 512  # the 3 KB FIFO (DS12140): 512 words of tag + 6 data bytes
WORDS_PER_SAMPLE = 3  # gyroscope + accelerometer + the timestamp of each batch


@dataclass
class FifoDecoder:
    """Turns FIFO words into timestamped samples; keeps the partial batch between reads."""

    timestamp_s_per_tick: float
    ticks: int | None = None  # unwrapped 32-bit timestamp of the current batch
    gyr: tuple[float, ...] | None = None
    acc: tuple[float, ...] | None = None

    def feed(self, words: bytes) -> list[tuple[float, tuple[float, ...], tuple[float, ...]]]:
        samples: list[tuple[float, tuple[float, ...], tuple[float, ...]]] = []
        for k in range(0, len(words) - WORD_BYTES + 1, WORD_BYTES):
            tag = words[k] >> 3
            data = words[k + 1 : k + WORD_BYTES]
            if tag == TAG_TIMESTAMP:
                raw = int.from_bytes(data[:4], "little")
                if self.ticks is None:
                    self.ticks = raw
                else:  # unwrap: the 32-bit counter wraps every ~30 h
                    self.ticks += (raw - self.ticks) % (1 << 32)
                self.gyr = self.acc = None
            elif tag in (TAG_GYRO, TAG_ACC):
                xyz = np.frombuffer(data, dtype="<i2").astype(np.float64)
                if tag == TAG_GYRO:
                    self.gyr = tuple(xyz * GYR_RAD_S_PER_LSB)
                else:
                    self.acc = tuple(xyz * ACC_M_S2_PER_LSB)
            if self.ticks is not None and self.gyr is not None and self.acc is not None:
                samples.append((self.ticks * self.timestamp_s_per_tick, self.gyr, self.acc))
                self.gyr = self.acc = None
        return samples


class Lsm6dsoSource:
    RATE_HZ = 104.0

    def __init__(
        self,
        bus: RegisterBus,
        spec: str,
        poll_s: float = 0.05,
        magnetometer: Lis3mdl | None = None,
    ) -> None:
        self.spec, self.bus, self.poll_s = spec, bus, poll_s
        self.magnetometer = magnetometer
        self._field: tuple[float, FloatArray] | None = None  # the last read: (hub time, µT)
        self.ranges = SensorRanges(gyr_rad_s=math.radians(2000.0), acc_m_s2=16 * 9.80665)
        self.pace: float | None = 1.0  # a live sensor: its time is the wall clock's
        self.buffer_s = FIFO_WORDS / WORDS_PER_SAMPLE / self.RATE_HZ
        try:
            who = bus.read(WHO_AM_I, 1)[0]
            if who != WHO_AM_I_VALUE:
                raise SensorError(spec, f"WHO_AM_I is 0x{who:02x}, an LSM6DSO answers 0x6c")
            self._configure()
            fine = int.from_bytes(bus.read(INTERNAL_FREQ_FINE, 1), "little", signed=True)
        except OSError as exc:
            raise SensorError(spec, f"no answer on the bus ({exc})") from exc
        self.decoder = FifoDecoder(1.0 / (TIMESTAMP_HZ * (1 + 0.0015 * fine)))
        self._offset_s: float | None = None  # hub monotonic time - sensor time

    @classmethod
    def from_spec(cls, text: str) -> Lsm6dsoSource:
        spec = f"lsm6dso:{text}"
        imu, plus, extra = text.partition("+")
        mag_settings = None
        if plus:
            kind, _, rest = extra.partition(":")
            if kind != "lis3mdl":
                raise SensorError(spec, f"{extra!r}: the chip beside it must be lis3mdl:...")
            mag_settings = MagnetometerSettings.parse(rest)
        parts = imu.split(":")
        try:
            if len(parts) == 3 and parts[0] in ("i2c", "spi"):
                magnetometer = None
                if mag_settings is not None:
                    mag_bus = I2cBus(mag_settings.bus, mag_settings.address)
                    magnetometer = Lis3mdl(mag_bus, mag_settings, spec)
                try:
                    if parts[0] == "i2c":
                        bus: RegisterBus = I2cBus(int(parts[1]), int(parts[2], 0))
                    else:
                        bus = SpiBus(int(parts[1]), int(parts[2]))
                    return cls(bus, spec, 0.05, magnetometer)
                except BaseException:
                    if magnetometer is not None:  # opened first: not left open behind an error
                        magnetometer.close()
                    raise
        except ValueError as exc:
            raise SensorError(spec, f"bus and address must be numbers ({exc})") from exc
        except (OSError, ImportError) as exc:
            raise SensorError(spec, f"cannot open the bus: {exc}") from exc
        raise SensorError(spec, "expected lsm6dso:i2c:BUS:ADDRESS or lsm6dso:spi:BUS:CS")

    def _configure(self) -> None:
        self.bus.write(CTRL3_C, CTRL3_C_SW_RESET)
        time.sleep(0.01)
        self.bus.write(CTRL3_C, CTRL3_C_BDU_IF_INC)
        self.bus.write(CTRL1_XL, CTRL1_XL_VALUE)
        self.bus.write(CTRL2_G, CTRL2_G_VALUE)
        self.bus.write(CTRL10_C, CTRL10_C_TIMESTAMP_EN)
        self.bus.write(FIFO_CTRL3, FIFO_CTRL3_VALUE)
        self.bus.write(FIFO_CTRL4, FIFO_CTRL4_VALUE)

    def read_fifo(self) -> ImuRecording:
        """Everything in the FIFO now, as samples on the hub's monotonic clock."""
        try:
            status = self.bus.read(FIFO_STATUS1, 2)
            count = status[0] | ((status[1] & 0x03) << 8)
            if status[1] & FIFO_STATUS2_OVR_LATCHED:
                log.warning("%s: FIFO overrun; the samples lost become a gap", self.spec)
            raw = bytearray()
            for start in range(0, count, MAX_WORDS_PER_READ):
                n = min(MAX_WORDS_PER_READ, count - start)
                raw += self.bus.read(FIFO_DATA_OUT_TAG, n * WORD_BYTES)
        except OSError as exc:
            raise SensorError(self.spec, f"stopped answering ({exc})") from exc
        samples = self.decoder.feed(bytes(raw))
        if not samples:
            return _empty()
        t = np.array([s[0] for s in samples])
        now = time.monotonic()
        if self._offset_s is None:  # anchor the sensor clock to the hub's at the first read
            self._offset_s = now - t[-1]
        return ImuRecording(
            t_s=t + self._offset_s,
            gyr_rad_s=np.array([s[1] for s in samples]),
            acc_m_s2=np.array([s[2] for s in samples]),
            mag_ut=None if self.magnetometer is None else self._field_at(t + self._offset_s, now),
        )

    def _field_at(self, t_s: FloatArray, now_s: float) -> FloatArray:
        """The magnetic field at each sample: interpolated between the previous read and this
        one (module docstring of ``lis3mdl``); NaN before the chip's first sample."""
        assert self.magnetometer is not None
        field = self.magnetometer.read_ut()
        if field is None:
            return np.full((len(t_s), 3), np.nan)
        before = self._field
        self._field = (now_s, field)
        if before is None or now_s <= before[0]:
            return np.repeat(field[None, :], len(t_s), axis=0)
        w = np.clip((t_s - before[0]) / (now_s - before[0]), 0.0, 1.0)[:, None]
        return np.asarray(before[1] + w * (field - before[1]))

    def chunks(self) -> Iterator[ImuRecording]:
        while True:
            chunk = self.read_fifo()
            if len(chunk.t_s):
                yield chunk
            time.sleep(self.poll_s)

    def close(self) -> None:
        self.bus.close()
        if self.magnetometer is not None:
            self.magnetometer.close()


def _empty() -> ImuRecording:
    return ImuRecording(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))
