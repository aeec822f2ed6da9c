"""`./dev base`: the engine's own platform probe decides, and scripts/make-base.sh runs only when the image lacks a
platform asked for (then for every platform asked for: the new image replaces the name as a whole)."""
from __future__ import annotations

import pytest

from tests.helpers.context import make_context, output
from tests.helpers.fake_engine import FakeEngine
from torchdev import commands
from torchdev.errors import UsageError
from torchdev.runner import execute

NAME = "torchdev-base:bookworm"
RECORDING_SCRIPT = '#!/bin/sh\necho "$0 $*" >> "$(dirname "$0")/ran"\n'
"""A stand-in for scripts/make-base.sh that only records how it was run."""


@pytest.fixture()
def engine():
    return FakeEngine()


@pytest.fixture()
def ctx(engine, tmp_path):
    """A linux/amd64 host whose scripts/ holds the recording stand-in."""
    (tmp_path / "make-base.sh").write_text(RECORDING_SCRIPT)
    return make_context(engine=engine, scripts=tmp_path)


def scripts_run(ctx) -> list[list[str]]:
    ran = ctx.paths.scripts / "ran"
    return [line.split() for line in ran.read_text().splitlines()] if ran.exists() else []


def test_an_image_holding_every_platform_asked_for_is_left_alone(engine, ctx):
    engine.platforms[engine.add_image(NAME)] = ("linux/amd64", "linux/arm64")
    assert execute(ctx, commands.base, name=NAME, platform="linux/amd64,linux/arm64") == 0
    assert execute(ctx, commands.base, name=NAME, platform=None) == 0
    assert scripts_run(ctx) == []
    assert output(ctx)[0].splitlines() == [f"base: {NAME} exists for linux/amd64,linux/arm64",
                                           f"base: {NAME} exists for linux/amd64"]


def test_a_missing_platform_makes_the_script_build_every_platform_asked_for(engine, ctx):
    engine.add_image(NAME)  # linux/amd64 only
    assert execute(ctx, commands.base, name=NAME, platform="linux/amd64,linux/arm64") == 0
    [(script, *arguments)] = scripts_run(ctx)
    assert script == str(ctx.paths.scripts / "make-base.sh")
    assert arguments == [NAME, "--platform", "linux/amd64,linux/arm64"]


def test_a_missing_image_is_made_for_this_hosts_platform(ctx):
    assert execute(ctx, commands.base, name="other:base", platform=None) == 0
    assert scripts_run(ctx)[0][1:] == ["other:base", "--platform", "linux/amd64"]


def test_the_scripts_exit_status_is_the_commands(ctx):
    (ctx.paths.scripts / "make-base.sh").write_text("exit 3\n")
    assert execute(ctx, commands.base, name="other:base", platform=None) == 3
    assert output(ctx) == ("", "")


def test_an_unknown_platform_is_a_usage_error_before_anything_runs(ctx):
    with pytest.raises(UsageError, match="unknown platform 'linux/riscv64'"):
        commands.base(ctx, name=NAME, platform="linux/riscv64")
    assert scripts_run(ctx) == []
