"""IMU sources: the LSM6DSO driver against a register-level emulator of the chip, replay, sim."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts.recording import ImuRecording
from edge_runtime.sensors import SensorError, open_source
from edge_runtime.sensors import lis3mdl as mag_chip
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


class EmulatedLis3mdl:
    """The magnetometer as its bus sees it (DocID024204): a new sample of ``field_ut`` (its own
    axes) at every status read, the output registers read with the I2C auto-increment bit."""

    def __init__(self, field_ut: tuple[float, float, float], who_am_i: int = 0x3D) -> None:
        self.registers = {mag_chip.WHO_AM_I: who_am_i}
        self.field_ut, self.fresh, self.writes = np.array(field_ut), False, []

    def read(self, register: int, length: int) -> bytes:
        if register == mag_chip.STATUS_REG:
            self.fresh = True
            return bytes([mag_chip.STATUS_ZYXDA])
        if register == mag_chip.OUT_X_L | mag_chip.I2C_AUTO_INCREMENT:
            assert length == 6 and self.fresh
            raw = np.round(self.field_ut / mag_chip.UT_PER_LSB).astype("<i2")
            return raw.tobytes()
        return bytes([self.registers.get(register, 0)] * length)

    def write(self, register: int, value: int) -> None:
        self.registers[register] = value
        self.writes.append(register)

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


def test_lis3mdl_beside_the_lsm6dso_gives_every_sample_the_field_in_the_imu_axes() -> None:
    settings = mag_chip.MagnetometerSettings.parse("i2c:1:0x1c:axes=-y+x+z:offset=5,-10,2.5")
    assert settings.address == 0x1C and settings.offset_ut == (5.0, -10.0, 2.5)
    emulated_mag = EmulatedLis3mdl((20.0, -30.0, 40.0))
    magnetometer = mag_chip.Lis3mdl(emulated_mag, settings, "lis3mdl:emulated")
    regs = emulated_mag.registers
    assert regs[mag_chip.CTRL_REG1] == mag_chip.CTRL_REG1_VALUE  # 80 Hz, ultra-high performance
    assert regs[mag_chip.CTRL_REG3] & 0b11 == 0  # continuous conversion
    assert regs[mag_chip.CTRL_REG5] & 0x40  # block data update
    assert emulated_mag.writes[0] == mag_chip.CTRL_REG2  # the soft reset first
    emulated = EmulatedLsm6dso(_recording(200))
    source = chip.Lsm6dsoSource(emulated, "lsm6dso:emulated", magnetometer=magnetometer)
    # the IMU's x is the magnetometer's -y, its y the magnetometer's x; minus the hard iron
    expected = np.array([30.0, 20.0, 40.0]) - np.array([5.0, -10.0, 2.5])
    chunks = []
    for step in range(8):
        if step == 4:  # the field turns between two reads: the samples between are interpolated
            emulated_mag.field_ut = np.array([-20.0, -30.0, 40.0])
        emulated.release(60)
        chunks.append(source.read_fifo())
    mags = [c.mag_ut for c in chunks if len(c.t_s)]
    assert all(m is not None and m.shape[1] == 3 for m in mags)
    first = np.concatenate([m for m in mags[:4] if m is not None])
    np.testing.assert_allclose(first, np.broadcast_to(expected, first.shape), atol=0.02)
    turned = mags[4]
    assert turned is not None
    assert (turned[:, 1] <= 20.0 + 0.02).all() and (turned[:, 1] >= -20.0 - 0.02).all()
    np.testing.assert_allclose(mags[-1][-1], [30.0, -20.0, 40.0] - np.array([5.0, -10.0, 2.5]),
                               atol=0.02)  # type: ignore[index]  # fmt: skip


def test_magnetometer_spec_errors_and_hard_iron_offset() -> None:
    for text, words in (
        ("spi:0:1", "expected lis3mdl:i2c"),
        ("i2c:one:0x1c", "must be numbers"),
        ("i2c:1:0x1c:axes=+x+x+z", "each of x, y, z once"),
        ("i2c:1:0x1c:offset=1,2", "three numbers"),
        ("i2c:1:0x1c:gain=2", "unknown option"),
    ):
        with pytest.raises(SensorError, match=words):
            mag_chip.MagnetometerSettings.parse(text)
    with pytest.raises(SensorError, match="must be lis3mdl"):
        open_source("lsm6dso:i2c:1:0x6a+bmm150:i2c:1:0x10", "head")
    with pytest.raises(SensorError, match="WHO_AM_I is 0x3c"):
        mag_chip.Lis3mdl(
            EmulatedLis3mdl((0, 0, 0), who_am_i=0x3C),
            mag_chip.MagnetometerSettings.parse("i2c:1:0x1c"),
            "lis3mdl:x",
        )
    # readings on a sphere around the board's own field, from many orientations
    rng = np.random.default_rng(4)
    directions = rng.normal(size=(400, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    board = np.array([12.0, -7.0, 30.0])
    readings = board + 48.0 * directions + rng.normal(scale=0.3, size=(400, 3))
    np.testing.assert_allclose(mag_chip.hard_iron_offset_ut(readings), board, atol=0.2)
    with pytest.raises(ValueError, match="turn the sensor through many more orientations"):
        mag_chip.hard_iron_offset_ut(board + 48.0 * np.abs(directions) * [1, 0.1, 1])


def test_mag_offset_command_finds_the_board_field(tmp_path: Path) -> None:
    import subprocess
    import sys

    from edge_runtime.common.rotations import axis_angle_matrix
    from edge_runtime.imu_sim import SimulationSetup, simulate_imus

    cervical = str(Path(sys.executable).with_name("cervical"))
    t = np.arange(0, 60, 0.01)
    # the sensor turned slowly every way, as its owner would for the measurement
    turn = np.stack([np.sin(0.21 * t) * 3.0, np.cos(0.13 * t) * 2.0, 0.37 * t], axis=1)
    sim = simulate_imus(t, axis_angle_matrix(turn), SimulationSetup(misalignment_deg=0.0), seed=3)
    assert sim.head.mag_ut is not None
    board = np.array([-15.0, 8.0, 22.0])
    turned = ImuRecording(sim.head.t_s, sim.head.gyr_rad_s, sim.head.acc_m_s2,
                          sim.head.mag_ut + board)  # fmt: skip
    turned.write_csv(tmp_path / "turned.csv")
    command = [cervical, "edge", "mag-offset", "--recording", str(tmp_path / "turned.csv")]
    r = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    found = [float(v) for v in r.stdout.split("offset=")[1].split()[0].split(",")]
    np.testing.assert_allclose(found, board, atol=1.0)
    ImuRecording(t, sim.head.gyr_rad_s, sim.head.acc_m_s2).write_csv(tmp_path / "six.csv")
    r = subprocess.run([cervical, "edge", "mag-offset", "--recording", str(tmp_path / "six.csv")],
                       capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert r.returncode == 2 and "no mag_x, mag_y, mag_z columns" in r.stderr
