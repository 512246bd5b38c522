"""Everything that runs on the hub, and the device contracts every other package reads.

Imports only numpy, the LiteRT interpreter, bumble, cryptography, the IMU fusion library and the
standard library: never torch, tensorflow, opensim or the project's other packages.
"""
