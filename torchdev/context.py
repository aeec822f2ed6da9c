"""What a command may use of the world, made once at the edge (torchdev.runner) and handed to every command.

A command reads no module global, environment variable or stream of its own: the checkout's paths, the engine, the
environment, the host's platform and the output all come from here, so a unit test hands in a fake engine, a
folder of its own and a buffer, and patches nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, TextIO

from torchdev.engine import ContainerEngine
from torchdev.platforms import Platform
from torchdev.project import Paths

ENGINE_TIMEOUT = 600
"""Seconds the engine may take to answer one request (a `docker save` of a CUDA image takes minutes)."""


@dataclass(frozen=True)
class Context:
    """One command's view of the world."""

    paths: Paths
    connect: Callable[[float], ContainerEngine]
    """The engine, connected only when a command asks for it (`engine()`), answering within the given seconds."""
    environ: Mapping[str, str]
    """The environment, read once."""
    native_platform: Platform
    """The platform this host runs without emulation."""
    out: TextIO
    """Where results and progress lines ("==> building ...") go, as they happen."""
    err: TextIO
    """Where failure lines go."""
    show: Callable[[object], int]
    """Present a result now, before the command goes on (`smoke --build` shows its builds before the suite runs);
    its exit status."""
    width: int | None = None
    """How many columns a line of output may take: the terminal's ($COLUMNS when set); None when the output is not
    a terminal (a file, a pipe: full lines, for grep and logs)."""

    def engine(self, *, timeout: float = ENGINE_TIMEOUT) -> ContainerEngine:
        return self.connect(timeout)
