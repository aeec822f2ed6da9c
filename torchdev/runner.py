"""How every task in tasks.py runs its command: build the context from this host once, run the command, present its
result, and exit with its status. `execute` is the one boundary where an error becomes what the user sees (a known
TorchdevError: its lines on stderr and its exit status) and every path ends in one exit status.
"""
from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path
from typing import Callable

from torchdev import presenter
from torchdev.checkout import native_platform
from torchdev.context import Context
from torchdev.engine import Engine
from torchdev.errors import TorchdevError
from torchdev.project import Paths


def host_context() -> Context:
    """The context of a command run from this checkout (the folder above the torchdev package) on this host: the
    environment read once, here; the Docker engine connected when a command asks for it."""
    environ = dict(os.environ)
    return Context(paths=Paths.at(Path(__file__).resolve().parent.parent),
                   connect=lambda timeout: Engine.connect(timeout=timeout, environ=environ), environ=environ,
                   native_platform=native_platform(), out=sys.stdout, err=sys.stderr,
                   show=partial(presenter.show, out=sys.stdout, err=sys.stderr))


def execute(ctx: Context, command: Callable[..., object], **options: object) -> int:
    """Run `command` with `options` in `ctx` and present what came of it: its result, or the error it raised; the
    exit status."""
    try:
        shown = presenter.present(command(ctx, **options))
    except TorchdevError as error:
        shown = presenter.present_error(error)
    return presenter.write(shown, out=ctx.out, err=ctx.err)


def run(command: Callable[..., object], **options: object) -> None:
    """What a task does: execute the command on this host; exit with its status unless that is 0 (invoke then ends
    the run as usual)."""
    status = execute(host_context(), command, **options)
    if status:
        sys.exit(status)
