"""What is built: torchdev images found in the engine by their labels."""
from __future__ import annotations

from dataclasses import dataclass

from torchdev.engine import Engine, ImageRef
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


def built_images(engine: Engine, *, repository: str) -> list[BuiltImage]:
    """torchdev images of `repository` in the engine, by variant, oldest first."""
    found = []
    for image in engine.images(label=f"{LABEL_PREFIX}.variant"):
        tags = tuple(sorted(ref.tag for ref in map(ImageRef.parse, image.tags) if ref.repository == repository))
        if tags:
            found.append(BuiltImage(variant=image.labels[f"{LABEL_PREFIX}.variant"], tags=tags, size=image.size,
                                    created=image.created, image_id=image.id, labels=image.labels))
    return sorted(found, key=lambda built: (built.variant, built.created))


def images_table(images: list[BuiltImage]) -> str:
    rows = [(i.variant, ", ".join(i.tags), human_size(i.size), i.created, i.image_id[:19]) for i in images]
    return render_table(["variant", "tags", "size", "created", "digest"], rows)
