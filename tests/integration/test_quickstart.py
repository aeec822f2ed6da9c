"""The README's quick start, walked as written: each command of its marked block (`<!-- quickstart -->`), word for
word, from the repository root, in order, on the real engine.

What changes, and only through the environment, as a user on a host like CI's would set it: TORCHDEV_OVERLAY names
the CI overlay retargeted at the test repository (tests/conftest.py's test_overlay), because the upstream bases and
download.pytorch.org are out of reach here; it keeps the variant's name, cu117, and puts it on the local Debian base
with torch from PyPI. Compose gets a project and a home volume of the test's own (COMPOSE_PROJECT_NAME,
TORCHDEV_HOME_VOLUME), and where root owns the checkout (CI's) TORCHDEV_RUN_AS=root, since the trainer would otherwise
run as the image's user, who may not write there (a user's own checkout runs it as that user). No command is
substituted: the quick start needs no GPU (`--gpus auto` finds none here and says so) and trains for seconds.

What it proves: a checkout with its .venv runs the quick start's commands as printed, each exits 0, the build is the
session's test image (same inputs, same image: a cache hit, seconds), the smoke suite passes in it, and `./dev up`
trains in it through compose to a `done` line and a checkpoint. What it does not: the upstream bases and indexes,
the README's set-up (`git clone`, the first `./dev` making .venv), GPUs, and the recipes after the quick start
(their commands are parsed by tests/unit/test_doc_commands.py, and each has its own integration tests).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, unavailable
from tests.helpers.doc_commands import marked_commands
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT
from torchdev.records import read_smoke_summary

COMMANDS = marked_commands((ROOT / "README.md").read_text(encoding="utf-8"), "quickstart")
RUN_DIR = ROOT / "runs" / "mlp"
"""Where `./dev up` (compose's train service: train.py --task mlp) writes in the checkout."""


def test_the_quick_start_is_commands_this_test_can_walk_as_written():
    """A quick start this test would have to rewrite is one it no longer walks: say so here, not by a failed build."""
    assert [command[:2] for command in COMMANDS] == [("./dev", "doctor"), ("./dev", "build"), ("./dev", "smoke"),
                                                     ("./dev", "up")]
    variants = {command[command.index("--variant") + 1] for command in COMMANDS if "--variant" in command}
    assert variants == {TEST_VARIANT}, "the quick start names a variant the CI overlay does not build"


def paths_under(folder: Path) -> set[Path]:
    return {folder, *folder.rglob("*")} if folder.exists() else set()


@pytest.fixture()
def quickstart_env(built_image, test_overlay, docker_client):
    """The environment the quick start runs in, and the removal of what it made: compose's project (network,
    containers) and home volume, the run directory, and the files and folders it added under reports/."""
    if RUN_DIR.exists():
        unavailable(f"{RUN_DIR} exists: `./dev up` would resume that run, and this test could not tell what it made; "
                    "move it away")
    project = f"{TEST_REPOSITORY}-quickstart-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TORCHDEV_OVERLAY": str(test_overlay), "COMPOSE_PROJECT_NAME": project,
           "TORCHDEV_HOME_VOLUME": f"{project}-home"}
    if ROOT.stat().st_uid == 0:
        env["TORCHDEV_RUN_AS"] = "root"
    runs_existed = RUN_DIR.parent.exists()
    reports_before = paths_under(ROOT / "reports")
    yield env
    subprocess.run(["docker", "compose", "--project-name", project, "down", "--remove-orphans"], cwd=ROOT, env=env,
                   capture_output=True, timeout=120, check=False)
    for volume in docker_client.volumes.list(filters={"label": f"com.docker.compose.project={project}"}):
        volume.remove(force=True)
    shutil.rmtree(RUN_DIR if runs_existed else RUN_DIR.parent, ignore_errors=True)
    for path in sorted(paths_under(ROOT / "reports") - reports_before, reverse=True):  # a folder after its files
        path.rmdir() if path.is_dir() else path.unlink()
    assert not docker_client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
    assert not docker_client.networks.list(filters={"label": f"com.docker.compose.project={project}"})


def run(command: tuple[str, ...], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(list(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
                            check=False)
    return result, time.monotonic() - started


def test_the_quick_start_builds_tests_and_trains_as_written(quickstart_env, built_image, docker_client):
    said = {}
    for command in COMMANDS:
        result, seconds = run(command, quickstart_env)
        shown = " ".join(command)
        assert result.returncode == 0, f"{shown} exited {result.returncode}:\n{result.stdout[-3000:]}\n" \
                                       f"{result.stderr[-3000:]}"
        said[command[1]] = result.stdout
        print(f"{shown}: {seconds:.1f} s")
    assert docker_client.images.get(built_image.references[0]).id == built_image.image_id, \
        "the quick start's build made another image than the session's from the same inputs"
    summary = read_smoke_summary(ROOT / "reports" / "smoke" / f"{TEST_VARIANT}.json")
    assert summary is not None and summary.image_id == built_image.image_id
    assert summary.failed == 0 and summary.passed > 0, said["smoke"][-3000:]
    done = json.loads(said["up"].strip().splitlines()[-1])
    assert done["event"] == "done" and done["task"] == "mlp" and done["epochs"] >= 1, said["up"][-2000:]
    assert (RUN_DIR / "checkpoint.pt").is_file()
    project = {"label": f"com.docker.compose.project={quickstart_env['COMPOSE_PROJECT_NAME']}"}
    assert docker_client.networks.list(filters=project) and docker_client.volumes.list(filters=project), \
        "compose ran under another project than the test's: its network and home volume would be left behind"
