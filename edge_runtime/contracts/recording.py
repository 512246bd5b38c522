"""The IMU recording format (replay and tests): one CSV per sensor.

Columns ``t_s, gyr_x, gyr_y, gyr_z, acc_x, acc_y, acc_z`` and optionally ``mag_x, mag_y, mag_z``:
time in s, angular rate in rad/s, specific force in m/s², magnetic field in µT, all in the sensor's
own axes. Empty fields read as NaN (a dropped value), so bad samples survive a round trip and are
judged downstream rather than at parse time.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_runtime.common.files import read_text
from edge_runtime.contracts.errors import ContractError

FloatArray = npt.NDArray[np.float64]
IMU_COLUMNS = ("t_s", "gyr_x", "gyr_y", "gyr_z", "acc_x", "acc_y", "acc_z")
MAG_COLUMNS = ("mag_x", "mag_y", "mag_z")
# |value| beyond which no IMU reading is possible (full scales are 35 rad/s, 160 m/s² and
# 5,000 µT at most; t_s: Unix time to the year 2286): a file with one is corrupt
PLAUSIBLE_LIMITS = {"t": 1e10, "gyr": 1e3, "acc": 1e4, "mag": 1e5}
MAX_REVERSED_FRACTION = 0.01


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
        """Read a recording; refused (RecordingError naming the file, line and column): not a
        regular UTF-8 file, a wrong header, no samples, a field that is not a number, a value
        beyond ``PLAUSIBLE_LIMITS`` (no sensor measures it: a corrupted file), or rows out of
        time order (more than ``MAX_REVERSED_FRACTION`` of the steps going back in time; a
        few reversed samples are a sensor's glitch, marked by the hub, not a sorting error)."""
        text = read_text(path, RecordingError)
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as e:
            raise RecordingError(f"{path}: not CSV ({e})") from None
        if not rows:
            raise RecordingError(f"{path}: empty file")
        header = tuple(c.strip() for c in rows[0])
        if header[: len(IMU_COLUMNS)] != IMU_COLUMNS or header[len(IMU_COLUMNS) :] not in (
            (),
            MAG_COLUMNS,
        ):
            shown = ",".join(header)[:200]
            raise RecordingError(
                f"{path}: header {shown!r} is not {','.join(IMU_COLUMNS)}[,{','.join(MAG_COLUMNS)}]"
            )
        if len(rows) < 3:
            raise RecordingError(f"{path}: {len(rows) - 1} sample(s); a recording needs at least 2")
        data = np.full((len(rows) - 1, len(header)), np.nan)
        limits = [PLAUSIBLE_LIMITS[c.split("_")[0]] for c in header]
        for i, row in enumerate(rows[1:]):
            if len(row) != len(header):
                raise RecordingError(f"{path}:{i + 2}: {len(row)} fields, expected {len(header)}")
            for j, field in enumerate(row):
                if field.strip():
                    try:
                        value = float(field)
                    except ValueError:
                        raise RecordingError(
                            f"{path}:{i + 2}: column {header[j]} = {field[:40]!r} is not a number"
                        ) from None
                    if not abs(value) <= limits[j]:  # NaN and inf fail too
                        raise RecordingError(
                            f"{path}:{i + 2}: column {header[j]} = {field[:40]} is beyond "
                            f"{limits[j]:g} (no sensor measures it: a corrupted file?)"
                        )
                    data[i, j] = value
        steps = np.diff(data[:, 0])
        steps = steps[np.isfinite(steps)]
        back = int((steps < 0).sum())
        if steps.size and back > MAX_REVERSED_FRACTION * steps.size:
            raise RecordingError(
                f"{path}: rows out of time order ({back} of {steps.size} steps go back in t_s); "
                "sort the file by t_s"
            )
        return cls(
            t_s=data[:, 0],
            gyr_rad_s=data[:, 1:4],
            acc_m_s2=data[:, 4:7],
            mag_ut=data[:, 7:10] if len(header) > len(IMU_COLUMNS) else None,
        )


def check_same_time_base(
    head: ImuRecording, trunk: ImuRecording, max_offset_s: float = 60.0
) -> None:
    """Two sensors' recordings of one session share a clock: their first samples lie within
    ``max_offset_s`` of each other (else the pairing would fill the whole offset with frames)."""
    t0 = [float(np.nanmin(r.t_s)) for r in (head, trunk)]
    if abs(t0[0] - t0[1]) > max_offset_s:
        raise RecordingError(
            f"head and trunk recordings start {abs(t0[0] - t0[1]):,.1f} s apart (head at "
            f"t = {t0[0]:g} s, trunk at t = {t0[1]:g} s): not one session's clock"
        )
