"""The hub's Bluetooth LE side: its GATT service on bumble, its persistent identity and bonds,
and the virtual radio that tests and the demo use in place of a controller."""
