"""One place that imports OpenSim, lazily, and quiets its logger (no work at import time)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def opensim() -> Any:
    """The ``opensim`` module, with its console log limited to warnings and errors."""
    import opensim as osim

    osim.Logger.setLevelString("warn")
    # OpenSim otherwise appends to ./opensim.log wherever a command happens to run.
    osim.Logger.removeFileSink()
    return osim
