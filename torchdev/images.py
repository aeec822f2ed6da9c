"""What is built: torchdev images found in the engine by their labels."""
from __future__ import annotations

from dataclasses import dataclass

from torchdev.engine import ContainerEngine, EngineError, ImageRef, ImageSizes
from torchdev.plan import LABEL_PREFIX
from torchdev.project import MANIFEST_IN_IMAGE
from torchdev.records import RecordError, parse_image_manifest


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


def image_manifest(engine: ContainerEngine, reference: str, *, variant: str = "VARIANT") -> dict:
    """The manifest the image carries (docker/write_manifest.py wrote it): base, lock, Python and Debian packages."""
    source = f"{reference}:{MANIFEST_IN_IMAGE}"
    try:
        return parse_image_manifest(source, engine.output(reference, "cat", MANIFEST_IN_IMAGE)).document
    except EngineError as error:
        raise RecordError(source, f"the image has none: {str(error).strip()[-160:]}",
                          fix=f"rebuild the image (`./dev build --variant {variant}`)") from None
    except RecordError as error:
        raise RecordError(source, error.problem, fix=f"rebuild the image (`./dev build --variant {variant}`): "
                          "torchdev images built before it wrote a manifest carry none") from None
