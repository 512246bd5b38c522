"""Streaming neck kinematics: VQF per sensor, automatic calibration, filtered derivatives.

The offline path (``fusion.neck_kinematics_from_imus``) is the reference: given the same
calibration windows, this streaming path produces the same angles and derivatives (tested).

Calibration is found in the stream, so a wearer needs nobody to press a button: after
``settle_s`` (the filters converge), the latest window of ``neutral_s`` in which the head did not
move on the trunk (relative rotation spread < ``still_deg``) is the neutral hold; the first
excursion beyond ``nod_min_deg`` from it is the nod, which ends when the head is back within
``nod_return_deg`` (or after ``nod_max_s``). A nod that does not define the lateral axis (a
rotation, say) is rejected with a logged reason and the search starts again.

Frames come out in order, delayed by the calibration wait and the derivative filter's half
window; frames that can no longer be calibrated come out flagged UNCALIBRATED with NaN angles.

*6-axis heading.* Without a magnetometer nothing observes the rotation about the vertical, so
the head-on-trunk heading drifts with the two gyroscopes' bias changes (warm-up, random walk):
over free-living wear (``cervical bench wear-drift``, 20 simulated wearers) the axial rotation's
95th-percentile error is 1.0 deg in the first 30 s after calibration, 3.1 deg at 30-60 s, 6.4
deg at 60-90 s and 58 deg after 6 min, and extension and bending follow once the heading is
lost. Gyroscope-only estimates of the relative drift during the neck's still spells do not
bound it (postural sway of ~1 deg hides the bias change within a hold). So a 6-axis tracker
trusts its calibration for ``six_axis_trust_s`` (75 s) after the neutral hold, long enough for
a guided test's directions (over it: axial p95 3.2-5.0 deg on three sets of simulated wearers;
90 s gave 4.4-7.0); later frames come out UNCALIBRATED, and the session after it (the pipeline)
starts a new tracker, which looks for a new neutral hold and nod. With a magnetometer
the heading holds for the whole session (axial p95 4.3 deg after 30 min).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_runtime.common.rotations import matrix_to_rotvec, mean_rotation, quat_to_matrix
from edge_runtime.contracts.hub_records import INVALID, UNCALIBRATED
from edge_runtime.contracts.neck_angles import (
    DERIVATIVE_POLYORDER,
    DERIVATIVE_WINDOW_S,
    neck_angles_from_rotation,
    neck_kinematics,
)
from edge_runtime.contracts.record_payloads import CalibrationInfo
from edge_runtime.fusion import (
    VQF_PARAMS,
    CalibrationError,
    NeckCalibration,
    NodDirection,
    calibrate,
)
from edge_runtime.hub.frames import FrameBlock, SensorFrames

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
Flags = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class CalibrationSettings:
    settle_s: float = 10.0
    neutral_s: float = 2.0
    still_deg: float = 2.0
    nod_min_deg: float = 12.0
    nod_return_deg: float = 5.0
    nod_max_s: float = 6.0
    nod_direction: NodDirection = "auto"
    trunk_right_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    max_wait_s: float = 120.0  # a neutral hold with no nod after it is given up
    # 6-axis sensors (no magnetometer): how long after the neutral hold the heading, and so the
    # neck angles, are trusted (module docstring); None: as long as the session lasts
    six_axis_trust_s: float | None = 75.0


def heading_horizon_s(
    neutral_start_s: float, use_magnetometer: bool, cal: CalibrationSettings | None = None
) -> float | None:
    """Until when (same clock) a calibration whose neutral hold began at ``neutral_start_s`` is
    trusted: None for as long as the session lasts (a magnetometer, or no horizon set)."""
    trust_s = (cal or CalibrationSettings()).six_axis_trust_s
    return None if use_magnetometer or trust_s is None else neutral_start_s + trust_s


@dataclass(frozen=True, eq=False)
class KinematicBlock:
    t_s: FloatArray  # (n,)
    flags: Flags  # (n,)
    kinematics: FloatArray  # (n, 9): angles (rad), velocities (rad/s), accelerations (rad/s^2)


class StreamingOrientation:
    """One sensor's VQF, fed block by block (its state carries over); non-finite samples are
    replaced by the last finite one, as the offline path does."""

    def __init__(self, rate_hz: float, use_magnetometer: bool) -> None:
        from vqf import VQF

        self._vqf = VQF(1.0 / rate_hz, **VQF_PARAMS)
        self.use_magnetometer = use_magnetometer
        self._last: FloatArray | None = None

    def update(self, frames: SensorFrames) -> FloatArray:
        """(n, 3, 3) sensor-to-earth (ENU) rotations."""
        data = np.concatenate([frames.gyr_rad_s, frames.acc_m_s2, frames.mag_ut], axis=1)
        width = 9 if self.use_magnetometer else 6
        data = np.ascontiguousarray(self._hold(data[:, :width]))
        gyr, acc = np.ascontiguousarray(data[:, :3]), np.ascontiguousarray(data[:, 3:6])
        if self.use_magnetometer:
            out = self._vqf.updateBatch(gyr, acc, np.ascontiguousarray(data[:, 6:9]))["quat9D"]
        else:
            out = self._vqf.updateBatch(gyr, acc)["quat6D"]
        return quat_to_matrix(np.asarray(out))

    def _hold(self, data: FloatArray) -> FloatArray:
        bad = np.asarray(~np.isfinite(data).all(axis=1))
        if not bad.any():
            self._last = data[-1].copy()
            return data
        out = data.copy()
        for i in range(len(out)):
            if bad[i]:
                out[i] = self._last if self._last is not None else _AT_REST[: out.shape[1]]
            else:
                self._last = out[i].copy()
        return out


_AT_REST = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 9.81, 0.0, 20.0, -40.0])


class StreamingDerivatives:
    """``neck_kinematics`` over a stream: each frame's derivatives equal the offline result on
    the whole valid run it belongs to. Frames within half a window of the newest are held back
    until their window is complete (or their run ends); a run shorter than a window is held
    whole (its fit spans all of it)."""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self.window = max(DERIVATIVE_POLYORDER + 2, round(DERIVATIVE_WINDOW_S * rate_hz) | 1)
        self.half = self.window // 2
        self._t = np.zeros(0)
        self._flags: Flags = np.zeros(0, dtype=np.uint16)
        self._angles = np.zeros((0, 3))
        self._valid = np.zeros(0, dtype=bool)
        self._context = 0  # leading frames already emitted, kept as filter context
        self._truncated = False  # the buffer's first run began before the buffer

    def push(
        self,
        t: FloatArray,
        flags: Flags,
        angles: FloatArray,
        valid: npt.NDArray[np.bool_],
        flush: bool = False,
    ) -> KinematicBlock:
        self._t = np.concatenate([self._t, t])
        self._flags = np.concatenate([self._flags, flags])
        self._angles = np.concatenate([self._angles, angles])
        self._valid = np.concatenate([self._valid, valid])
        ready = len(self._t) if flush else self._ready_until()
        out = neck_kinematics(self._angles, self.rate_hz, self._valid)
        c = self._context
        block = KinematicBlock(self._t[c:ready], self._flags[c:ready], out[c:ready])
        keep_from = self._keep_from(ready)
        self._t, self._flags = self._t[keep_from:], self._flags[keep_from:]
        self._angles, self._valid = self._angles[keep_from:], self._valid[keep_from:]
        self._context = ready - keep_from
        return block

    def _run_start(self, end: int) -> int:
        """Buffer index where the run containing frame ``end - 1`` starts."""
        invalid = np.flatnonzero(~self._valid[:end])
        return int(invalid[-1]) + 1 if invalid.size else 0

    def _ready_until(self) -> int:
        n = len(self._valid)
        if n == 0 or not self._valid[-1]:
            return n
        start = self._run_start(n)
        start_known = start > 0 or not self._truncated
        if start_known and n - start < self.window:
            return max(self._context, start)
        return max(self._context, n - self.half)

    def _keep_from(self, ready: int) -> int:
        """Drop emitted frames but keep up to a window of the open run before the pending ones."""
        if ready == 0:
            return 0
        start = self._run_start(ready)
        if start == ready:  # the last emitted frame is invalid: no context needed
            self._truncated = False
            return ready
        keep_from = max(start, ready - self.window)
        if keep_from > start:
            self._truncated = True
        elif start > 0:
            self._truncated = False
        return keep_from


class NeckTracker:
    """Frames in, neck kinematics out (module docstring). One tracker per session."""

    def __init__(self, rate_hz: float, use_magnetometer: bool, cal: CalibrationSettings) -> None:
        self.rate_hz, self.cal = rate_hz, cal
        self.head = StreamingOrientation(rate_hz, use_magnetometer)
        self.trunk = StreamingOrientation(rate_hz, use_magnetometer)
        self.derivatives = StreamingDerivatives(rate_hz)
        self.calibration: NeckCalibration | None = None
        self.calibration_info: CalibrationInfo | None = None
        self.rejected: list[str] = []
        self._frames_seen = 0
        self._buf: dict[str, np.ndarray] = {}
        self._candidate: tuple[int, int] | None = None  # neutral window, buffer indices
        self._nod_start: int | None = None
        self._released: list[tuple[FloatArray, Flags]] = []
        self._scanned = 0  # buffer frames the calibration search has looked at
        self.use_magnetometer = use_magnetometer
        self.trusted_until_t_s: float | None = None  # 6-axis: the calibration's horizon
        self._last_t_s = -np.inf

    @property
    def heading_expired(self) -> bool:
        """A 6-axis tracker past its calibration's horizon (module docstring)."""
        return self.trusted_until_t_s is not None and self._last_t_s >= self.trusted_until_t_s

    def push(self, block: FrameBlock, flush: bool = False) -> KinematicBlock:
        if len(block.t_s):
            self._last_t_s = float(block.t_s[-1])
        r_head, r_trunk = self.head.update(block.head), self.trunk.update(block.trunk)
        valid = (block.flags & INVALID) == 0
        if self.calibration is None:
            self._append(block, r_head, r_trunk, valid)
            self._search()
            if self.calibration is None:
                return self._release_uncalibrated(flush)
            before = self._release_uncalibrated(flush=False)
            b = self._buf
            self._buf = {}
            after = self._track(b["t"], b["flags"], b["r_trunk"], b["r_head"], b["valid"], flush)
            return concatenate_blocks([before, after])
        return self._track(block.t_s, block.flags, r_trunk, r_head, valid, flush)

    def finish(self) -> KinematicBlock:
        """The frames still held back, at the end of a session."""
        if self.calibration is None:
            return self._release_uncalibrated(flush=True)
        empty = _empty_block()
        return self.derivatives.push(
            empty.t_s, empty.flags, np.zeros((0, 3)), np.zeros(0, dtype=bool), flush=True
        )

    def _track(
        self,
        t: FloatArray,
        flags: Flags,
        r_trunk: FloatArray,
        r_head: FloatArray,
        valid: npt.NDArray[np.bool_],
        flush: bool,
    ) -> KinematicBlock:
        assert self.calibration is not None
        angles = neck_angles_from_rotation(self.calibration.neck_rotation(r_trunk, r_head))
        if self.trusted_until_t_s is not None:
            beyond = t >= self.trusted_until_t_s
            flags = np.where(beyond, flags | UNCALIBRATED, flags).astype(np.uint16)
            valid = valid & ~beyond  # (NaN out of the derivative filter)
        return self.derivatives.push(t, flags, angles, valid, flush)

    # -- calibration search --------------------------------------------------------------
    def _append(
        self,
        block: FrameBlock,
        r_head: FloatArray,
        r_trunk: FloatArray,
        valid: npt.NDArray[np.bool_],
    ) -> None:
        rel = np.swapaxes(r_trunk, 1, 2) @ r_head
        new: dict[str, np.ndarray] = {
            "t": block.t_s,
            "flags": block.flags,
            "r_head": r_head,
            "r_trunk": r_trunk,
            "rel": rel,
            "acc": block.trunk.acc_m_s2,
            "valid": valid,
            "seen": self._frames_seen + np.arange(len(block)),
        }
        self._frames_seen += len(block)
        self._buf = (
            new if not self._buf else {k: np.concatenate([self._buf[k], v]) for k, v in new.items()}
        )

    def _search(self) -> None:
        """Scan the new frames in steps of at most 0.5 s, so the outcome does not depend on
        how the stream was chunked (a later still window must not hide an earlier nod)."""
        step = max(1, round(0.5 * self.rate_hz))
        while self.calibration is None and self._scanned < len(self._buf["t"]):
            end = min(len(self._buf["t"]), self._scanned + step)
            self._search_until(end)
            self._scanned = max(self._scanned, end)

    def _search_until(self, n: int) -> None:
        b, cal = self._buf, self.cal
        window = max(2, round(cal.neutral_s * self.rate_hz))
        if self._nod_start is None:
            self._find_neutral(window, n)
        if self._candidate is None:
            return
        start, stop = self._candidate
        excursion = self._excursion_deg(start, stop, n)
        if self._nod_start is None:
            beyond = np.flatnonzero(excursion[stop:] > cal.nod_min_deg)
            if beyond.size == 0:
                return
            onset = stop + int(beyond[0])
            calm = np.flatnonzero(excursion[stop:onset] < cal.nod_return_deg / 2)
            self._nod_start = stop + int(calm[-1]) if calm.size else stop
        peak_at = self._nod_start + int(np.argmax(excursion[self._nod_start :]))
        back = np.flatnonzero(excursion[peak_at:] < cal.nod_return_deg)
        timed_out = n - self._nod_start > cal.nod_max_s * self.rate_hz
        if back.size == 0 and not timed_out:
            return
        nod_stop = peak_at + int(back[0]) + 1 if back.size else n
        try:
            self.calibration = calibrate(
                b["r_trunk"],
                b["r_head"],
                b["acc"],
                slice(start, stop),
                slice(self._nod_start, nod_stop),
                cal.nod_direction,
                trunk_right_axis=np.asarray(cal.trunk_right_axis),
            )
        except CalibrationError as exc:
            self.rejected.append(str(exc))
            log.warning("calibration rejected: %s; waiting for a new neutral hold and nod", exc)
            self._candidate, self._nod_start = None, None
            self._drop_before(nod_stop)
            return
        axes = np.round(self.calibration.trunk_axes, 4).tolist()
        self.calibration_info = CalibrationInfo(
            neutral_s=(round(float(b["t"][start]), 3), round(float(b["t"][stop - 1]), 3)),
            nod_s=(round(float(b["t"][self._nod_start]), 3), round(float(b["t"][nod_stop - 1]), 3)),
            nod_peak_deg=round(float(excursion[peak_at]), 1),
            nod_direction=self.calibration.nod_direction,
            trunk_axes=tuple((a[0], a[1], a[2]) for a in axes),
        )
        self.trusted_until_t_s = heading_horizon_s(float(b["t"][start]), self.use_magnetometer, cal)
        self._drop_before(start)

    def _find_neutral(self, window: int, n: int) -> None:
        """The latest still window ending in the frames scanned now (before ``n``)."""
        b = self._buf
        lo = max(0, self._scanned - window + 1)
        if n - lo < window:
            return
        settled = b["seen"][lo:n] >= self.cal.settle_s * self.rate_hz
        ref = b["rel"][lo]
        v = matrix_to_rotvec(np.swapaxes(ref, 0, 1)[None] @ b["rel"][lo:n])
        windows = np.lib.stride_tricks.sliding_window_view(v, window, axis=0)  # (m, 3, w)
        spread = np.degrees(np.linalg.norm(windows.max(axis=2) - windows.min(axis=2), axis=1))
        ok = np.lib.stride_tricks.sliding_window_view(b["valid"][lo:n] & settled, window)
        good = np.flatnonzero((spread < self.cal.still_deg) & ok.all(axis=1))
        if good.size:
            start = lo + int(good[-1])
            self._candidate = (start, start + window)

    def _excursion_deg(self, start: int, stop: int, n: int) -> FloatArray:
        neutral = mean_rotation(self._buf["rel"][start:stop])
        rel = self._buf["rel"][:n] @ neutral.T
        return np.degrees(np.linalg.norm(matrix_to_rotvec(rel), axis=1))

    def _drop_before(self, index: int) -> None:
        """Frames before ``index`` will never be calibrated: queue them out as UNCALIBRATED."""
        if index <= 0:
            return
        b = self._buf
        self._released.append((b["t"][:index], b["flags"][:index]))
        self._buf = {k: v[index:] for k, v in b.items()}
        if self._candidate is not None:
            self._candidate = (self._candidate[0] - index, self._candidate[1] - index)
        if self._nod_start is not None:
            self._nod_start -= index
        self._scanned = max(0, self._scanned - index)

    def _release_uncalibrated(self, flush: bool) -> KinematicBlock:
        b = self._buf
        n = len(b["t"]) if b else 0
        window = round(self.cal.neutral_s * self.rate_hz)
        if flush:
            keep_from = n
        elif self.calibration is not None:
            keep_from = 0  # everything left in the buffer is calibrated now
        elif self._candidate is not None:
            keep_from = self._candidate[0]
            if n - keep_from > self.cal.max_wait_s * self.rate_hz:  # no nod came: give up
                self._candidate, self._nod_start = None, None
                keep_from = n - window
        else:
            keep_from = n - window
        self._drop_before(max(0, keep_from))
        released, self._released = self._released, []
        if not released:
            return _empty_block()
        t = np.concatenate([r[0] for r in released])
        flags = np.concatenate([r[1] for r in released]) | UNCALIBRATED
        return KinematicBlock(t, flags.astype(np.uint16), np.full((len(t), 9), np.nan))


def _empty_block() -> KinematicBlock:
    return KinematicBlock(np.zeros(0), np.zeros(0, dtype=np.uint16), np.zeros((0, 9)))


def concatenate_blocks(blocks: list[KinematicBlock]) -> KinematicBlock:
    blocks = [b for b in blocks if len(b.t_s)]
    if not blocks:
        return _empty_block()
    return KinematicBlock(
        np.concatenate([b.t_s for b in blocks]),
        np.concatenate([b.flags for b in blocks]).astype(np.uint16),
        np.concatenate([b.kinematics for b in blocks]),
    )
