"""IMU sources: the LSM6DSO driver against a register-level emulator of the chip, replay, sim."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.sensors import SensorError, open_source
from edge_runtime.sensors import lsm6dso as chip
from edge_runtime.sensors.sim import SimSource, SimSpec


class EmulatedLsm6dso:
    """The chip as its bus sees it (DS12140): registers, a FIFO of tagged 7-byte words with a
    timestamp word per batch, WHO_AM_I and the frequency trim."""

    def __init__(self, rec: ImuRecording, freq_fine: int = -6, who_am_i: int = 0x6C) -> None:
        self.registers = {chip.WHO_AM_I: who_am_i, chip.INTERNAL_FREQ_FINE: freq_fine & 0xFF}
        self.words: list[bytes] = []
        self.overrun = False
        tick_s = 1.0 / (chip.TIMESTAMP_HZ * (1 + 0.0015 * freq_fine))
        self.ticks = np.round((rec.t_s - rec.t_s[0]) / tick_s).astype(np.int64) + (1 << 32) - 50
        for k in range(len(rec.t_s)):
            ts = int(self.ticks[k]) % (1 << 32)  # the counter wraps during this recording
            self.words.append(bytes([chip.TAG_TIMESTAMP << 3]) + ts.to_bytes(4, "little") + b"\0\0")
            for tag, values, lsb in (
                (chip.TAG_GYRO, rec.gyr_rad_s[k], chip.GYR_RAD_S_PER_LSB),
                (chip.TAG_ACC, rec.acc_m_s2[k], chip.ACC_M_S2_PER_LSB),
            ):
                raw = np.clip(np.round(values / lsb), -32768, 32767).astype("<i2")
                self.words.append(bytes([tag << 3]) + raw.tobytes())
        self.available = 0

    def release(self, words: int) -> None:
        """The chip has sampled this many more FIFO words."""
        self.available = min(len(self.words), self.available + words)

    def read(self, register: int, length: int) -> bytes:
        if register == chip.FIFO_STATUS1:
            status2 = (self.available >> 8) | (chip.FIFO_STATUS2_OVR_LATCHED if self.overrun else 0)
            return bytes([self.available & 0xFF, status2])
        if register == chip.FIFO_DATA_OUT_TAG:
            assert length % chip.WORD_BYTES == 0 and length <= 32
            n = length // chip.WORD_BYTES
            out, self.words = b"".join(self.words[:n]), self.words[n:]
            self.available -= n
            return out
        return bytes([self.registers.get(register, 0)] * length)

    def write(self, register: int, value: int) -> None:
        self.registers[register] = value

    def close(self) -> None:
        pass


def _recording(n: int = 300) -> ImuRecording:
    t = np.arange(n) / 104.0
    rng = np.random.default_rng(2)
    return ImuRecording(t, rng.normal(size=(n, 3)) * 2.0, rng.normal(size=(n, 3)) * 9.0)


def test_lsm6dso_driver_reads_the_fifo_with_sensor_timestamps() -> None:
    rec = _recording()
    emulated = EmulatedLsm6dso(rec)
    source = chip.Lsm6dsoSource(emulated, "lsm6dso:emulated")
    regs = emulated.registers
    assert regs[chip.CTRL2_G] >> 2 & 0b11 == 0b11  # +-2000 deg/s
    assert regs[chip.CTRL1_XL] >> 2 & 0b11 == 0b01  # +-16 g
    assert regs[chip.FIFO_CTRL4] & 0b111 == 0b110  # continuous FIFO
    assert regs[chip.CTRL10_C] & chip.CTRL10_C_TIMESTAMP_EN
    chunks = []
    rng = np.random.default_rng(0)
    while emulated.words or emulated.available:
        emulated.release(int(rng.integers(1, 40)))  # reads at irregular moments, split batches
        chunk = source.read_fifo()
        if len(chunk.t_s):
            chunks.append(chunk)
    t = np.concatenate([c.t_s for c in chunks])
    gyr = np.concatenate([c.gyr_rad_s for c in chunks])
    acc = np.concatenate([c.acc_m_s2 for c in chunks])
    assert len(t) == len(rec.t_s)
    np.testing.assert_allclose(np.diff(t), np.diff(rec.t_s), atol=30e-6)  # steady, across the wrap
    np.testing.assert_allclose(gyr, rec.gyr_rad_s, atol=chip.GYR_RAD_S_PER_LSB)
    np.testing.assert_allclose(acc, rec.acc_m_s2, atol=chip.ACC_M_S2_PER_LSB)


def test_lsm6dso_errors_name_the_problem(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SensorError, match="WHO_AM_I is 0x6a"):
        chip.Lsm6dsoSource(EmulatedLsm6dso(_recording(5), who_am_i=0x6A), "lsm6dso:x")
    emulated = EmulatedLsm6dso(_recording(5))
    source = chip.Lsm6dsoSource(emulated, "lsm6dso:x")
    emulated.overrun, emulated.available = True, 3
    source.read_fifo()
    assert "FIFO overrun" in caplog.text

    def broken(register: int, length: int) -> bytes:
        raise OSError(121, "Remote I/O error")

    emulated.read = broken  # type: ignore[method-assign]
    with pytest.raises(SensorError, match="stopped answering"):
        source.read_fifo()
    with pytest.raises(SensorError, match="expected lsm6dso:i2c"):
        open_source("lsm6dso:usb:1", "head")
    with pytest.raises(SensorError, match="unknown source kind"):
        open_source("serial:/dev/ttyUSB0", "head")


def test_replay_source_chunks_a_recording(tmp_path: Path) -> None:
    rec = _recording(260)
    rec.gyr_rad_s[10] = np.nan
    rec.write_csv(tmp_path / "head.csv")
    source = open_source(f"replay:{tmp_path / 'head.csv'}", "head")
    chunks = list(source.chunks())
    assert [len(c.t_s) for c in chunks] == [52] * 5
    np.testing.assert_array_equal(np.concatenate([c.t_s for c in chunks]), rec.t_s)
    assert np.isnan(chunks[0].gyr_rad_s[10]).all()
    with pytest.raises(SensorError, match="cannot read"):
        open_source(f"replay:{tmp_path / 'missing.csv'}", "head")


def test_paced_replay_runs_at_its_speed(tmp_path: Path) -> None:
    """Paced at 10x, five 0.5 s chunks take ~0.25 s: the later chunks wait for their time (a
    lower bound only; an upper one would be a wall-clock assertion on a shared machine)."""
    import time

    from edge_runtime.sensors.replay import chunked

    rec = _recording(260)  # five chunks of 52 samples at 104 Hz
    started = time.monotonic()
    chunks = list(chunked(rec, 0.5, realtime=True, speed=10.0))
    assert time.monotonic() - started >= 5 * 0.5 / 10.0 * 0.95
    np.testing.assert_array_equal(np.concatenate([c.t_s for c in chunks]), rec.t_s)


def test_sim_source_pairs_head_and_trunk_and_keeps_the_truth() -> None:
    spec = SimSpec.parse("seed=4,restrict=right_rotation+left_bend,reach=0.9")
    head, trunk = SimSource(spec, "head"), SimSource(spec, "trunk")
    assert head.protocol is trunk.protocol  # one simulated session for both roles
    np.testing.assert_array_equal(head.recording.t_s, trunk.recording.t_s)
    truth = head.protocol.truth_angles_rad
    assert math.degrees(truth[:, 2].min()) == pytest.approx(-62.4 * 0.9 * 0.5, abs=0.1)
    assert math.degrees(truth[:, 2].max()) == pytest.approx(62.5 * 0.9, abs=0.1)
    for bad, message in (
        ("seed=x", "not a number"),
        ("restrict=sideways", "unknown sectors"),
        ("speed=3", "unknown parameter"),
        ("seed", "needs a value"),
    ):
        with pytest.raises(SensorError, match=message):
            open_source(f"sim:{bad}", "head")
