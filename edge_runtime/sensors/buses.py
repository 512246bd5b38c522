"""Register access to a chip on the Pi's I2C (smbus2) or SPI (spidev) bus, for the drivers."""

from __future__ import annotations

from typing import Protocol


class RegisterBus(Protocol):
    """Register access to one chip (multi-byte reads auto-increment as the chip is set up to:
    the LSM6DSO by CTRL3_C.IF_INC, the LIS3MDL by the sub-address's MSB)."""

    def read(self, register: int, length: int) -> bytes: ...

    def write(self, register: int, value: int) -> None: ...

    def close(self) -> None: ...


class I2cBus:
    def __init__(self, bus: int, address: int) -> None:
        from smbus2 import SMBus  # imported lazily: CI and hosts have no I2C

        self._bus, self.address = SMBus(bus), address

    def read(self, register: int, length: int) -> bytes:
        return bytes(self._bus.read_i2c_block_data(self.address, register, length))

    def write(self, register: int, value: int) -> None:
        self._bus.write_byte_data(self.address, register, value)

    def close(self) -> None:
        self._bus.close()


class SpiBus:
    READ = 0x80

    def __init__(self, bus: int, chip_select: int, speed_hz: int = 8_000_000) -> None:
        import spidev  # the 'pi' extra

        self._spi = spidev.SpiDev()
        self._spi.open(bus, chip_select)
        self._spi.max_speed_hz, self._spi.mode = speed_hz, 0b11

    def read(self, register: int, length: int) -> bytes:
        return bytes(self._spi.xfer2([register | self.READ] + [0] * length)[1:])

    def write(self, register: int, value: int) -> None:
        self._spi.xfer2([register, value])

    def close(self) -> None:
        self._spi.close()
