"""torchdev.engine.Engine against the real engine: what the fake engine promises at the same interface.

Containers of the local Debian base: a run's output, a start that fails, and one that outlives its deadline,
each leaving no container behind; tags that move and go.
"""
from __future__ import annotations

import io
import time

import pytest

from tests.helpers.cli import unavailable
from torchdev.engine import ContainerSpec, Engine, EngineUnreachable, ImageRef, RunStatus

BASE = "torchdev-base:bookworm"


@pytest.fixture(scope="module")
def engine(docker_client):
    if not docker_client.images.list(name=BASE):
        unavailable(f"the test base image {BASE} is missing: make it with `./dev base`")
    engine = Engine.connect()
    yield engine
    engine.close()


def containers_of(docker_client, image: str) -> list:
    return docker_client.containers.list(all=True, filters={"ancestor": image})


def test_a_run_echoes_its_output_returns_its_exit_status_and_leaves_no_container(engine, docker_client):
    echo = io.StringIO()
    result = engine.run(ContainerSpec(BASE, ("sh", "-c", "echo out; echo err >&2; exit 3")), timeout=60, echo=echo)
    assert (result.status, result.exit_code) == (RunStatus.EXITED, 3)
    assert sorted(result.output.split()) == ["err", "out"] and "out" in echo.getvalue()
    assert containers_of(docker_client, BASE) == []


def test_a_container_that_cannot_start_is_a_result_not_an_exception_and_is_removed(engine, docker_client):
    result = engine.run(ContainerSpec(BASE, ("/no/such/program",)), timeout=60)
    assert result.status is RunStatus.START_FAILED and result.exit_code is None
    assert "/no/such/program" in result.output and "no such file" in result.output.lower()
    assert containers_of(docker_client, BASE) == []


def test_a_container_past_its_deadline_is_killed_and_removed_even_when_it_prints_nothing(engine, docker_client):
    started = time.monotonic()
    result = engine.run(ContainerSpec(BASE, ("sleep", "600")), timeout=3)
    assert result.status is RunStatus.TIMED_OUT and time.monotonic() - started < 30
    assert containers_of(docker_client, BASE) == []


def test_tags_move_and_go_and_a_registry_port_is_not_a_tag(engine, tracked_tags):
    image_id = engine.image_id(BASE)
    reference = tracked_tags.reference("localhost:5000/torchdev-test-engine")
    engine.tag(image_id, reference)
    assert engine.image_id(reference) == image_id and ImageRef.parse(reference).tag is None
    assert f"{reference}:latest" in engine.image(image_id).tags
    engine.untag(reference)
    assert engine.image_id(reference) is None and engine.image_id(BASE) == image_id


def test_no_engine_is_engine_unreachable_naming_the_fix(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(EngineUnreachable, match="no Docker engine answers .*start Docker") as caught:
        Engine.connect(timeout=5)
    assert "FileNotFoundError" in caught.value.cause or "No such file" in caught.value.cause
