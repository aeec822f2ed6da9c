"""How every task in tasks.py runs its command: build the context from this host once, run the command, present its
result, and exit with its status. `execute` is the one boundary where an error becomes what the user sees (a known
TorchdevError: its lines on stderr and its exit status; anything else: one line saying it is a bug, with the log
that holds its traceback) and every path ends in one exit status.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, TextIO

from torchdev import presenter
from torchdev.checkout import native_platform
from torchdev.context import Context
from torchdev.engine import ContainerEngine, Engine
from torchdev.errors import Interrupted, TorchdevError
from torchdev.files import write_atomically
from torchdev.grammar import without_userinfo
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
    line), an interrupt (SIGINT or SIGTERM: one line, exit 130 or 143), or anything else as a bug in torchdev (one
    line naming the log that holds the traceback, exit 70); the exit status. No traceback reaches the user unless
    TORCHDEV_DEBUG asks for it.

    An interrupt is raised where the command is (interrupts_raised), so every `finally` on its way out removes what
    the command made: containers (the engine's), a running buildx or compose (stopped, torchdev.processes), temporary
    files and folders (their context managers), tags (builds move them only at the end). Then the engines the
    command connected to are swept for a container of its own left between its creation and its clean-up."""
    debug = ctx.environ.get(DEBUG_VARIABLE, "").lower() in ("1", "true", "yes")
    engines: list[ContainerEngine] = []
    ctx = replace(ctx, connect=_remembered(ctx.connect, engines))
    with interrupts_raised():
        try:
            shown = presenter.present(command(ctx, **options))
        except TorchdevError as error:
            if debug:
                print(traceback.format_exc(), file=ctx.err, end="")
            shown = presenter.present_error(error)
        except KeyboardInterrupt as error:
            _sweep(engines)
            shown = presenter.present_interrupt(error, task=task_name(command))
        except BrokenPipeError:
            raise  # the reader went away (`./dev matrix | head`): torchdev.cli ends quietly
        except Exception as error:  # noqa: BLE001 - the one place an unexpected error becomes one line
            text = traceback.format_exc()
            log = bug_log(ctx.paths.reports.bugs, command=getattr(command, "__name__", str(command)), traceback=text)
            shown = presenter.present_bug(error, str(log), traceback=text if debug else "")
        return presenter.write(shown, out=ctx.out, err=ctx.err)


@contextmanager
def interrupts_raised() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted (a KeyboardInterrupt) where the command is, once: a second signal while it
    cleans up is ignored, so the clean-up runs to its end (SIGKILL still ends it at once). Python's own SIGTERM
    would end the process on the spot, with nothing removed. Signals are the main thread's only: elsewhere (a test's
    thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def interrupt(number: int, frame: object) -> None:
        if raised:
            return
        raised.append(number)
        raise Interrupted(number)

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def task_name(command: Callable[..., object]) -> str:
    """The task a command function serves, as `./dev` names it: run_smoke -> smoke, verify_repro -> verify-repro."""
    name = getattr(command, "__name__", "")
    for prefix in ("run_", "show_", "list_"):
        name = name.removeprefix(prefix)
    return name.replace("_", "-")


def _remembered(connect: Callable[[float], ContainerEngine],
                engines: list[ContainerEngine]) -> Callable[[float], ContainerEngine]:
    def remembering(timeout: float) -> ContainerEngine:
        engine = connect(timeout)
        engines.append(engine)
        return engine
    return remembering


def _sweep(engines: list[ContainerEngine]) -> None:
    """After an interrupt: remove what is left of the command's own containers; an engine that cannot be asked now
    (it went away) is left, since nothing more can be done from here."""
    for engine in engines:
        try:
            engine.remove_own_containers()
        except Exception:  # noqa: BLE001 - an interrupt's clean-up never replaces the interrupt's line
            pass


def bug_log(folder: Path, *, command: str, traceback: str) -> Path:
    """Write the traceback of a bug into `folder` (reports/bugs), or the temporary folder when that cannot be written;
    its path. Only the command's name and the traceback: never the environment or the options' values."""
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{command}.log"
    text = without_userinfo(f"torchdev {command}: an unexpected error (a bug in torchdev)\n\n{traceback}")
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
