"""Low-level helpers every package may import (the hub imports nothing host-side, so they live
on its side of the boundary): atomic file writes (``atomic``) and rotations (``rotations``:
quaternions, matrices, rotation vectors)."""
