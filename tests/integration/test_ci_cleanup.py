"""scripts/ci-cleanup.sh, .ci/run's clean-up, on the real engine at a small scale: between `record` and `clean`, "the
run" makes images (tagged, re-tagged so that one turns dangling, and one never named), a container with a network
and a volume, and build-cache records; "someone else" made an image before the run and makes another, with a
container, during it. `clean` must remove exactly the run's and leave the rest.

The images are FROM the local Debian base with a `RUN echo TOKEN`, so each build makes one cache record whose
description holds a token of its own: that is how the test tells its records apart on an engine others share.
The clean-up prunes only records new since `record` that no image holds and no build uses, so the window here
(seconds) is the only time another user's records on this engine are at stake, as in a real CI run.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, unavailable
from tests.helpers.variants import TEST_REPOSITORY

SCRIPT = ROOT / "scripts" / "ci-cleanup.sh"
BASE = "torchdev-base:bookworm"
RUN = f"{TEST_REPOSITORY}-cleanup-run"  # the run's own repository: its claim
ELSE = f"{TEST_REPOSITORY}-cleanup-else"  # someone else's


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=300).stdout.strip()


def exists(kind: str, name: str) -> bool:
    return subprocess.run(["docker", kind, "inspect", name], capture_output=True, check=False).returncode == 0


def cleanup(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, check=False)


def records() -> dict[str, str]:
    """Build-cache record ID -> description."""
    found, record = {}, None
    for line in docker("buildx", "du", "--verbose").splitlines():
        key, _, value = line.partition(":")
        if key == "ID":
            record = value.strip()
            found[record] = ""
        elif key == "Description" and record:
            found[record] = value.strip()
    return found


class Builds:
    """Tiny images, each with a token of its own in its one RUN step (and so in its cache record's description)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tokens: list[str] = []
        self.unnamed: list[str] = []

    def build(self, tag: str | None = None) -> tuple[str, str]:
        """Build into the engine unnamed, as `./dev build` does, then tag it when asked; return (image ID, token)."""
        token = f"ci-cleanup-{uuid.uuid4().hex[:12]}"
        self.tokens.append(token)
        context = self.folder / token
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo {token} >/token\n")
        docker("buildx", "build", "--quiet", "--provenance=false", "--output=type=docker",
               "--metadata-file", str(context / "metadata.json"), str(context))
        image = json.loads((context / "metadata.json").read_text())["containerimage.digest"]
        if tag:
            docker("tag", image, tag)
        else:
            self.unnamed.append(image)
        return image, token

    def records(self, token: str) -> list[str]:
        return [record for record, description in records().items() if token in description]

    def remove_records(self) -> None:
        """Prune the records this test made (by their tokens), which its images no longer hold."""
        mine = [record for token in self.tokens for record in self.records(token)]
        if mine:
            docker("buildx", "prune", "-f", "--filter", f"id=^({'|'.join(mine)})$")


@pytest.fixture()
def engine(docker_client, tmp_path):
    """A record/clean state folder and the builds; whatever the test made is removed however it ended."""
    if not docker_client.images.list(name=BASE):
        unavailable(f"the test base image {BASE} is missing: make it with `./dev base`")
    builds = Builds(tmp_path)
    state = tmp_path / "state"
    yield state, builds
    events = state / "events.pid"
    if events.exists():  # clean was not reached: stop the tag listener `record` started
        subprocess.run(["kill", events.read_text().strip()], check=False)
    for container in (f"{RUN}-container", f"{ELSE}-container"):
        subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True, check=False)
    subprocess.run(["docker", "network", "rm", f"{RUN}-network"], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", f"{RUN}-volume"], capture_output=True, check=False)
    names = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").splitlines()
    for name in names:
        if name.split(":")[0] in (RUN, ELSE):
            subprocess.run(["docker", "image", "rm", name], capture_output=True, check=False)
    for image in builds.unnamed:
        subprocess.run(["docker", "image", "rm", image], capture_output=True, check=False)
    builds.remove_records()


def test_clean_removes_what_the_run_made_and_keeps_what_someone_else_made_before_and_during_it(engine):
    state, builds = engine
    _, before_token = builds.build(f"{ELSE}:before")
    recorded = cleanup("record", str(state))
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.startswith("cleanup: recorded ")

    # The run: a tagged image, a tag that moves on (the first image turns dangling), one never named.
    named, named_token = builds.build(f"{RUN}:named")
    moved, moved_token = builds.build(f"{RUN}:moves")
    moved_to, moved_to_token = builds.build(f"{RUN}:moves")
    assert docker("image", "inspect", "--format", "{{len .RepoTags}}", moved) == "0", "the moved tag left it dangling"
    unnamed, unnamed_token = builds.build()
    docker("network", "create", f"{RUN}-network")
    docker("volume", "create", f"{RUN}-volume")
    docker("create", "--name", f"{RUN}-container", "--network", f"{RUN}-network", "-v", f"{RUN}-volume:/data",
           f"{RUN}:named", "true")
    # Someone else, while the run runs: an image and a container of it.
    during, during_token = builds.build(f"{ELSE}:during")
    docker("create", "--name", f"{ELSE}-container", f"{ELSE}:during", "true")
    run_records = {token: builds.records(token) for token in (named_token, moved_token, moved_to_token)}
    assert all(run_records.values()), run_records

    cleaned = cleanup("clean", str(state), RUN)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "cleanup: removed 1 containers, 2 image names (3 images)" in cleaned.stdout, cleaned.stdout

    for image in (named, moved, moved_to):
        assert not exists("image", image), f"the run's image {image} is left"
    assert not exists("container", f"{RUN}-container")
    assert not exists("network", f"{RUN}-network") and not exists("volume", f"{RUN}-volume")
    present = records()
    for token, ids in run_records.items():
        assert not set(ids) & set(present), f"the run's cache records ({token}) are left"

    assert exists("image", f"{ELSE}:before") and exists("image", f"{ELSE}:during")
    assert exists("container", f"{ELSE}-container")
    assert builds.records(before_token) and builds.records(during_token), "someone else's cache records went"
    # An image that never had one of the run's names is nobody's for sure: kept, and said.
    assert exists("image", unnamed) and builds.records(unnamed_token)
    assert f"{unnamed}(no name)" in cleaned.stdout and f"{during}({ELSE}:during)" in cleaned.stdout
    assert "containers made during the run" in cleaned.stdout
    assert not (state / "events.pid").exists(), "the tag listener is stopped"


def test_clean_without_a_record_is_refused_and_changes_nothing(tmp_path):
    result = cleanup("clean", str(tmp_path), RUN)
    assert result.returncode == 2
    assert result.stderr.strip() == f"cleanup: {tmp_path} holds no record: run `{SCRIPT} record {tmp_path}` first"
