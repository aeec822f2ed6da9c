"""SIGTERM (a scheduler, a CI runner, `docker stop`) and SIGINT (Ctrl-C) to the commands that start things on the
real engine, mid-run: `./dev smoke` (its suite container), `./dev up` (compose and the training container) and
`./dev build` (a running buildx). Each must exit with the signal's status (130, 143) in one line, leaving no
container of its own (the engine's owner label says which are), no temporary file (TMPDIR is the test's own), no
buildx or compose process, and no tag moved."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import ROOT
from tests.helpers.tags import tag_targets
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT

SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


def start(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """./dev ARGS in the background, its temporary files in a folder of the test's own, its output into
    tmp_path/out and tmp_path/err (files: a pipe nobody reads would stall it)."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "torchdev.cli", *args], cwd=ROOT, text=True, stdout=out,
                                stderr=err, env={**os.environ, "TMPDIR": str(tmp_path / "tmp"), **(env or {})})


def said(tmp_path: Path) -> tuple[str, str]:
    return (tmp_path / "out").read_text(), (tmp_path / "err").read_text()


def owned(docker_client, pid: int) -> list:
    """The containers the command with process `pid` started (torchdev labels each with its host and PID)."""
    label = f"io.torchdev.owner={socket.gethostname()}/{pid}"
    return docker_client.containers.list(all=True, filters={"label": label})


def wait_for(condition, *, timeout: float, what: str, process: subprocess.Popen, tmp_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = said(tmp_path)
            raise AssertionError(f"the command ended before {what}:\n{out[-3000:]}\n{err[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def interrupted(process: subprocess.Popen, number: int, tmp_path: Path) -> tuple[str, str]:
    """Send the signal and wait for the command to clean up and end: its (stdout, stderr)."""
    process.send_signal(number)
    try:
        process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the command did not end within 180 s of the signal") from None
    return said(tmp_path)


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def assert_ended_cleanly(process, out, err, number, *, task: str, docker_client, tmp_path, children=()):
    name = signal.Signals(number).name + (" (Ctrl-C)" if number == signal.SIGINT else "")
    assert process.returncode == 128 + number, (process.returncode, out[-2000:], err[-2000:])
    assert err.splitlines()[-1] == (f"torchdev: ./dev {task} was interrupted by {name}: what it had started is "
                                    "stopped and removed (containers, temporary files), what had finished stays"), err
    assert owned(docker_client, process.pid) == [], "a container of the command was left"
    assert list((tmp_path / "tmp").iterdir()) == [], "a temporary file or folder of the command was left"
    assert [pid for pid in children if alive(pid)] == [], "a child process outlived the command"


@pytest.mark.parametrize("number", SIGNALS)
def test_smoke_interrupted_mid_suite_removes_its_container_and_exits_with_the_signal(
        docker_client, built_image, test_overlay, tmp_path, number):
    before = tag_targets(docker_client, TEST_REPOSITORY)
    process = start("smoke", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), "--reports",
                    str(tmp_path / "reports"), tmp_path=tmp_path)
    wait_for(lambda: any(c.status == "running" for c in owned(docker_client, process.pid)), timeout=120,
             what="the suite's container running", process=process, tmp_path=tmp_path)
    time.sleep(2)  # the suite is under way
    out, err = interrupted(process, number, tmp_path)
    assert_ended_cleanly(process, out, err, number, task="smoke", docker_client=docker_client, tmp_path=tmp_path)
    assert not any((tmp_path / "reports").rglob("*.json")), "an interrupted run wrote a summary push would trust"
    assert tag_targets(docker_client, TEST_REPOSITORY) == before


@pytest.fixture()
def compose_project(docker_client):
    """A compose project name of the test's own (COMPOSE_PROJECT_NAME beats compose.yaml's name), taken down after,
    and the training runs it writes into the checkout removed unless they were there before."""
    name = f"{TEST_REPOSITORY}-up-{os.getpid()}"
    runs = ROOT / "runs"
    before = {path for path in runs.rglob("*")} if runs.exists() else None
    yield name
    subprocess.run(["docker", "compose", "-p", name, "down", "--remove-orphans"], cwd=ROOT, capture_output=True,
                   check=False)
    if before is None:
        subprocess.run(["rm", "-rf", str(runs)], check=False)
    else:
        for path in sorted(set(runs.rglob("*")) - before, reverse=True):
            subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.mark.parametrize("number", SIGNALS)
def test_up_interrupted_while_training_stops_compose_and_removes_the_training_container(
        docker_client, built_image, test_overlay, tmp_path, compose_project, number):
    """The build is a no-op (the test image is current); then `docker compose run --rm train` is under way when the
    signal comes. TORCHDEV_RUN_AS=root: the checkout here is root's, which the image's user may not write to."""
    process = start("up", "--variant", TEST_VARIANT, "--overlay", str(test_overlay), "--gpus", "none", tmp_path=tmp_path,
                    env={"COMPOSE_PROJECT_NAME": compose_project, "TORCHDEV_RUN_AS": "root"})
    wait_for(lambda: any(c.status == "running" and c.name.startswith("torchdev-train-")  # compose_run's name, not
                         for c in owned(docker_client, process.pid)),  # the build's short-lived manifest reader
             timeout=300, what="the training container running", process=process, tmp_path=tmp_path)
    children = descendants(process.pid)
    assert children, "compose runs as a child of ./dev"
    time.sleep(3)
    out, err = interrupted(process, number, tmp_path)
    assert_ended_cleanly(process, out, err, number, task="up", docker_client=docker_client, tmp_path=tmp_path,
                         children=children)


def test_build_interrupted_while_buildx_runs_cancels_it_and_moves_no_tag(
        docker_client, built_image, test_overlay, tmp_path):
    """A build whose pip step cannot come from the cache (one more package, unlocked), stopped once that step runs:
    buildx gets SIGINT (it cancels the build), the scratch folder with the staged lock goes, no tag moves."""
    data = yaml.safe_load(test_overlay.read_text())
    data["variants"][TEST_VARIANT]["lock"] = str(tmp_path / "no-lock.txt")
    data["packages"] = [*yaml.safe_load((ROOT / "images.yaml").read_text())["packages"], "six==1.16.0"]
    overlay = tmp_path / "uncached.yaml"
    overlay.write_text(yaml.safe_dump(data))
    before = tag_targets(docker_client, TEST_REPOSITORY)
    process = start("build", "--variant", TEST_VARIANT, "--overlay", str(overlay), "--unlocked", tmp_path=tmp_path)
    wait_for(lambda: "Collecting six==1.16.0" in said(tmp_path)[0], timeout=300, what="the pip step running",
             process=process, tmp_path=tmp_path)
    children = descendants(process.pid)
    assert children, "buildx runs as a child of ./dev"
    out, err = interrupted(process, signal.SIGTERM, tmp_path)
    assert_ended_cleanly(process, out, err, signal.SIGTERM, task="build", docker_client=docker_client,
                         tmp_path=tmp_path, children=children)
    assert "interrupted by SIGTERM: buildx was stopped, the previous tags are unchanged" in out  # the table's row
    assert tag_targets(docker_client, TEST_REPOSITORY) == before
