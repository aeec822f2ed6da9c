"""One helper for every container a test starts: bounded in time, its output kept, never left behind."""
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
