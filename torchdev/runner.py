"""How every task in tasks.py runs its command: build the context from this host once, run the command, present its
result, and exit with its status. `execute` is the one boundary where an error becomes what the user sees (a known
TorchdevError: its lines on stderr and its exit status; anything else: one line saying it is a bug, with the log
that holds its traceback) and every path ends in one exit status.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Callable, TextIO

from torchdev import presenter
from torchdev.checkout import native_platform
from torchdev.context import Context
from torchdev.engine import Engine
from torchdev.errors import TorchdevError
from torchdev.files import write_atomically
from torchdev.project import Paths


def host_context() -> Context:
    """The context of a command run from this checkout (the folder above the torchdev package) on this host: the
    environment read once, here; the Docker engine connected when a command asks for it."""
    environ = dict(os.environ)
    return Context(paths=Paths.at(Path(__file__).resolve().parent.parent),
                   connect=lambda timeout: Engine.connect(timeout=timeout, environ=environ), environ=environ,
                   native_platform=native_platform(), out=sys.stdout, err=sys.stderr,
                   show=partial(presenter.show, out=sys.stdout, err=sys.stderr),
                   width=terminal_width(environ, sys.stdout))


def terminal_width(environ: dict[str, str], stream: TextIO) -> int | None:
    """The columns output to `stream` may take: $COLUMNS when it is a number (as shells and `shutil` read it), else
    the terminal's width when `stream` is one; None (no limit) for a file or a pipe."""
    columns = environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else None
    except (OSError, ValueError, AttributeError):
        return None


DEBUG_VARIABLE = "TORCHDEV_DEBUG"
"""Set to 1 (`./dev --debug` sets it) to see the traceback of any error on stderr, besides its line."""


def execute(ctx: Context, command: Callable[..., object], **options: object) -> int:
    """Run `command` with `options` in `ctx` and present what came of it: its result, the known error it raised (its
    line), an interrupt (130), or anything else as a bug in torchdev (one line naming the log that holds the
    traceback, exit 70); the exit status. No traceback reaches the user unless TORCHDEV_DEBUG asks for it."""
    debug = ctx.environ.get(DEBUG_VARIABLE, "").lower() in ("1", "true", "yes")
    try:
        shown = presenter.present(command(ctx, **options))
    except TorchdevError as error:
        if debug:
            print(traceback.format_exc(), file=ctx.err, end="")
        shown = presenter.present_error(error)
    except KeyboardInterrupt:
        shown = presenter.present_interrupt()
    except BrokenPipeError:
        raise  # the reader went away (`./dev matrix | head`): torchdev.cli ends quietly
    except Exception as error:  # noqa: BLE001 - the one place an unexpected error becomes one line, not a traceback
        text = traceback.format_exc()
        log = bug_log(ctx.paths.reports.bugs, command=getattr(command, "__name__", str(command)), traceback=text)
        shown = presenter.present_bug(error, str(log), traceback=text if debug else "")
    return presenter.write(shown, out=ctx.out, err=ctx.err)


def bug_log(folder: Path, *, command: str, traceback: str) -> Path:
    """Write the traceback of a bug into `folder` (reports/bugs), or the temporary folder when that cannot be written;
    its path. Only the command's name and the traceback: never the environment or the options' values."""
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{command}.log"
    text = f"torchdev {command}: an unexpected error (a bug in torchdev)\n\n{traceback}"
    for place in (folder, Path(tempfile.gettempdir()) / "torchdev-bugs"):
        try:
            write_atomically(place / name, text)
            return place / name
        except (OSError, TorchdevError):
            continue
    return Path("<nowhere: neither reports/bugs nor the temporary folder can be written>")


def run(command: Callable[..., object], **options: object) -> None:
    """What a task does: execute the command on this host; exit with its status unless that is 0 (invoke then ends
    the run as usual)."""
    status = execute(host_context(), command, **options)
    if status:
        sys.exit(status)
