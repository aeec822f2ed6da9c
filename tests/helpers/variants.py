"""The variant the integration tests build, and test variants for unit tests."""
from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import yaml

from tests.helpers.cli import ROOT
from torchdev.matrix import CudaRelease, Flavour, ImageSettings, Matrix, Variant
from torchdev.plan import BuildPlan, LockInput, Provenance, make_plan
from torchdev.platforms import AMD64, Platform
from torchdev.tags import BuildStamp

TEST_VARIANT = "cu117"
TEST_REPOSITORY = os.environ.get("TORCHDEV_TEST_REPOSITORY", "torchdev-test")
"""Where integration tests tag what they build; TORCHDEV_TEST_REPOSITORY gives each of several runs sharing one engine
a repository of its own (a run removes its whole repository when it ends)."""
TEST_OVERLAY = Path(os.environ.get("TORCHDEV_TEST_OVERLAY", ROOT / "overlays" / "local-debian.yaml"))


def make_variant(name: str = "cu118", **fields) -> Variant:
    """A valid Variant: cu118 as images.yaml declares it, with `fields` changed; cuda=None makes a CPU variant
    (ubuntu:22.04, no cuDNN) unless those are given too."""
    cuda = fields.get("cuda", "11.8")
    defaults = {"base": f"nvidia/cuda:{cuda}.0-cudnn8-runtime-ubuntu22.04" if cuda else "ubuntu:22.04",
                "python": "3.10", "torch": "2.0.1", "torchvision": "0.15.2", "torchaudio": "2.0.2",
                "index": "default", "cuda": cuda, "cudnn": 8 if cuda else None}
    return Variant(name=name, **{**defaults, **fields})


def overlay_changing(tmp_path: Path, base_overlay: Path, **fields: str) -> Path:
    """A copy of `base_overlay` with some of the test variant's fields changed."""
    data = yaml.safe_load(base_overlay.read_text())
    data["variants"][TEST_VARIANT].update(fields)
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


TEST_SETTINGS = ImageSettings(repository="torchdev", pip_index="default", packages=(),
                              tag_templates=("{torch}-{variant}-py{python}", "{variant}",
                                             "{torch}-{variant}-py{python}-{date}-{git_sha}-{inputs}"))
TEST_PROVENANCE = Provenance(stamp=BuildStamp(day=date(2026, 11, 29), git_sha="abc1234"), revision="abc1234" + "0" * 33,
                             created=datetime(2026, 11, 28, tzinfo=timezone.utc), source="local")


def make_plans(*variants: Variant, settings: ImageSettings = TEST_SETTINGS,
               flavours: tuple[Flavour, ...] = (Flavour("runtime"),),
               releases: tuple[CudaRelease, ...] = ()) -> list[BuildPlan]:
    """The build plans of these variants in each flavour, in a matrix of their own, as of one fixed commit and day."""
    matrix = Matrix(image=settings, variants=variants, sources=(), flavours=flavours, cuda_releases=releases)
    return [make_plan(matrix=matrix, variant=v, provenance=TEST_PROVENANCE, docker_dir=ROOT / "docker", environ={},
                      flavour=flavour) for v in variants for flavour in flavours]


def plan_of(variant: Variant, *, matrix: Matrix | None = None, platforms: tuple[Platform, ...] = (AMD64,),
            locks: tuple[LockInput, ...] = ()) -> BuildPlan:
    """The runtime plan of `variant` for `platforms` (in a matrix of its own unless `matrix` is given), as of one
    fixed commit and day."""
    return make_plan(matrix=matrix or Matrix(image=TEST_SETTINGS, variants=(variant,), sources=()), variant=variant,
                     provenance=TEST_PROVENANCE, docker_dir=Path("/repo/docker"), environ={}, locks=locks,
                     platforms=platforms)
