"""The hub: sensors in, fused neck kinematics, int8 muscle forces, range-of-motion findings and
records out (stored in SQLite until synced), plus verified model installs and the daemon."""
