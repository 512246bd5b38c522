"""The IMU recording format (replay and tests): one CSV per sensor.

Columns ``t_s, gyr_x, gyr_y, gyr_z, acc_x, acc_y, acc_z`` and optionally ``mag_x, mag_y, mag_z``:
time in s, angular rate in rad/s, specific force in m/s², magnetic field in µT, all in the sensor's
own axes. Empty fields read as NaN (a dropped value), so bad samples survive a round trip and are
judged downstream rather than at parse time.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_runtime.contracts.errors import ContractError

FloatArray = npt.NDArray[np.float64]
IMU_COLUMNS = ("t_s", "gyr_x", "gyr_y", "gyr_z", "acc_x", "acc_y", "acc_z")
MAG_COLUMNS = ("mag_x", "mag_y", "mag_z")


class RecordingError(ContractError, ValueError):
    """A recording file that cannot be read (names the file, line and column)."""


@dataclass(frozen=True, eq=False)
class ImuRecording:
    t_s: FloatArray  # (N,)
    gyr_rad_s: FloatArray  # (N, 3)
    acc_m_s2: FloatArray  # (N, 3)
    mag_ut: FloatArray | None = None  # (N, 3)

    def __post_init__(self) -> None:
        n = self.t_s.shape[0]
        for name in ("gyr_rad_s", "acc_m_s2", "mag_ut"):
            a = getattr(self, name)
            if a is not None and a.shape != (n, 3):
                raise RecordingError(f"recording: {name} has shape {a.shape}, expected ({n}, 3)")

    @property
    def rate_hz(self) -> float:
        """Nominal sampling rate: the median interval's inverse, rounded to 1 µHz (so that a
        100 Hz recording's float timestamps give exactly 100.0, as a configured rate does)."""
        dt = np.diff(self.t_s)
        dt = dt[np.isfinite(dt) & (dt > 0)]
        if dt.size == 0:
            raise RecordingError("recording: fewer than two increasing timestamps")
        return round(1.0 / float(np.median(dt)), 6)

    def write_csv(self, path: Path) -> None:
        columns = IMU_COLUMNS + (MAG_COLUMNS if self.mag_ut is not None else ())
        parts = [self.t_s[:, None], self.gyr_rad_s, self.acc_m_s2]
        if self.mag_ut is not None:
            parts.append(self.mag_ut)
        data = np.concatenate(parts, axis=1)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            for row in data:
                w.writerow(["" if not math.isfinite(v) else repr(float(v)) for v in row])

    @classmethod
    def read_csv(cls, path: Path) -> ImuRecording:
        try:
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
        except OSError as e:
            raise RecordingError(f"{path}: cannot read: {e.strerror}") from e
        if not rows:
            raise RecordingError(f"{path}: empty file")
        header = tuple(c.strip() for c in rows[0])
        if header[: len(IMU_COLUMNS)] != IMU_COLUMNS or header[len(IMU_COLUMNS) :] not in (
            (),
            MAG_COLUMNS,
        ):
            raise RecordingError(
                f"{path}: header {','.join(header)!r} is not "
                f"{','.join(IMU_COLUMNS)}[,{','.join(MAG_COLUMNS)}]"
            )
        data = np.full((len(rows) - 1, len(header)), np.nan)
        for i, row in enumerate(rows[1:]):
            if len(row) != len(header):
                raise RecordingError(f"{path}:{i + 2}: {len(row)} fields, expected {len(header)}")
            for j, field in enumerate(row):
                if field.strip():
                    try:
                        data[i, j] = float(field)
                    except ValueError as e:
                        raise RecordingError(
                            f"{path}:{i + 2}: column {header[j]} = {field!r} is not a number"
                        ) from e
        return cls(
            t_s=data[:, 0],
            gyr_rad_s=data[:, 1:4],
            acc_m_s2=data[:, 4:7],
            mag_ut=data[:, 7:10] if len(header) > len(IMU_COLUMNS) else None,
        )
