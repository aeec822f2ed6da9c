"""One helper for every container an integration test starts: bounded in time, its output kept, never left behind."""
from __future__ import annotations

from dataclasses import dataclass

import docker
from docker.models.containers import Container
from requests.exceptions import ConnectionError as RequestsConnectionError, ReadTimeout


@dataclass(frozen=True)
class Finished:
    exit_code: int
    output: str


class TrackedContainers:
    """Starts containers for a test and removes all of them afterwards, whatever happened."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.started: list[Container] = []

    def run(self, image: str, command: list[str] | str, *, timeout: float = 120, **options) -> Finished:
        """Run `command` to completion; a container that outlives `timeout` is killed and the test fails."""
        container = self.client.containers.run(image, command, detach=True, **options)
        self.started.append(container)
        try:
            status = container.wait(timeout=timeout)
        except (ReadTimeout, RequestsConnectionError):
            container.kill()
            raise AssertionError(f"{command!r} in {image} did not finish within {timeout} s:\n"
                                 f"{container.logs().decode(errors='replace')[-3000:]}") from None
        return Finished(status["StatusCode"], container.logs().decode(errors="replace"))

    def remove_all(self) -> None:
        for container in self.started:
            container.remove(force=True)
        self.started.clear()


def engine_memlock(docker_client, image: str) -> str:
    """'-1' (unlimited, the configs' default) where the engine can lift RLIMIT_MEMLOCK, as a rootful dockerd on a
    host can; else the hard limit its containers get, in bytes, passed through the configs' TORCHDEV_MEMLOCK."""
    from docker.errors import APIError
    from docker.types import Ulimit

    probe = docker_client.containers.create(image, ["true"], ulimits=[Ulimit(name="memlock", soft=-1, hard=-1)])
    try:
        probe.start()
        probe.wait(timeout=60)
        return "-1"
    except APIError as error:
        if "rlimit" not in str(error):
            raise
    finally:
        probe.remove(force=True)
    probe = docker_client.containers.create(image, ["sh", "-c", "ulimit -H -l"])
    try:
        probe.start()
        probe.wait(timeout=60)
        kib = probe.logs().decode().strip()
    finally:
        probe.remove(force=True)
    return "-1" if kib == "unlimited" else str(int(kib) * 1024)
