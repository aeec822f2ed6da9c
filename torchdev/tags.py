"""Image tags, computed by pure functions from a variant and the build's date and commit."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from torchdev.matrix import Flavour, ImageSettings, Variant


@dataclass(frozen=True)
class BuildStamp:
    """What makes a build unique beyond its variant: the day of its inputs (SOURCE_DATE_EPOCH's: the last commit
    that touched them, never the day it was built), the commit it came from, and a short hash of every input of the
    image (build plan and files), which only a whole plan can give."""

    day: date
    git_sha: str
    inputs: str = ""


def placeholder_values(*, variant: Variant, stamp: BuildStamp) -> dict[str, str]:
    """The values a tag template may use (see images.yaml `image.tags`)."""
    return {
        "variant": variant.name,
        "torch": variant.torch,
        "torch_minor": variant.torch_minor,
        "python": variant.python,
        "cuda": variant.cuda or "cpu",
        "date": stamp.day.strftime("%Y%m%d"),
        "git_sha": stamp.git_sha,
        "inputs": stamp.inputs,
    }


def flavour_suffix(flavour: Flavour) -> str:
    """The runtime flavour is what a bare tag names; every other flavour's tags say which it is: cu118-devel."""
    return "" if flavour.is_runtime else f"-{flavour.name}"


def image_tags(*, settings: ImageSettings, variant: Variant, stamp: BuildStamp,
               flavour: Flavour = Flavour("runtime")) -> tuple[str, ...]:
    """Tags for one variant's image, e.g. 2.0.1-cu118-py3.10, 2.0-cu118, cu118 and the immutable
    2.0.1-cu118-py3.10-20260101-abc1234-9f3e0c1a (devel: the same, each ending in -devel).

    Duplicates (two templates rendering alike) are dropped, keeping the first, so tagging stays idempotent.
    """
    values = placeholder_values(variant=variant, stamp=stamp)
    rendered = (template.format(**values) + flavour_suffix(flavour) for template in settings.tag_templates)
    return tuple(dict.fromkeys(rendered))


def immutable_tags(*, settings: ImageSettings, variant: Variant, stamp: BuildStamp,
                   flavour: Flavour = Flavour("runtime")) -> tuple[str, ...]:
    """The tags that name one content for good: those whose template has {inputs}. torchdev never moves them."""
    values = placeholder_values(variant=variant, stamp=stamp)
    return tuple(dict.fromkeys(t.format(**values) + flavour_suffix(flavour)
                               for t in settings.tag_templates if "{inputs}" in t))
