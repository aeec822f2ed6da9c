"""Shared test plumbing: the engine, the one test image a session builds, and containers that always go away.

Integration tests drive the real Docker engine. Locally they skip, with the reason, when no engine answers;
under CI=true that is a failure, because a CI run that skipped them would prove nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_VARIANT = "cu117"
TEST_REPOSITORY = "torchdev-test"
TEST_OVERLAY = Path(os.environ.get("TORCHDEV_TEST_OVERLAY", ROOT / "overlays" / "local-debian.yaml"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: integration tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def run_cli(*args: str, timeout: float = 1800, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a torchdev task exactly as a user would (`invoke ...` from the repository root)."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def overlay_changing(tmp_path: Path, base_overlay: Path, **fields: str) -> Path:
    """A copy of `base_overlay` with some of the test variant's fields changed."""
    import yaml

    data = yaml.safe_load(base_overlay.read_text())
    data["variants"][TEST_VARIANT].update(fields)
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def tag_targets(docker_client) -> dict[str, str]:
    """Every tag of the test repository and the image it points at."""
    return {tag: image.id for image in docker_client.images.list(name=TEST_REPOSITORY) for tag in image.tags}


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
def built_image(docker_client, test_overlay) -> BuiltImage:
    """Build the test variant once per session through the real CLI; remove its tags when the session ends."""
    from docker.errors import ImageNotFound

    from torchdev.gitinfo import read_provenance
    from torchdev.matrix import load_matrix
    from torchdev.tags import image_references

    base = load_matrix(ROOT / "images.yaml", overlay=str(test_overlay)).variant(TEST_VARIANT).base
    try:
        docker_client.images.get(base)
    except ImageNotFound:
        unavailable(f"the test base image {base} is missing: make it with `./dev base`")
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(test_overlay))
    assert result.returncode == 0, f"the test image did not build:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(test_overlay))
    references = image_references(settings=matrix.image, variant=matrix.variant(TEST_VARIANT),
                                  stamp=read_provenance(ROOT).stamp)
    yield BuiltImage(docker_client.images.get(references[0]).id, references, result.stdout)
    for image in docker_client.images.list(name=TEST_REPOSITORY):
        for tag in image.tags:
            docker_client.images.remove(tag)


@pytest.fixture()
def containers(docker_client):
    """Run commands in throw-away containers; each run has a timeout and every container is removed."""
    from tests.containers import TrackedContainers

    tracked = TrackedContainers(docker_client)
    yield tracked
    tracked.remove_all()
