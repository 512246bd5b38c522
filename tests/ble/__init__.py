"""Bluetooth: the GATT codecs and security, the hub and gateway over the virtual radio."""
