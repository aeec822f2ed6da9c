"""What slow integration steps cost, for .ci/run to print at the end (it sets TORCHDEV_TIMINGS to a file)."""
from __future__ import annotations

import os
from pathlib import Path


def record(step: str, seconds: float) -> None:
    """One `step: N s` line in $TORCHDEV_TIMINGS when it is set; nothing otherwise."""
    path = os.environ.get("TORCHDEV_TIMINGS")
    if path:
        with Path(path).open("a") as file:
            file.write(f"{step}: {seconds:.0f} s\n")
