"""A command's context for unit tests: this checkout's paths (any of them pointed elsewhere), a fake engine, a fixed
environment and host platform, and buffers for what the command prints."""
from __future__ import annotations

import io
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import cast

from tests.helpers.cli import ROOT
from torchdev import presenter
from torchdev.context import Context
from torchdev.engine import ContainerEngine
from torchdev.platforms import AMD64, Platform
from torchdev.project import Paths, Reports


def no_engine(timeout: float) -> ContainerEngine:
    raise AssertionError("this command asked for the engine, and the test gave it none")


def make_context(*, engine: ContainerEngine | None = None, environ: dict[str, str] | None = None,
                 native: Platform = AMD64, reports: Path | None = None, **paths: Path) -> Context:
    """The context of a command run from this checkout, with `paths` (scripts=...) replaced and, given `reports`,
    every report folder under it; its output is read back with output(ctx)."""
    out, err = io.StringIO(), io.StringIO()
    checkout = replace(Paths.at(ROOT), **paths, **({"reports": Reports.at(reports)} if reports else {}))
    return Context(paths=checkout, connect=no_engine if engine is None else lambda _: engine,
                   environ={} if environ is None else environ, native_platform=native, out=out, err=err,
                   show=partial(presenter.show, out=out, err=err))


def output(ctx: Context) -> tuple[str, str]:
    """What the command printed so far: (stdout, stderr)."""
    return cast(io.StringIO, ctx.out).getvalue(), cast(io.StringIO, ctx.err).getvalue()
