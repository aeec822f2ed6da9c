"""What is built: torchdev images found in the engine by their labels."""
from __future__ import annotations

from dataclasses import dataclass

import docker

from torchdev.plan import LABEL_PREFIX
from torchdev.table import human_size, render_table


@dataclass(frozen=True)
class BuiltImage:
    """One torchdev image in the engine."""

    variant: str
    tags: tuple[str, ...]
    size: int
    created: str
    image_id: str
    labels: dict[str, str]


def built_images(client: docker.DockerClient, *, repository: str) -> list[BuiltImage]:
    """torchdev images of `repository` in the engine, by variant, oldest first."""
    found = []
    for image in client.images.list(filters={"label": f"{LABEL_PREFIX}.variant"}):
        tags = tuple(sorted(t for t in image.tags if t.rsplit(":", 1)[0] == repository))
        if not tags:
            continue
        labels = image.labels or {}
        found.append(BuiltImage(variant=labels[f"{LABEL_PREFIX}.variant"], tags=tags, size=image.attrs.get("Size", 0),
                                created=image.attrs.get("Created", "")[:19], image_id=image.id, labels=labels))
    return sorted(found, key=lambda built: (built.variant, built.created))


def images_table(images: list[BuiltImage]) -> str:
    rows = [(i.variant, ", ".join(t.rsplit(":", 1)[1] for t in i.tags), human_size(i.size), i.created, i.image_id[:19])
            for i in images]
    return render_table(["variant", "tags", "size", "created", "digest"], rows)
