"""Turn SIGINT/SIGTERM into a polite stop request instead of an abrupt exit.

The handler only records the signal; the training loop checks it after each
step, saves a checkpoint and exits with 128 + signal number. Repeated signals
are absorbed rather than escalated: under torchrun a Ctrl-C reaches each
worker twice (from the terminal and forwarded by torchrun), and aborting on
the second one would lose the checkpoint being written. SIGKILL still works,
and the atomic checkpoint write keeps the previous checkpoint intact even then.

Handling SIGTERM explicitly also matters in containers: when python is PID 1
the kernel ignores signals that have no handler, so `docker stop` would
otherwise wait for its timeout and SIGKILL.
"""

from __future__ import annotations

import signal
from types import FrameType

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Remembers the first stop signal received."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def exit_status(self) -> int:
        """Shell convention 128 + signum (130 for SIGINT, 143 for SIGTERM).

        Non-zero so that scripts, `docker compose run` and torchrun can tell an
        interrupted run from a finished one; the checkpoint makes it resumable.
        """
        assert self.signum is not None, "no stop signal received"
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        """E.g. "SIGTERM", for log lines."""
        assert self.signum is not None, "no stop signal received"
        return signal.Signals(self.signum).name

    def record(self, signum: int) -> None:
        """Remember the first signal; later ones change nothing.

        Also called with a signal another rank received, so that every rank
        stops and reports the same way.
        """
        if self.signum is None:
            self.signum = signum

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        """Signal handler: record only; all real work happens at the next step boundary."""
        self.record(signum)

    def install(self) -> "StopRequest":
        """Route SIGINT and SIGTERM to this object (main thread only, as Python requires)."""
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._handle)
        return self
