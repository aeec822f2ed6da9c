"""`./dev base`: the engine's own platform probe decides, and scripts/make-base.sh runs only when the image lacks a
platform asked for (then for every platform asked for: the new image replaces the name as a whole)."""
from __future__ import annotations

import subprocess

import pytest

from tests.helpers.fake_engine import FakeEngine
from torchdev import commands
from torchdev.errors import UsageError
from torchdev.platforms import AMD64

NAME = "torchdev-base:bookworm"


@pytest.fixture()
def engine(monkeypatch):
    """A fake engine, and the commands scripts/make-base.sh would have run, recorded instead (status 0)."""
    fake = FakeEngine()
    fake.scripts = []
    monkeypatch.setattr(commands.Engine, "connect", lambda: fake)
    monkeypatch.setattr(commands, "native_platform", lambda: AMD64)
    monkeypatch.setattr(commands.subprocess, "run", lambda command, check: (
        fake.scripts.append(command[1:]), subprocess.CompletedProcess(command, 0))[1])
    return fake


def test_an_image_holding_every_platform_asked_for_is_left_alone(engine, capsys):
    engine.platforms[engine.add_image(NAME)] = ("linux/amd64", "linux/arm64")
    assert commands.base(name=NAME, platform="linux/amd64,linux/arm64") == 0
    assert commands.base(name=NAME, platform=None) == 0
    assert engine.scripts == []
    assert capsys.readouterr().out.splitlines() == [f"base: {NAME} exists for linux/amd64,linux/arm64",
                                                    f"base: {NAME} exists for linux/amd64"]


def test_a_missing_platform_makes_the_script_build_every_platform_asked_for(engine):
    engine.add_image(NAME)  # linux/amd64 only
    assert commands.base(name=NAME, platform="linux/amd64,linux/arm64") == 0
    [(script, *arguments)] = engine.scripts
    assert script.endswith("scripts/make-base.sh") and arguments == [NAME, "--platform", "linux/amd64,linux/arm64"]


def test_a_missing_image_is_made_for_this_hosts_platform(engine):
    assert commands.base(name="other:base", platform=None) == 0
    assert engine.scripts[0][1:] == ["other:base", "--platform", "linux/amd64"]


def test_an_unknown_platform_is_a_usage_error_before_anything_runs(engine):
    with pytest.raises(UsageError, match="unknown platform 'linux/riscv64'"):
        commands.base(name=NAME, platform="linux/riscv64")
    assert engine.scripts == []
