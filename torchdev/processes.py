"""Child processes that end with the command that started them: when a signal interrupts torchdev (Ctrl-C, or SIGTERM
from a scheduler, a CI runner or `docker stop`), a child still running gets it passed on and time to clean up after
itself, then is killed; it is never left running on its own, nor killed before it could clean up.

torchdev.runner turns SIGINT and SIGTERM into `Interrupted` (a KeyboardInterrupt carrying the signal), so every
`finally` of the command runs; this module is what those places call for a child.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from torchdev.errors import signal_of

GRACE_S = 30.0
"""How long a child may take to stop after the signal is passed on (buildx cancels its build; compose stops and
removes its container, whose command gets `docker stop`'s ten seconds)."""


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first), from Linux's /proc; [] where there is none."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(word) for word in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def _send(pid: int, number: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, number)
        else:
            for target in (pid, *descendants(pid)):
                os.kill(target, number)
    except ProcessLookupError:
        pass


def stop(process: subprocess.Popen, number: int, *, group: bool, grace: float = GRACE_S) -> None:
    """Pass the signal `number` on to `process` (its whole process group with `group`, for a child started in a
    session of its own; else the child and every process below it, as the terminal would have), wait up to `grace`
    seconds, then kill what is left."""
    if process.poll() is not None:
        return
    _send(process.pid, number, group=group)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _send(process.pid, signal.SIGKILL, group=group)
        process.wait()


def wait(process: subprocess.Popen, *, group: bool, passed: int | None = None) -> int:
    """The child's exit status; an interrupt while waiting is passed on to the child (`passed`: this signal instead
    of the one that came), which is stopped before the interrupt goes on."""
    try:
        return process.wait()
    except KeyboardInterrupt as error:
        stop(process, passed or signal_of(error), group=group)
        raise
