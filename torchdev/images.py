"""What is built: torchdev images found in the engine by their labels."""
from __future__ import annotations

from dataclasses import dataclass

from torchdev.engine import ContainerEngine, ImageRef, ImageSizes
from torchdev.plan import LABEL_PREFIX
from torchdev.table import SIZE_HEADERS, render_table, size_cells


@dataclass(frozen=True)
class BuiltImage:
    """One torchdev image in the engine."""

    variant: str
    flavour: str
    tags: tuple[str, ...]
    sizes: ImageSizes
    created: str
    image_id: str
    labels: dict[str, str]


def built_images(engine: ContainerEngine, *, repository: str) -> list[BuiltImage]:
    """torchdev images of `repository` in the engine, by variant, oldest first."""
    found = []
    for image in engine.images(label=f"{LABEL_PREFIX}.variant"):
        tags = tuple(sorted(ref.tag for ref in map(ImageRef.parse, image.tags) if ref.repository == repository))
        if tags:
            found.append(BuiltImage(variant=image.labels[f"{LABEL_PREFIX}.variant"],
                                    flavour=image.labels.get(f"{LABEL_PREFIX}.flavour", "runtime"), tags=tags,
                                    sizes=engine.image_sizes(image.id), created=image.created, image_id=image.id,
                                    labels=image.labels))
    return sorted(found, key=lambda built: (built.variant, built.flavour != "runtime", built.created))


def images_table(images: list[BuiltImage]) -> str:
    rows = [(i.variant, i.flavour, ", ".join(i.tags), *size_cells(i.sizes), i.created, i.image_id[:19])
            for i in images]
    return render_table(["variant", "flavour", "tags", *SIZE_HEADERS, "created", "digest"], rows)
