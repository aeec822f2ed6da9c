"""SIGTERM and Ctrl-C end a command that runs a child the same way: the child gets the signal passed on and is waited
for, its container (compose) is stopped and removed, the command's temporary files go, and the command exits with the
signal's status in one line. The children here are stand-ins for docker (a script that records the signal it got), so
this runs in seconds; tests/integration/test_interrupts.py does it on the real engine."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
from docker.errors import NotFound

from tests.helpers.context import make_context, output
from tests.helpers.fake_commands import ahead_of_path, command_folder
from torchdev import commands
from torchdev.engine import Engine
from torchdev.runner import execute

DOCKER = """#!/usr/bin/env bash
# A stand-in for the docker CLI: answers `docker buildx version`, else records its arguments, says it started, and
# waits until a signal comes, recording which.
if [ "$1 $2" = "buildx version" ]; then echo "github.com/docker/buildx v0.13.1"; exit 0; fi
echo "$*" > "$MARK.args"
trap 'echo SIGINT > "$MARK"; exit 130' INT
trap 'echo SIGTERM > "$MARK"; exit 143' TERM
echo "#1 [internal] load build definition from Dockerfile"
touch "$MARK.started"
while true; do sleep 0.05; done
"""


class Containers:
    """The SDK's containers collection as compose_run's clean-up uses it: remembers the names it was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, name: str):
        self.asked.append(name)
        raise NotFound("no such container")


class Client:
    def __init__(self) -> None:
        self.containers = Containers()

@pytest.fixture()
def docker_stand_in(tmp_path, monkeypatch):
    """`docker` on PATH is the stand-in; its record is tmp_path/mark; temporary files go to tmp_path/tmp."""
    monkeypatch.setenv("PATH", ahead_of_path(command_folder(tmp_path / "bin", {"docker": DOCKER})))
    monkeypatch.setenv("MARK", str(tmp_path / "mark"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path / "mark"


def signal_when_started(mark: Path, number: int) -> threading.Thread:
    """Send this process `number` once the stand-in says it has started, as a scheduler or a terminal would."""
    def send() -> None:
        deadline = time.monotonic() + 20
        while not Path(f"{mark}.started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), number)
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("number, status, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_an_interrupted_build_cancels_buildx_with_sigint_waits_for_it_and_removes_its_scratch(
        docker_stand_in, tmp_path, number, status, name):
    """buildx runs in a session of its own (a terminal's Ctrl-C reaches torchdev alone): it gets SIGINT, on which it
    cancels its build, whichever signal torchdev got; the scratch folder with the staged lock (and logins) goes."""
    ctx = make_context(reports=tmp_path / "reports")
    ctx = ctx.__class__(**{**ctx.__dict__, "connect": lambda timeout: Engine(Client())})
    signal_when_started(docker_stand_in, number)
    assert execute(ctx, commands.build, variant="cu117", every=False, dry_run=False, overlay=None) == status
    assert docker_stand_in.read_text() == "SIGINT\n", "buildx was cancelled as Ctrl-C cancels it, and waited for"
    assert list((tmp_path / "tmp").iterdir()) == [], "the build's scratch folder was left"
    out, err = output(ctx)
    assert f"interrupted by {name}: buildx was stopped, the previous tags are unchanged" in out  # the table's row
    assert err.splitlines()[-1].startswith(f"torchdev: ./dev build was interrupted by {name}")


@pytest.mark.parametrize("number, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_up_passes_the_signal_to_compose_and_removes_its_container(
        docker_stand_in, tmp_path, monkeypatch, number, status):
    """`./dev up` after its (here: absent) build: compose runs in this terminal's process group; the signal torchdev
    got is passed to it and to what it started, and the container it named is stopped and removed."""
    client = Client()
    engine = Engine(client)
    monkeypatch.setattr(commands.builds, "build_images", lambda *args, **kwargs: [])
    ctx = make_context(reports=tmp_path / "reports", environ={"PATH": os.environ["PATH"],  # compose gets only this
                                                              "MARK": os.environ["MARK"]})
    ctx = ctx.__class__(**{**ctx.__dict__, "connect": lambda timeout: engine})
    assert shutil.which("docker", path=ctx.environ["PATH"]) == str(tmp_path / "bin" / "docker")
    signal_when_started(docker_stand_in, number)
    assert execute(ctx, commands.up, variant="cu117", overlay=None, gpus="none") == status
    assert docker_stand_in.read_text() == f"{signal.Signals(number).name}\n"
    args = Path(f"{docker_stand_in}.args").read_text().split()
    assert args[:4] == ["compose", "run", "--rm", "--name"] and args[-1] == "train"
    assert args[5:7] == ["--label", f"io.torchdev.owner={os.uname().nodename}/{os.getpid()}"]
    assert client.containers.asked[0] == args[4], "the container compose named was looked for, to be removed"
