"""Fixtures only (helpers live in tests/helpers): the engine, the one test image a session builds, and the
containers and image names tests make, all removed when they end; and, for unit tests, a docker CLI stand-in.

Integration tests drive the real Docker engine. Locally they skip, with the reason, when no engine answers;
under CI=true that is a failure, because a CI run that skipped them would prove nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, run_cli, unavailable
from tests.helpers.fake_commands import ahead_of_path, command_folder
from tests.helpers.variants import TEST_OVERLAY, TEST_REPOSITORY, TEST_VARIANT


@pytest.fixture(scope="session")
def docker_client():
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as error:
        unavailable(f"no Docker engine answers ({str(error).split(':')[0]}); start one with scripts/engine.sh start")
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_overlay(tmp_path_factory) -> Path:
    """The CI overlay, retargeted at a repository of its own so tests never move a user's tags."""
    path = tmp_path_factory.mktemp("overlay") / "overlay.yaml"
    path.write_text(TEST_OVERLAY.read_text() + f"\nimage:\n  repository: {TEST_REPOSITORY}\n")
    return path


@dataclass(frozen=True)
class BuiltImage:
    image_id: str
    references: tuple[str, ...]
    output: str


@pytest.fixture(scope="session")
def built_flavours(docker_client, test_overlay) -> dict[str, BuiltImage]:
    """Build the test variant once per session in both flavours, runtime then devel, through the real CLI in one run;
    remove their tags when the session ends. One run, one after the other: devel reuses runtime's layers from the
    cache the first build just made (later tests' builds and prunes cannot come between), and CI needs both."""
    from tests.helpers.tags import TrackedTags
    from torchdev.matrix import load_matrix
    from torchdev.checkout import read_plans
    from torchdev.project import Paths

    matrix = load_matrix(ROOT / "images.yaml", overlay=str(test_overlay))
    variant = matrix.variant(TEST_VARIANT)
    if docker_client.images.list(name=variant.base) == []:
        unavailable(f"the test base image {variant.base} is missing: make it with `./dev base`")
    tracked = TrackedTags(docker_client)
    tracked.repository(TEST_REPOSITORY)
    result = run_cli("build", "--variant", TEST_VARIANT, "--flavour", "runtime,devel", "--overlay", str(test_overlay))
    assert result.returncode == 0, f"the test images did not build:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    runtime_output, header, devel_output = result.stdout.partition("==> [2/2] building ")
    assert header, f"no second build in:\n{result.stdout[-2000:]}"
    built = {}
    for flavour, output in (("runtime", runtime_output), ("devel", header + devel_output)):
        references = read_plans(Paths.at(ROOT), matrix, [variant], [matrix.flavour(flavour)])[0].references
        built[flavour] = BuiltImage(docker_client.images.get(references[0]).id, references, output)
    yield built
    assert tracked.remove_all() == []


@pytest.fixture(scope="session")
def built_image(built_flavours) -> BuiltImage:
    """The test variant's runtime image (built_flavours)."""
    return built_flavours["runtime"]


@pytest.fixture(scope="session")
def built_devel_image(built_flavours) -> BuiltImage:
    """The test variant's devel flavour, built right after the runtime one, whose layers it reuses."""
    return built_flavours["devel"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A throw-away registry (Debian's docker-registry) on a free loopback port, stopped with the module."""
    from tests.helpers.registry import serve_registry

    with serve_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture()
def tracked_tags(docker_client):
    """Register the repositories and references a test makes; they are removed when it ends, and must be."""
    from tests.helpers.tags import TrackedTags

    tracked = TrackedTags(docker_client)
    yield tracked
    left = tracked.remove_all()
    assert left == [], f"image names left behind: {left}"


@pytest.fixture()
def containers(docker_client, tracked_tags):
    """Run commands in throw-away containers; each run has a timeout and every container is removed. Set up after
    tracked_tags, so torn down before it: a container still holding a test image would keep its names."""
    from tests.helpers.tracked_container import TrackedContainers

    tracked = TrackedContainers(docker_client)
    yield tracked
    tracked.remove_all()


@pytest.fixture()
def buildx(tmp_path, monkeypatch):
    """A docker CLI on PATH whose buildx plugin answers, as builds (verify-repro's, capture's) check before they start;
    the engine itself is a test's fake."""
    monkeypatch.setenv("PATH", ahead_of_path(command_folder(tmp_path / "bin", {"docker": "#!/bin/sh\nexit 0\n"})))
