"""Errors that reach the user as one line, `torchdev: <cause>: <fix>`, with a meaningful exit status; and the kinds of
such lines, each a `Problem` written once as templates of its cause and its fix.

Every error torchdev raises on purpose is made from a Problem declared at module level where it is raised, so
`catalogue()` can enumerate them all and docs/troubleshooting.md's list of error lines is generated from the very
templates the code fills in (scripts/troubleshooting.py; tests/unit/test_troubleshooting.py fails when the page
differs). Anything else that escapes a command is a bug in torchdev, which torchdev.runner says as such.
"""
from __future__ import annotations

import importlib
import pkgutil
import signal
import string
import sys
from dataclasses import dataclass, field
from typing import Iterator


class TorchdevError(Exception):
    """A failure the user can act on; `str()` is the whole one-line message (several problems: a line each)."""

    exit_status = 1


class ConfigError(TorchdevError):
    """images.yaml or an overlay is unusable (exit status 2, like a usage error)."""

    exit_status = 2


class UsageError(TorchdevError):
    """The command line asks for something that does not exist or cannot work (an unknown variant, say)."""

    exit_status = 2


class Interrupted(KeyboardInterrupt):
    """A signal that ends a command: SIGINT (Ctrl-C) or SIGTERM (a scheduler, a CI runner, `docker stop`), raised by
    torchdev.runner's handler wherever the command is, so that every `finally` on the way out removes what the
    command made; the command then exits with the signal's status, 128 + its number (130, 143)."""

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.number = number


def signal_of(error: BaseException) -> int:
    """The signal an interrupt came from: Interrupted's own, SIGINT for a plain KeyboardInterrupt (Python's Ctrl-C)."""
    return error.number if isinstance(error, Interrupted) else signal.SIGINT


RUNTIME, USAGE, CONFIGURATION, STATE = "runtime", "usage", "configuration", "state"
"""What a problem is about, the sections of the troubleshooting page: the command line, images.yaml and overlays,
files torchdev wrote and reads back, or the world at run time (the engine, a registry, a build)."""


@dataclass(frozen=True)
class Problem:
    """One kind of error line: its cause and its fix as str.format templates over named fields, and the error class
    it raises (whose exit_status it gets). `Problem(...)(path=..., reason=...)` is the error to raise."""

    cause: str
    fix: str
    kind: type[TorchdevError] = TorchdevError
    topic: str = RUNTIME
    fields: tuple[str, ...] = field(init=False, default=())
    module: str = field(init=False, default="", compare=False)
    """The module that declares it (where the catalogue finds it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "module", sys._getframe(2).f_globals.get("__name__", ""))
        names = [name for template in (self.cause, self.fix) for _, name, _, _ in string.Formatter().parse(template)
                 if name is not None]
        if any(not name.isidentifier() for name in names):
            raise ValueError(f"a Problem's template names plain fields only: {self.cause!r}: {self.fix!r}")
        object.__setattr__(self, "fields", tuple(dict.fromkeys(names)))

    @property
    def exit_status(self) -> int:
        return self.kind.exit_status

    def line(self, **values: object) -> str:
        """The message: the cause, then the fix after a colon (no fix: the cause alone)."""
        cause = self.cause.format(**values)
        return f"{cause}: {self.fix.format(**values)}" if self.fix else cause

    def __call__(self, **values: object) -> TorchdevError:
        return self.kind(self.line(**values))

    def template(self) -> tuple[str, str]:
        """(cause, fix) with each field shown as <field>, as the troubleshooting page lists them."""
        shown = {name: f"<{name}>" for name in self.fields}
        return self.cause.format(**shown), self.fix.format(**shown)


def joined(lines: list[str], kind: type[TorchdevError] = ConfigError) -> TorchdevError:
    """Several problems found at once (each line a Problem's), reported together: one line each."""
    return kind("\n".join(lines))


def catalogue(package: str = "torchdev") -> Iterator[tuple[str, str, Problem]]:
    """(module, name, problem) for every Problem declared at module level in the package's modules, by module."""
    root = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{package}.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Problem) and value.module == module.__name__:
                yield info.name, name, value
