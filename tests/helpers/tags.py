"""Image names the tests make, and their removal: one place instead of a clean-up loop per test."""
from __future__ import annotations

from docker.errors import APIError, NotFound

from torchdev.engine import ImageRef


def tag_targets(docker_client, repository: str) -> dict[str, str]:
    """Every tag of `repository` and the image it points at."""
    return {tag: image.id for image in docker_client.images.list(name=repository) for tag in image.tags}


class TrackedTags:
    """Names a test gives images, removed when it ends: whole repositories (their tags and digest names) or single
    references. An image goes with its last name; one that something else still names stays."""

    def __init__(self, docker_client) -> None:
        self.client = docker_client
        self.repositories: set[str] = set()
        self.references: set[str] = set()

    def repository(self, name: str) -> str:
        self.repositories.add(name)
        return name

    def reference(self, reference: str) -> str:
        self.references.add(reference)
        return reference

    def _tracked_names(self) -> list[str]:
        names = [name for image in self.client.images.list()
                 for name in [*image.tags, *(image.attrs.get("RepoDigests") or [])]]
        return [name for name in names if name in self.references
                or ImageRef.parse(name).repository in self.repositories]

    def remove_all(self) -> list[str]:
        """Remove every tracked name (tags first, then digest names that outlived them); return what is left."""
        for _ in range(2):
            for name in sorted(self._tracked_names(), key=lambda name: "@" in name):
                try:
                    self.client.images.remove(name, noprune=True)
                except NotFound:
                    pass
                except APIError as error:
                    if error.status_code != 409:  # still used by a container: reported below
                        raise
        return self._tracked_names()
